"""The network: init nets -> encoder -> pooling -> task heads."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from salt.data.batch import Inputs, Labels, PadMasks
from salt.models.contracts import check_backbone, check_encoder
from salt.models.edges import EdgeFeatures
from salt.models.featurewise import FeaturewiseConfig, FeaturewiseNets
from salt.models.initnet import InitNet
from salt.tasks.base import TaskBase
from salt.utils.label_fields import LabelFields, merge_label_fields


class SaltModel(nn.Module):
    """Embeds every constituent type, encodes them together, pools and runs the tasks.

    Args:
        init_nets: one embedding network per constituent type.
        tasks: the task heads; jet-level tasks (``input_name`` = the global object) see the
            pooled representation (plus GLOBAL features), constituent tasks see their
            constituents' embeddings with the pooled representation as context.
        encoder: the sequence encoder (e.g. a transformer); None keeps the init-net embeddings.
            It follows :class:`salt.models.contracts.Encoder` (all constituents in one
            sequence) or :class:`~salt.models.contracts.MultiStreamEncoder` (one stream per
            type).
        pool_net: turns the encoded constituents into one vector per jet.
        global_object: name of the jet-level input type (set by salt from ``data``).
        parameter_conditioning: how PARAMETERS inputs enter: ``concat`` (appended to every
            init-net input), ``film`` (a learned per-feature scale and shift of the embeddings)
            or ``both``.
        num_parameters: number of PARAMETERS variables (set by salt from ``data``).
        edge_features: pairwise features of one constituent type (e.g. ``dR``, ``kt``),
            computed from the unnormalised inputs and added to the attention scores.
        backbone: a complete network from inputs to the jet representation (ParT, PET2,
            DeepSets, ...), used instead of init nets + encoder + pooling, following
            :class:`salt.models.contracts.Backbone`: ``backbone(inputs, pad_masks,
            raw_inputs)`` returns ``(pooled (B, output_size), {constituent type: (B, L,
            constituent_size)})``.
        featurewise_nets: feature-wise scale and shift from PARAMETERS (or the jet variables)
            at the init-net inputs, before every encoder layer or on the encoded constituents
            (see :mod:`salt.models.featurewise`).
    """

    def __init__(
        self,
        init_nets: list[InitNet] | None = None,
        tasks: list[TaskBase] | None = None,
        pool_net: nn.Module | None = None,
        encoder: nn.Module | None = None,
        backbone: nn.Module | None = None,
        global_object: str = "jets",
        parameter_conditioning: str = "concat",
        num_parameters: int = 0,
        edge_features: EdgeFeatures | None = None,
        featurewise_nets: list[FeaturewiseConfig] | None = None,
    ):
        super().__init__()
        if parameter_conditioning not in ("concat", "film", "both"):
            raise ValueError(
                f"parameter_conditioning: expected concat, film or both, got "
                f"'{parameter_conditioning}'"
            )
        init_nets = list(init_nets or [])
        tasks = list(tasks or [])
        if not tasks:
            raise ValueError("model.tasks: at least one task is needed")
        if backbone is None and (not init_nets or pool_net is None):
            raise ValueError(
                "model: give init_nets and a pool_net (and optionally an encoder), or a backbone"
            )
        if backbone is not None and (init_nets or encoder is not None or pool_net is not None):
            raise ValueError("model: a backbone replaces init_nets, encoder and pool_net")
        if backbone is not None:
            check_backbone(backbone, "model.backbone")
        self.multi_stream = encoder is not None and check_encoder(
            encoder, init_nets[0].output_size if init_nets else None, "model.encoder"
        )
        names = [net.input_name for net in init_nets]
        if len(set(names)) != len(names):
            raise ValueError(f"model.init_nets: input names must be unique, got {names}")
        task_names = [task.name for task in tasks]
        if len(set(task_names)) != len(task_names):
            raise ValueError(f"model.tasks: task names must be unique, got {task_names}")
        self.init_nets = nn.ModuleList(init_nets)
        self.backbone = backbone
        self.encoder = encoder
        self.pool_net = pool_net
        self.tasks = nn.ModuleList(tasks)
        self.global_object = global_object
        self.edge_features = edge_features
        self.parameter_conditioning = parameter_conditioning
        self.film: nn.Linear | None = None
        if num_parameters and parameter_conditioning in ("film", "both"):
            embed = init_nets[0].output_size
            self.film = nn.Linear(num_parameters, 2 * embed)
            nn.init.zeros_(self.film.weight)  # start as the identity transform
            nn.init.zeros_(self.film.bias)
        self.featurewise = (
            FeaturewiseNets(featurewise_nets, init_nets, encoder, num_parameters)
            if featurewise_nets
            else None
        )

    @property
    def embedders(self) -> list[InitNet]:
        """The init nets, typed (``nn.ModuleList`` yields plain modules)."""
        return [cast(InitNet, net) for net in self.init_nets]

    @property
    def heads(self) -> list[TaskBase]:
        """The tasks, typed."""
        return [cast(TaskBase, task) for task in self.tasks]

    def label_fields(self) -> LabelFields:
        """The label fields the tasks read, per input type."""
        return merge_label_fields(*(task.label_fields() for task in self.heads))

    def _embed(self, inputs: Inputs, pad_masks: PadMasks) -> tuple[list[Tensor], list[Tensor]]:
        jet = inputs.get(self.global_object)
        params = inputs.get("PARAMETERS")
        embeddings, masks = [], []
        for net in self.embedders:
            name = net.input_name
            x = inputs[name]
            if name == self.global_object:
                x = x.unsqueeze(1)
                mask = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
            else:
                mask = pad_masks[name]
            extra = []
            if net.attach_global and jet is not None and name != self.global_object:
                extra.append(jet)
            if (
                params is not None
                and self.parameter_conditioning in ("concat", "both")
                and not (self.featurewise and self.featurewise.replaces_parameter_inputs)
            ):
                extra.append(params)
            if extra:
                context = torch.cat(extra, dim=-1).unsqueeze(1).expand(-1, x.shape[1], -1)
                x = torch.cat([x, context], dim=-1)
            if self.featurewise is not None:
                x = self.featurewise.on_input(name, x, inputs)
            embedded = net(x)
            if self.film is not None and params is not None:
                scale, shift = self.film(params).unsqueeze(1).chunk(2, dim=-1)
                embedded = embedded * (1 + scale) + shift
            embeddings.append(embedded)
            masks.append(mask)
        return embeddings, masks

    def _edge_bias(self, raw_inputs: Inputs, pad_masks: PadMasks, lengths: list[int]) -> Tensor:
        """The edge-feature attention bias, placed in its type's block of the full sequence."""
        assert self.edge_features is not None
        name = self.edge_features.input_name
        bias = self.edge_features(raw_inputs[name], pad_masks[name])
        names = [net.input_name for net in self.embedders]
        start = sum(lengths[: names.index(name)])
        rest = sum(lengths) - start - bias.shape[-1]
        return F.pad(bias, (start, rest, start, rest))

    def _encode(
        self,
        embeddings: list[Tensor],
        masks: list[Tensor],
        pad_masks: PadMasks,
        raw_inputs: Inputs | None,
    ) -> tuple[Tensor, Tensor]:
        x = torch.cat(embeddings, dim=1)
        mask = torch.cat(masks, dim=1)
        if self.encoder is None:
            return x, mask
        names = [net.input_name for net in self.embedders]
        if self.multi_stream:  # one stream per type, cross-attending
            encoded = self.encoder(dict(zip(names, embeddings)), dict(zip(names, masks)))
            return torch.cat([encoded[n] for n in names], dim=1), mask
        if self.edge_features is None:
            encoded = self.encoder(x, pad_mask=mask)
        else:
            if raw_inputs is None:
                raise ValueError("edge features need the unnormalised inputs (raw_inputs)")
            bias = self._edge_bias(raw_inputs, pad_masks, [e.shape[1] for e in embeddings])
            encoded = self.encoder(x, pad_mask=mask, attn_bias=bias)
        # register tokens come out after the constituents: real entries for the pooling
        extra = encoded.shape[1] - mask.shape[1]
        if extra > 0:
            mask = torch.cat([mask, mask.new_zeros(mask.shape[0], extra)], dim=1)
        return encoded, mask

    def forward(
        self,
        inputs: Inputs,
        pad_masks: PadMasks,
        labels: Labels | None = None,
        raw_inputs: Inputs | None = None,
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Return ``({task name: raw output}, {task name: loss})`` (losses only with labels).

        ``raw_inputs`` are the unnormalised inputs, needed only by edge features.
        """
        per_input: dict[str, tuple[Tensor, Tensor]] = {}
        if self.backbone is not None:
            pooled, constituents = self.backbone(inputs, pad_masks, raw_inputs or inputs)
            for name, seq in constituents.items():
                per_input[name] = (seq, pad_masks[name])
        else:
            assert self.pool_net is not None
            embeddings, masks = self._embed(inputs, pad_masks)
            if self.featurewise is None:
                x, mask = self._encode(embeddings, masks, pad_masks, raw_inputs)
            else:
                with self.featurewise.on_encoder_layers(self.encoder, inputs):
                    x, mask = self._encode(embeddings, masks, pad_masks, raw_inputs)
                x = self.featurewise.on_encoded(x, mask, inputs)
            pooled = self.pool_net(x, pad_mask=mask)
            start = 0
            for net, emb, m in zip(self.embedders, embeddings, masks):
                stop = start + emb.shape[1]
                per_input[net.input_name] = (x[:, start:stop], m)
                start = stop
        if "GLOBAL" in inputs:
            pooled = torch.cat([pooled, inputs["GLOBAL"]], dim=-1)
        outputs: dict[str, Tensor] = {}
        losses: dict[str, Tensor] = {}
        for task in self.heads:
            if task.input_name == self.global_object:
                out, loss = task(pooled, labels)
            else:
                if task.input_name not in per_input:
                    raise KeyError(f"task '{task.name}': no init net for '{task.input_name}'")
                seq, seq_mask = per_input[task.input_name]
                out, loss = task(seq, labels, pad_mask=seq_mask, context=pooled)
            outputs[task.name] = out
            if loss is not None:
                losses[task.name] = loss
        return outputs, losses
