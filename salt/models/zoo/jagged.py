"""Constituent (jagged) backbones: Deep Sets and the Set Transformer.

Both read one or several constituent types (tracks, electrons, ...), embed each type with its
own :class:`~salt.models.zoo.embeddings.JaggedEmbedding` to a common width and treat the
concatenation as one padded set. Their jet representations are invariant to the order of the
constituents (up to float rounding) and to extra padding, and a jet without constituents gives a
finite output. Per-constituent outputs are returned per type, so constituent-level tasks (track
origin, vertexing) can run on top.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from salt.models.attention import MultiheadAttention, ScaledDotProductAttention
from salt.models.contracts import BackboneSizes
from salt.models.dense import make_activation
from salt.models.zoo.embeddings import (
    EmbeddingConfig,
    Feature,
    JaggedEmbedding,
    MaskedBatchNorm,
    check_categorical,
)
from salt.models.zoo.flat import (
    SPECIAL_GROUPS,
    FeedForward,
    FlatInputs,
    mlp_layers,
    require_variables,
)


class ConstituentInputs(nn.Module):
    """Embed every constituent type to ``width`` and concatenate them into one padded set.

    Args:
        variables: salt's ``{input type: [variables]}``.
        global_object: the jet input type.
        input_names: the constituent types to use; by default every non-jet type.
        attach_global: append the jet variables to every constituent before embedding, so the
            per-constituent network knows the jet it belongs to (e.g. its pT).
        width: the common embedding width.
        embeddings: see ``EmbeddingConfig``.
        owner: the backbone's name, for error messages.

    ``PARAMETERS`` (parameterised networks) are always appended to every constituent.
    """

    def __init__(
        self,
        variables: dict[str, list[str]],
        global_object: str,
        input_names: list[str] | None,
        attach_global: bool,
        width: int,
        embeddings: EmbeddingConfig | None,
        owner: str,
    ) -> None:
        super().__init__()
        default = [k for k in variables if k != global_object and k not in SPECIAL_GROUPS]
        names = list(default if input_names is None else input_names)
        if not names:
            raise ValueError(f"{owner}: no constituent type in data.variables (e.g. tracks)")
        for name in names:
            if name == global_object or name in SPECIAL_GROUPS or not variables.get(name):
                raise ValueError(
                    f"{owner}.input_names: '{name}' is not a constituent type of "
                    f"data.variables (expected one of {default})"
                )
        if attach_global and not variables.get(global_object):
            raise ValueError(f"{owner}.attach_global: no variables for '{global_object}'")
        self.input_names = names
        self.context_groups = [global_object] if attach_global else []
        if variables.get("PARAMETERS"):
            self.context_groups.append("PARAMETERS")
        context: list[Feature] = [(g, v) for g in self.context_groups for v in variables[g]]
        check_categorical(embeddings or {}, variables, f"{owner}.embeddings")
        self.embeddings = nn.ModuleDict(
            {
                name: JaggedEmbedding(
                    [(name, v) for v in variables[name]] + context, width, embeddings
                )
                for name in names
            }
        )
        self.output_size = width

    def forward(
        self,
        inputs: dict[str, Tensor],
        pad_masks: dict[str, Tensor],
        raw_inputs: dict[str, Tensor],
    ) -> tuple[Tensor, Tensor]:
        """The embedded set (B, N, width) and its pad mask (B, N), N = sum of the lengths."""
        context = raw_context = None
        if self.context_groups:
            context = torch.cat([inputs[g] for g in self.context_groups], dim=-1)
            raw_context = torch.cat([raw_inputs[g] for g in self.context_groups], dim=-1)
        embedded, masks = [], []
        for name in self.input_names:
            x, raw = inputs[name], raw_inputs[name]
            if context is not None and raw_context is not None:
                length = x.shape[1]
                x = torch.cat([x, context.unsqueeze(1).expand(-1, length, -1)], dim=-1)
                raw = torch.cat([raw, raw_context.unsqueeze(1).expand(-1, length, -1)], dim=-1)
            embedded.append(self.embeddings[name](x, raw, pad_masks[name]))
            masks.append(pad_masks[name])
        if len(embedded) == 1:
            return embedded[0], masks[0]
        return torch.cat(embedded, dim=1), torch.cat(masks, dim=1)

    def split(self, x: Tensor, pad_masks: dict[str, Tensor]) -> dict[str, Tensor]:
        """Cut the set (B, N, D) back into ``{type: (B, L_type, D)}``."""
        if len(self.input_names) == 1:
            return {self.input_names[0]: x}
        out, start = {}, 0
        for name in self.input_names:
            length = pad_masks[name].shape[1]
            out[name] = x[:, start : start + length]
            start += length
        return out


def masked_pool(x: Tensor, pad_mask: Tensor, how: str) -> Tensor:
    """Mean, sum or max over the real entries of x (B, N, D); 0 for a jet without any."""
    valid = (~pad_mask).unsqueeze(-1).to(x.dtype)
    if how == "max":
        best = x.masked_fill(pad_mask.unsqueeze(-1), float("-inf")).amax(dim=1)
        return torch.where(valid.sum(1) > 0, best, torch.zeros_like(best))
    total = (x * valid).sum(dim=1)
    if how == "sum":
        return total
    return total / valid.sum(dim=1).clamp(min=1.0)


class MaskedMLP(nn.Module):
    """Per-constituent MLP (Deep Sets' phi) whose batch norm ignores padding.

    Hidden layers are Linear -> (masked BatchNorm) -> activation -> (Dropout), then a Linear to
    ``output_size``; padded rows come out zero.
    """

    def __init__(
        self,
        input_size: int,
        hidden: list[int],
        output_size: int,
        activation: str,
        batchnorm: bool,
        dropout: float,
        owner: str,
    ) -> None:
        super().__init__()
        if any(w <= 0 for w in [*hidden, output_size]):
            raise ValueError(f"{owner}: layer widths must be positive, got {hidden}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{owner}.dropout: expected a probability in [0, 1), got {dropout}")
        widths = [input_size, *hidden]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.norms = nn.ModuleList(MaskedBatchNorm(w) for w in hidden) if batchnorm else None
        self.act = make_activation(activation, f"{owner}.activation")
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.out = nn.Linear(widths[-1], output_size)

    def forward(self, x: Tensor, pad_mask: Tensor) -> Tensor:
        for i, linear in enumerate(self.linears):
            x = linear(x)
            if self.norms is not None:
                x = self.norms[i](x, pad_mask)
            x = self.drop(self.act(x))
        return self.out(x).masked_fill(pad_mask.unsqueeze(-1), 0.0)


class DeepSets(nn.Module):
    """Deep Sets (Zaheer et al., arXiv 1703.06114): rho(pool_i phi(x_i)).

    phi embeds every constituent on its own, a masked pooling makes the result independent of
    their order and number of padded slots, rho maps the pooled vector to the jet
    representation. Cheap and a strong baseline for how much a set-level model gains from
    attention.

    Args:
        variables: ``{input type: [variables]}``, filled in by salt.
        global_object: the jet input type, filled in by salt.
        out_dim: width of the jet representation.
        embed_dim: width of phi's output (the per-constituent outputs).
        phi_layers: phi's hidden widths (default ``[64, 64]``).
        rho_layers: rho's hidden widths (default ``[64]``).
        activation: ``torch.nn`` activation class name.
        final_activation: activation on the output, if any.
        batchnorm: batch normalisation in phi (over real constituents) and rho.
        dropout: dropout after every hidden activation.
        pooling: any of ``mean``, ``sum``, ``max``; several are concatenated. ``sum`` keeps the
            multiplicity, which mean pooling forgets.
        input_names: constituent types to use (default: all in ``variables``).
        attach_global: append the jet variables to every constituent.
        embeddings: see ``EmbeddingConfig``; the token width defaults to phi's first width.
    """

    @classmethod
    def config_sizes(cls, args: Mapping[str, Any]) -> BackboneSizes:
        """The jet (``out_dim``) and phi's output per constituent (``embed_dim``)."""
        return BackboneSizes(int(args["out_dim"]), int(args["embed_dim"]))

    def __init__(
        self,
        variables: dict[str, list[str]] | None = None,
        global_object: str = "jets",
        out_dim: int = 64,
        embed_dim: int = 64,
        phi_layers: list[int] | None = None,
        rho_layers: list[int] | None = None,
        activation: str = "ReLU",
        final_activation: str | None = None,
        batchnorm: bool = True,
        dropout: float = 0.0,
        pooling: list[Literal["mean", "sum", "max"]] | None = None,
        input_names: list[str] | None = None,
        attach_global: bool = False,
        embeddings: EmbeddingConfig | None = None,
    ) -> None:
        super().__init__()
        variables = require_variables(variables, global_object, "DeepSets")
        phi_layers = [64, 64] if phi_layers is None else list(phi_layers)
        rho_layers = [64] if rho_layers is None else list(rho_layers)
        self.pooling = ["mean"] if pooling is None else list(pooling)
        if not self.pooling or any(p not in ("mean", "sum", "max") for p in self.pooling):
            raise ValueError(f"DeepSets.pooling: expected some of mean, sum, max, got {pooling}")
        self.embed_dim = embed_dim
        self.output_size: int = out_dim
        self.constituent_size: int | None = embed_dim
        width = phi_layers[0] if phi_layers else embed_dim
        self.inputs = ConstituentInputs(
            variables, global_object, input_names, attach_global, width, embeddings, "DeepSets"
        )
        self.phi = MaskedMLP(
            width, phi_layers[1:], embed_dim, activation, batchnorm, dropout, "DeepSets"
        )
        layers, last = mlp_layers(
            len(self.pooling) * embed_dim, rho_layers, activation, batchnorm, dropout, "DeepSets"
        )
        layers.append(nn.Linear(last, out_dim))
        if final_activation is not None:
            layers.append(make_activation(final_activation, "DeepSets.final_activation"))
        self.rho = nn.Sequential(*layers)

    def forward(
        self,
        inputs: dict[str, Tensor],
        pad_masks: dict[str, Tensor],
        raw_inputs: dict[str, Tensor],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        x, pad_mask = self.inputs(inputs, pad_masks, raw_inputs)
        h = self.phi(x, pad_mask)
        pooled = torch.cat([masked_pool(h, pad_mask, how) for how in self.pooling], dim=-1)
        return self.rho(pooled), self.inputs.split(h, pad_masks)


class SetNorm(nn.Module):
    """Set normalisation (Zhang et al., arXiv 2206.11925): one mean and variance per set, over
    its real elements and all features, then a per-feature affine map.

    Unlike layer norm it keeps the relative scale of the elements of a set (a hard track stays
    larger than a soft one), and unlike batch norm it does not mix jets.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        """Normalise x (B, N, D); padded rows (``pad_mask`` True) are ignored and come out 0."""
        if pad_mask is None:
            mean = x.mean(dim=(1, 2), keepdim=True)
            var = (x - mean).square().mean(dim=(1, 2), keepdim=True)
        else:
            valid = (~pad_mask).unsqueeze(-1).to(x.dtype)
            count = (valid.sum(dim=(1, 2), keepdim=True) * x.shape[-1]).clamp(min=1.0)
            mean = (x * valid).sum(dim=(1, 2), keepdim=True) / count
            var = ((x - mean).square() * valid).sum(dim=(1, 2), keepdim=True) / count
        out = (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias
        if pad_mask is not None:
            out = out.masked_fill(pad_mask.unsqueeze(-1), 0.0)
        return out


class MaskedLayerNorm(nn.LayerNorm):
    """LayerNorm with SetNorm's call signature; padded rows come out 0."""

    def forward(self, x: Tensor, pad_mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        out = super().forward(x)
        return out if pad_mask is None else out.masked_fill(pad_mask.unsqueeze(-1), 0.0)


NormKind = Literal["setnorm", "layernorm"]


def make_set_norm(kind: str, dim: int) -> nn.Module:
    if kind == "setnorm":
        return SetNorm(dim)
    if kind == "layernorm":
        return MaskedLayerNorm(dim)
    raise ValueError(f"JaggedTransformer.norm: expected setnorm or layernorm, got {kind!r}")


class MAB(nn.Module):
    """Multihead attention block, pre-norm ("clean path", arXiv 2206.11925):
    ``H = X + MHA(norm(X), norm(Y))``, ``MAB(X, Y) = H + FF(norm(H))``.

    Keeping the residual path free of normalisation makes deep stacks train stably. With
    ``cross=False`` it is a SAB (Y = X).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        head_dim: int | None,
        attn_dropout: float,
        ff_hidden_mult: float,
        ff_dropout: float,
        activation: str,
        norm: str,
        cross: bool = False,
    ) -> None:
        super().__init__()
        self.norm_x = make_set_norm(norm, dim)
        self.norm_y = make_set_norm(norm, dim) if cross else None
        self.attn = MultiheadAttention(
            dim, num_heads, head_dim, attention=ScaledDotProductAttention(attn_dropout)
        )
        self.norm_ff = make_set_norm(norm, dim)
        self.ff = FeedForward(dim, ff_hidden_mult, activation, ff_dropout, "JaggedTransformer")

    def forward(
        self,
        x: Tensor,
        y: Tensor | None = None,
        x_pad: Tensor | None = None,
        y_pad: Tensor | None = None,
    ) -> Tensor:
        """x (B, Nx, D) attends to y (B, Ny, D), or to itself when y is None."""
        q = self.norm_x(x, x_pad)
        if y is None or self.norm_y is None:
            kv, y_pad = q, x_pad
        else:
            kv = self.norm_y(y, y_pad)
        h = x + self.attn(q, kv, pad_mask=x_pad, kv_pad_mask=y_pad)
        out = h + self.ff(self.norm_ff(h, x_pad))
        return out if x_pad is None else out.masked_fill(x_pad.unsqueeze(-1), 0.0)


class PMA(nn.Module):
    """Pooling by multihead attention: k learned seeds attend to the set, ``MAB(S, rFF(Z))``."""

    def __init__(self, num_seeds: int, dim: int, activation: str, mab: MAB) -> None:
        """``mab`` is the cross-attention block (``cross=True``) of width ``dim``."""
        super().__init__()
        if num_seeds <= 0:
            raise ValueError(f"PMA: expected at least one seed, got {num_seeds}")
        self.seeds = nn.Parameter(torch.randn(1, num_seeds, dim) * dim**-0.5)
        self.rff = nn.Sequential(
            nn.Linear(dim, dim), make_activation(activation, "JaggedTransformer.activation")
        )
        self.mab = mab

    def forward(self, z: Tensor, pad_mask: Tensor) -> Tensor:
        seeds = self.seeds.expand(z.shape[0], -1, -1)
        return self.mab(seeds, self.rff(z), None, pad_mask)


class JaggedTransformer(nn.Module):
    """Set Transformer (Lee et al., arXiv 1810.00825) over the constituents.

    Encoder: ``encoder_depth`` SABs (self-attention over the real constituents). Decoder: PMA
    with k seeds, then (for k > 1) ``decoder_depth`` SABs between the k outputs, then a
    predictor MLP on their mean or concatenation. k follows ``seed_strategy``: ``pooling``
    (k = 1), ``particles`` (k = ``num_particles``, the padded length) or ``objects`` (k = number
    of constituent types). Whatever k, the PMA attends over the whole set, so the jet
    representation does not depend on the order of the constituents.

    Args:
        variables: ``{input type: [variables]}``, filled in by salt.
        global_object: the jet input type, filled in by salt.
        out_dim: width of the jet representation.
        embed_dim: model width (also of the per-constituent outputs).
        num_heads: attention heads.
        head_dim: width per head (default ``embed_dim // num_heads``).
        attn_dropout: dropout on the attention weights.
        ff_hidden_mult: feed-forward hidden width as a multiple of ``embed_dim``.
        ff_dropout: dropout in the feed-forward hidden layer.
        activation: feed-forward, rFF and predictor activation.
        norm: ``setnorm`` or ``layernorm``.
        encoder_depth: SABs in the encoder.
        seed_strategy: ``pooling``, ``particles`` or ``objects``.
        num_particles: k for ``particles``: the padded number of constituents per jet (the
            largest over types), e.g. ``data.num_inputs.tracks``.
        decoder_depth: SABs after the PMA when k > 1.
        predictor_layers: hidden widths of the predictor MLP (default none: one Linear).
        predictor_pooling: combine the k outputs by ``mean`` or ``reshape`` (concatenation).
        set_transform_events: also encode the jet features as one token with its own SABs;
            added to the pooled output (k = 1) or attended to by ``cross_decoder_depth`` MABs.
        cross_decoder_depth: cross-attention blocks from the k outputs to the jet token.
        cross_decoder_activation: activation of those blocks.
        input_names: constituent types to use (default: all in ``variables``).
        attach_global: append the jet variables to every constituent.
        embeddings: see ``EmbeddingConfig``; the token width defaults to ``embed_dim``.
    """

    @classmethod
    def config_sizes(cls, args: Mapping[str, Any]) -> BackboneSizes:
        """The jet (``out_dim``) and the model width per constituent (``embed_dim``)."""
        return BackboneSizes(int(args["out_dim"]), int(args["embed_dim"]))

    def __init__(
        self,
        variables: dict[str, list[str]] | None = None,
        global_object: str = "jets",
        out_dim: int = 64,
        embed_dim: int = 64,
        num_heads: int = 4,
        head_dim: int | None = None,
        attn_dropout: float = 0.0,
        ff_hidden_mult: float = 2.0,
        ff_dropout: float = 0.0,
        activation: str = "GELU",
        norm: NormKind = "setnorm",
        encoder_depth: int = 2,
        seed_strategy: Literal["pooling", "particles", "objects"] = "pooling",
        num_particles: int | None = None,
        decoder_depth: int = 1,
        predictor_layers: list[int] | None = None,
        predictor_pooling: Literal["mean", "reshape"] = "reshape",
        set_transform_events: bool = False,
        cross_decoder_depth: int = 1,
        cross_decoder_activation: str = "GELU",
        input_names: list[str] | None = None,
        attach_global: bool = False,
        embeddings: EmbeddingConfig | None = None,
    ) -> None:
        super().__init__()
        owner = "JaggedTransformer"
        variables = require_variables(variables, global_object, owner)
        for key, value in (("encoder_depth", encoder_depth), ("decoder_depth", decoder_depth)):
            if value < 0:
                raise ValueError(f"{owner}.{key}: expected >= 0, got {value}")
        if predictor_pooling not in ("mean", "reshape"):
            raise ValueError(f"{owner}.predictor_pooling: expected mean or reshape")
        self.embed_dim = embed_dim
        self.output_size: int = out_dim
        self.constituent_size: int | None = embed_dim
        self.inputs = ConstituentInputs(
            variables, global_object, input_names, attach_global, embed_dim, embeddings, owner
        )
        if seed_strategy == "pooling":
            num_seeds = 1
        elif seed_strategy == "objects":
            num_seeds = len(self.inputs.input_names)
        elif seed_strategy == "particles":
            if num_particles is None or num_particles <= 0:
                raise ValueError(
                    f"{owner}.num_particles: seed_strategy=particles needs the padded number of "
                    "constituents (e.g. data.num_inputs.tracks), got "
                    f"{num_particles}"
                )
            num_seeds = num_particles
        else:
            raise ValueError(
                f"{owner}.seed_strategy: expected pooling, particles or objects, "
                f"got {seed_strategy!r}"
            )
        self.num_seeds = num_seeds

        def mab(act: str = activation, cross: bool = False) -> MAB:
            return MAB(
                embed_dim,
                num_heads,
                head_dim,
                attn_dropout,
                ff_hidden_mult,
                ff_dropout,
                act,
                norm,
                cross,
            )

        self.encoder = nn.ModuleList(mab() for _ in range(encoder_depth))
        self.pma = PMA(num_seeds, embed_dim, activation, mab(cross=True))
        # k = 1 leaves nothing for decoder SABs to relate
        self.decoder = nn.ModuleList(mab() for _ in range(decoder_depth if num_seeds > 1 else 0))
        self.events: FlatInputs | None = None
        if set_transform_events:
            events: EmbeddingConfig = {**(embeddings or {}), "reduction": "reshape"}
            self.events = FlatInputs(
                variables, global_object, embed_dim, events, False, f"{owner}.events"
            )
            self.event_proj = nn.Linear(self.events.output_size, embed_dim)
            self.event_encoder = nn.ModuleList(mab() for _ in range(encoder_depth))
            self.cross_decoder = nn.ModuleList(
                mab(cross_decoder_activation, cross=True)
                for _ in range(cross_decoder_depth if num_seeds > 1 else 0)
            )
        self.predictor_pooling = predictor_pooling
        pooled = embed_dim * (num_seeds if predictor_pooling == "reshape" else 1)
        layers, last = mlp_layers(
            pooled, list(predictor_layers or []), activation, False, 0.0, owner
        )
        self.predictor = nn.Sequential(*layers, nn.Linear(last, out_dim))

    def forward(
        self,
        inputs: dict[str, Tensor],
        pad_masks: dict[str, Tensor],
        raw_inputs: dict[str, Tensor],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        x, pad_mask = self.inputs(inputs, pad_masks, raw_inputs)
        for sab in self.encoder:
            x = sab(x, x_pad=pad_mask)
        seeds = self.pma(x, pad_mask)
        for sab in self.decoder:
            seeds = sab(seeds)
        if self.events is not None:
            event = self.event_proj(self.events(inputs, raw_inputs)).unsqueeze(1)
            for sab in self.event_encoder:
                event = sab(event)
            if self.num_seeds == 1:
                seeds = seeds + event
            for mab in self.cross_decoder:
                seeds = mab(seeds, event)
        pooled = seeds.mean(dim=1) if self.predictor_pooling == "mean" else seeds.flatten(1)
        return self.predictor(pooled), self.inputs.split(x, pad_masks)


__all__ = [
    "MAB",
    "PMA",
    "ConstituentInputs",
    "DeepSets",
    "JaggedTransformer",
    "MaskedLayerNorm",
    "MaskedMLP",
    "SetNorm",
    "masked_pool",
]
