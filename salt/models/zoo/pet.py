"""PET2-style point-edge transformer (after OmniLearned's PET v2) as a salt backbone.

Each point (track) is embedded from its features and an optional particle-ID embedding; an
EdgeConv over its k nearest neighbours in (Δη, Δφ) adds local structure; a class token and a
conditioning token built from the jet features join the points in pre-norm attention blocks whose
logits carry a pairwise physics bias. Presets give the small/medium/large sizes, and weights can
be loaded from a pretrained file (a plain state_dict or a salt/Lightning checkpoint) to fine-tune.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from salt.models.attention import MultiheadAttention
from salt.models.contracts import BackboneSizes
from salt.models.dense import Dense
from salt.models.edges import EdgeFeatures, wrap_phi
from salt.models.zoo.points import PIDEmbedding, PointCloudBackbone
from salt.training.finetune import read_state_dict

log = logging.getLogger(__name__)

# (embed width, heads, blocks) of OmniLearned's PET2 presets
PRESETS: dict[str, tuple[int, int, int]] = {
    "small": (128, 8, 8),
    "medium": (512, 16, 12),
    "large": (1024, 32, 28),
}


class KNNEdgeConv(nn.Module):
    """EdgeConv (Wang et al., arXiv 1801.07829) over the k nearest neighbours in (Δη, Δφ).

    Global attention sees the whole jet at once; the neighbourhood messages add the local
    structure (substructure, collimated decay products) up front. Padded points and the point
    itself are never neighbours; a point with fewer than k valid neighbours averages over those
    it has (none: zero message).
    """

    def __init__(self, dim: int, num_neighbours: int) -> None:
        """Build the message network on [x_i, x_j - x_i]."""
        super().__init__()
        if num_neighbours <= 0:
            raise ValueError(f"num_neighbours: expected a positive int, got {num_neighbours}")
        self.k = num_neighbours
        self.message = nn.Sequential(
            nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, dim), nn.GELU()
        )
        self.norm = nn.LayerNorm(dim)

    def neighbours(self, coords: Tensor, pad_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Indices (B, L, k) into the points and whether each is a real neighbour of a real point.

        Top-k runs on distances with k always-invalid extra columns appended, so that it never
        asks for more entries than exist whatever the (dynamic) length, and indices past the last
        point select zero rows.
        """
        deta = coords[..., 0].unsqueeze(-1) - coords[..., 0].unsqueeze(-2)
        dphi = wrap_phi(coords[..., 1].unsqueeze(-1) - coords[..., 1].unsqueeze(-2))
        dist = deta**2 + dphi**2
        length = dist.shape[-1]
        index = torch.arange(length, device=dist.device)
        eye = index.unsqueeze(-1) == index.unsqueeze(-2)  # EyeLike has no bool kernel in ORT
        dist = dist.masked_fill(pad_mask.unsqueeze(-2) | eye, float("inf"))
        dist = F.pad(dist, (0, self.k), value=float("inf"))
        nearest = dist.topk(self.k, dim=-1, largest=False)
        valid = torch.isfinite(nearest.values) & ~pad_mask.unsqueeze(-1)
        return nearest.indices, valid

    def forward(self, x: Tensor, coords: Tensor, pad_mask: Tensor) -> Tensor:
        """Return x (B, L, D) plus the mean message from each point's neighbours."""
        index, valid = self.neighbours(coords, pad_mask)
        batch, length, dim = x.shape
        padded_x = F.pad(x, (0, 0, 0, self.k))  # zero rows for the extra columns
        offset = torch.arange(batch, device=x.device).view(-1, 1, 1) * (length + self.k)
        flat = (index + offset).reshape(-1)
        neighbour = padded_x.reshape(-1, dim).index_select(0, flat).view(batch, length, self.k, dim)
        centre = x.unsqueeze(2).expand_as(neighbour)
        messages = self.message(torch.cat([centre, neighbour - centre], dim=-1))
        messages = messages.masked_fill(~valid.unsqueeze(-1), 0.0)
        count = valid.sum(-1, keepdim=True).clamp_min(1).to(x.dtype)
        return x + self.norm(messages.sum(2) / count)


