"""The network: init nets -> encoder -> pooling -> task heads."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from salt.models.initnet import InitNet
from salt.tasks.base import TaskBase


class SaltModel(nn.Module):
    """Embeds every constituent type, encodes them together, pools and runs the tasks.

    Args:
        init_nets: one embedding network per constituent type.
        tasks: the task heads; jet-level tasks (``input_name`` = the global object) see the
            pooled representation (plus GLOBAL features), constituent tasks see their
            constituents' embeddings with the pooled representation as context.
        encoder: the sequence encoder (e.g. a transformer); None keeps the init-net embeddings.
        pool_net: turns the encoded constituents into one vector per jet.
        global_object: name of the jet-level input type (set by salt from ``data``).
    """

    def __init__(
        self,
        init_nets: list[InitNet],
        tasks: list[TaskBase],
        pool_net: nn.Module,
        encoder: nn.Module | None = None,
        global_object: str = "jets",
    ):
        super().__init__()
        if not init_nets:
            raise ValueError("model.init_nets: at least one init net is needed")
        names = [net.input_name for net in init_nets]
        if len(set(names)) != len(names):
            raise ValueError(f"model.init_nets: input names must be unique, got {names}")
        task_names = [task.name for task in tasks]
        if len(set(task_names)) != len(task_names):
            raise ValueError(f"model.tasks: task names must be unique, got {task_names}")
        self.init_nets = nn.ModuleList(init_nets)
        self.encoder = encoder
        self.pool_net = pool_net
        self.tasks = nn.ModuleList(tasks)
        self.global_object = global_object

    def label_fields(self) -> dict[str, list[str]]:
        fields: dict[str, list[str]] = {}
        for task in self.tasks:
            for name, names in task.label_fields().items():
                fields.setdefault(name, []).extend(n for n in names if n not in fields[name])
        return fields

    def _embed(
        self, inputs: dict[str, Tensor], pad_masks: dict[str, Tensor]
    ) -> tuple[list[Tensor], list[Tensor]]:
        jet = inputs.get(self.global_object)
        params = inputs.get("PARAMETERS")
        embeddings, masks = [], []
        for net in self.init_nets:
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
            if params is not None:
                extra.append(params)
            if extra:
                context = torch.cat(extra, dim=-1).unsqueeze(1).expand(-1, x.shape[1], -1)
                x = torch.cat([x, context], dim=-1)
            embeddings.append(net(x))
            masks.append(mask)
        return embeddings, masks

    def forward(
        self,
        inputs: dict[str, Tensor],
        pad_masks: dict[str, Tensor],
        labels: dict[str, dict[str, Tensor]] | None = None,
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Return ``({task name: raw output}, {task name: loss})`` (losses only with labels)."""
        embeddings, masks = self._embed(inputs, pad_masks)
        x = torch.cat(embeddings, dim=1)
        mask = torch.cat(masks, dim=1)
        if self.encoder is not None:
            x = self.encoder(x, pad_mask=mask)
        pooled = self.pool_net(x, pad_mask=mask)
        if "GLOBAL" in inputs:
            pooled = torch.cat([pooled, inputs["GLOBAL"]], dim=-1)
        per_input: dict[str, tuple[Tensor, Tensor]] = {}
        start = 0
        for net, emb, m in zip(self.init_nets, embeddings, masks):
            stop = start + emb.shape[1]
            per_input[net.input_name] = (x[:, start:stop], m)
            start = stop
        outputs: dict[str, Tensor] = {}
        losses: dict[str, Tensor] = {}
        for task in self.tasks:
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