class PET2Block(nn.Module):
    """Pre-norm attention + MLP block with LayerScale (Touvron et al., arXiv 2103.17239).

    LayerScale starts each residual branch small, which keeps deep (28-block) stacks trainable.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: int = 2,
        dropout: float = 0.0,
        layer_scale_init: float | None = 0.1,
    ) -> None:
        """Build the block; see :class:`PET2` for the arguments."""
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = MultiheadAttention(dim, num_heads, dropout=dropout)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = Dense(dim, dim, [mlp_ratio * dim], activation="GELU", dropout=dropout)
        self.drop = nn.Dropout(dropout)
        self.gamma_attn: nn.Parameter | None = None
        self.gamma_ffn: nn.Parameter | None = None
        if layer_scale_init is not None:
            self.gamma_attn = nn.Parameter(torch.full((dim,), layer_scale_init))
            self.gamma_ffn = nn.Parameter(torch.full((dim,), layer_scale_init))

    def forward(self, x: Tensor, pad_mask: Tensor, attn_bias: Tensor | None = None) -> Tensor:
        """Update x (B, L, D); ``attn_bias`` (B, H, L, L) is added to the attention logits."""
        h = self.attn(self.attn_norm(x), pad_mask=pad_mask, attn_bias=attn_bias)
        x = x + (h if self.gamma_attn is None else self.gamma_attn * h)
        h = self.drop(self.ffn(self.ffn_norm(x)))
        return x + (h if self.gamma_ffn is None else self.gamma_ffn * h)


@dataclass
class PretrainedReport:
    """What :func:`load_pretrained` did, key by key, for logs and tests."""

    prefix: str
    loaded: list[str]
    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]


def load_pretrained(module: nn.Module, path: str | Path, owner: str) -> PretrainedReport:
    """Load the matching weights of a file into ``module`` and report every key that did not fit.

    The file may be a plain state_dict or a salt/Lightning checkpoint of any task: the prefix
    under which ``module`` sits there (``model.backbone.`` in salt) is found as the one that
    matches most keys, and keys outside it (task heads, normalisation) are ignored. Tensors whose
    shape differs (e.g. a new input variable) are left at their fresh values.
    """
    where = f"{owner}.pretrained '{path}'"
    state = read_state_dict(path, where)
    own = module.state_dict()
    votes: Counter[str] = Counter()
    for key in state:
        for i, char in enumerate(f".{key}"):
            if char == "." and key[i:] in own:
                votes[key[:i]] += 1
    if not votes:
        raise ValueError(
            f"{where}: no key matches this model (file has e.g. {sorted(state)[:3]}, model "
            f"expects e.g. {sorted(own)[:3]})"
        )
    prefix = votes.most_common(1)[0][0]
    selected = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    mismatched = sorted(k for k, v in selected.items() if k in own and v.shape != own[k].shape)
    loadable = {k: v for k, v in selected.items() if k in own and k not in mismatched}
    module.load_state_dict(loadable, strict=False)
    report = PretrainedReport(
        prefix=prefix,
        loaded=sorted(loadable),
        missing=sorted(set(own) - set(loadable)),
        unexpected=sorted(set(selected) - set(own)),
        mismatched=mismatched,
    )
    log.info("%s: loaded %d tensors (prefix '%s')", where, len(report.loaded), prefix)
    for kind in ("missing", "unexpected", "mismatched"):
        keys = getattr(report, kind)
        if keys:
            log.warning("%s: %d %s keys: %s", where, len(keys), kind, ", ".join(keys))
    return report


class PET2(PointCloudBackbone):
    """Point-edge transformer with local kNN features, a jet token and pairwise attention bias.

    ``forward`` returns the class token (B, out_dim) and the points (B, L, out_dim): both pass
    the final norm and the output projection, which is why the width is called ``base_dim`` here
    (salt sizes constituent tasks from ``out_dim`` then).
    """

    @classmethod
    def config_sizes(cls, args: Mapping[str, Any]) -> BackboneSizes:
        """The jet and the points, both projected to ``out_dim``."""
        return BackboneSizes(int(args["out_dim"]), int(args["out_dim"]))

    def __init__(
        self,
        variables: dict[str, list[str]] | None = None,
        global_object: str = "jets",
        input_name: str = "tracks",
        preset: Literal["small", "medium", "large"] = "small",
        base_dim: int | None = None,
        num_heads: int | None = None,
        num_layers: int | None = None,
        mlp_ratio: int = 2,
        num_neighbours: int = 10,
        coord_variables: list[str] | None = None,
        pid_variable: str | None = None,
        pid_values: list[int] | None = None,
        pair_features: list[str] | None = None,
        pair_hidden: list[int] | None = None,
        global_token: bool = True,
        dropout: float = 0.0,
        layer_scale_init: float | None = 0.1,
        out_dim: int = 128,
        pretrained: str | None = None,
    ) -> None:
        """Build the network.

        Args:
            variables: ``{input type: [variables]}``; filled in by salt from ``data.variables``.
            global_object: name of the jet-level input type; filled in by salt.
            input_name: the constituent type the points come from.
            preset: ``small`` (128 wide, 8 heads, 8 blocks), ``medium`` (512, 16, 12) or
                ``large`` (1024, 32, 28).
            base_dim, num_heads, num_layers: override the preset's width, heads and blocks.
            mlp_ratio: MLP expansion in the attention blocks.
            num_neighbours: k of the local kNN EdgeConv.
            coord_variables: the (Δη, Δφ) variables of the neighbourhood, used unnormalised;
                default ``[deta, dphi]``.
            pid_variable: integer particle-ID variable to embed (kept out of the continuous
                features); ``pid_values`` lists its codes.
            pid_values: the PID codes with their own embedding; others share one.
            pair_features: :class:`~salt.models.edges.EdgeFeatures` names for the attention bias;
                default ``[dR, kt, z, mass]`` (needs pt, eta, phi); ``[]`` disables the bias.
            pair_hidden: hidden widths of the pair-bias network; default ``[32]``.
            global_token: add a token embedding the jet variables (and PARAMETERS).
            dropout: dropout in the attention blocks.
            layer_scale_init: initial LayerScale value; None disables LayerScale.
            out_dim: size of the jet representation; a Linear maps to it from ``base_dim``
                when they differ.
            pretrained: file to initialise the weights from, see :func:`load_pretrained`.
        """
        super().__init__()
        owner = "PET2"
        if preset not in PRESETS:
            raise ValueError(f"{owner}.preset: expected one of {list(PRESETS)}, got '{preset}'")
        dim, heads, layers = PRESETS[preset]
        dim = dim if base_dim is None else base_dim
        heads = heads if num_heads is None else num_heads
        layers = layers if num_layers is None else num_layers
        for argument, value in (
            ("base_dim", dim),
            ("num_heads", heads),
            ("num_layers", layers),
            ("mlp_ratio", mlp_ratio),
            ("out_dim", out_dim),
        ):
            if value <= 0:
                raise ValueError(f"{owner}.{argument}: expected a positive int, got {value}")
        if dim % heads:
            raise ValueError(f"{owner}.base_dim: {dim} is not a multiple of num_heads={heads}")
        self.base_dim, self.num_heads, self.num_layers = dim, heads, layers
        self.output_size: int = out_dim
        self.constituent_size: int | None = out_dim

        variables = self._build_points(
            variables, input_name, dim, "GELU", pid_variable, pid_values, coord_variables, owner
        )
        self.local = KNNEdgeConv(dim, num_neighbours)
        self.global_embed = self._build_tokens(
            variables, global_object, dim, "GELU", global_token, "global_token", owner
        )

        features = ["dR", "kt", "z", "mass"] if pair_features is None else list(pair_features)
        self.pair_bias: EdgeFeatures | None = None
        if features:
            try:
                self.pair_bias = EdgeFeatures(
                    features, heads, pair_hidden, input_name, variables[input_name]
                )
            except ValueError as err:
                raise ValueError(f"{owner}.pair_features: {err}") from None

        self.blocks = nn.ModuleList(
            PET2Block(dim, heads, mlp_ratio, dropout, layer_scale_init) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.out: nn.Module = nn.Identity() if out_dim == dim else nn.Linear(dim, out_dim)
        if pretrained is not None:
            load_pretrained(self, pretrained, owner)

    def forward(
        self,
        inputs: dict[str, Tensor],
        pad_masks: dict[str, Tensor],
        raw_inputs: dict[str, Tensor],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the jet representation (B, out_dim) and the points (B, L, out_dim)."""
        h, raw, mask = self._embed_points(inputs, pad_masks, raw_inputs)
        padded = mask.unsqueeze(-1)
        h = self.local(h.masked_fill(padded, 0.0), raw[..., self.coord_columns], mask)
        seq, seq_mask = self._with_tokens(
            h.masked_fill(padded, 0.0), mask, inputs, self.global_embed
        )
        bias = None
        if self.pair_bias is not None:
            n = self.num_tokens
            bias = F.pad(self.pair_bias(raw, mask), (n, 0, n, 0))
        for block in self.blocks:
            seq = block(seq, seq_mask, bias)
        out = self.out(self.norm(seq))
        points = out[:, self.num_tokens :].masked_fill(padded, 0.0)
        return out[:, 0], {self.input_name: points}


__all__ = ["PET2", "PRESETS", "KNNEdgeConv", "PIDEmbedding", "PretrainedReport", "load_pretrained"]
