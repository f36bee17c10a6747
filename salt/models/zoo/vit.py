"""PointGlobalMixedViT: a vision-transformer-style encoder over points placed in (Δη, Δφ).

Points are embedded from their features (and an optional particle-ID embedding); an encoding of
their angular position relative to the jet axis is added, as a ViT adds patch positions; a CLS
token reads out the jet and an optional event token carries the jet-level features into the
attention. The position comes from the coordinates, not from the order, so the output does not
depend on how constituents are ordered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from salt.models.attention import ScaledDotProductAttention
from salt.models.contracts import BackboneSizes
from salt.models.dense import Dense
from salt.models.transformer import TransformerEncoderLayer
from salt.models.zoo.part import check_variables, context_groups, variable_column
from salt.models.zoo.pet import PIDEmbedding, point_columns


class CoordinateEncoding(nn.Module):
    """Map 2D coordinates (B, L, 2) to (B, L, dim) sin/cos features of several frequencies.

    ``sinusoidal``: fixed frequencies spaced geometrically from ``min_frequency`` to
    ``max_frequency`` (in radians⁻¹: angular features between ~2π and 2π / max_frequency),
    a quarter of the width per coordinate and function, no parameters. ``fourier``: learned
    Fourier features (Li et al., arXiv 2106.02795), random 2D frequencies of scale
    ``max_frequency / 3`` followed by an MLP, all trained.
    """

    def __init__(
        self,
        dim: int,
        kind: Literal["sinusoidal", "fourier"] = "sinusoidal",
        min_frequency: float = 1.0,
        max_frequency: float = 100.0,
    ) -> None:
        """Build the frequencies (and for ``fourier`` the MLP) for output width ``dim``."""
        super().__init__()
        if kind not in ("sinusoidal", "fourier"):
            raise ValueError(f"pos_encoding: expected sinusoidal or fourier, got '{kind}'")
        if not 0 < min_frequency <= max_frequency:
            raise ValueError(
                f"frequencies: expected 0 < min <= max, got {min_frequency}, {max_frequency}"
            )
        self.kind = kind
        self.mlp: nn.Module = nn.Identity()
        if kind == "sinusoidal":
            if dim % 4:
                raise ValueError(f"embed_dim: sinusoidal encoding needs a multiple of 4, got {dim}")
            steps = torch.linspace(0.0, 1.0, dim // 4)
            freqs = min_frequency * (max_frequency / min_frequency) ** steps
            # (2, dim / 2): coordinate c fills columns [c * dim / 4, (c + 1) * dim / 4)
            block = torch.block_diag(freqs.unsqueeze(0), freqs.unsqueeze(0))
            self.register_buffer("frequencies", block, persistent=False)
        else:
            if dim % 2:
                raise ValueError(f"embed_dim: Fourier encoding needs an even width, got {dim}")
            self.frequencies = nn.Parameter(torch.randn(2, dim // 2) * max_frequency / 3)
            self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, coords: Tensor) -> Tensor:
        """Encode coords (B, L, 2)."""
        angles = coords @ self.frequencies
        return self.mlp(torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1))


class PointGlobalMixedViT(nn.Module):
    """Pre-norm transformer over [CLS; event; points] with coordinate encodings.

    The CLS token, after the final norm, is the jet representation; the points, after the same
    norm, are returned for constituent tasks (width ``embed_dim``).
    """

    feature_columns: Tensor

    @classmethod
    def config_sizes(cls, args: Mapping[str, Any]) -> BackboneSizes:
        """The jet (``out_dim``) and the points (``embed_dim``)."""
        return BackboneSizes(int(args["out_dim"]), int(args["embed_dim"]))

    def __init__(
        self,
        variables: dict[str, list[str]] | None = None,
        global_object: str = "jets",
        input_name: str = "tracks",
        embed_dim: int = 128,
        num_heads: int = 8,
        num_layers: int = 4,
        mlp_ratio: int = 4,
        activation: str = "GELU",
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        coord_variables: list[str] | None = None,
        pos_encoding: Literal["sinusoidal", "fourier"] = "sinusoidal",
        min_frequency: float = 1.0,
        max_frequency: float = 100.0,
        pid_variable: str | None = None,
        pid_values: list[int] | None = None,
        event_token: bool = True,
        out_dim: int = 128,
    ) -> None:
        """Build the network.

        Args:
            variables: ``{input type: [variables]}``; filled in by salt from ``data.variables``.
            global_object: name of the jet-level input type; filled in by salt.
            input_name: the constituent type the points come from.
            embed_dim: width of the tokens.
            num_heads: attention heads.
            num_layers: transformer blocks.
            mlp_ratio: MLP expansion in the blocks.
            activation: ``torch.nn`` activation name in the MLPs.
            dropout: dropout on block outputs and inside the MLPs.
            attn_dropout: dropout on the attention weights.
            coord_variables: the (Δη, Δφ) variables, used unnormalised for the positional
                encoding; default ``[deta, dphi]``.
            pos_encoding: ``sinusoidal`` (fixed) or ``fourier`` (learned), see
                :class:`CoordinateEncoding`.
            min_frequency, max_frequency: frequency range of the encoding, in radians⁻¹.
            pid_variable: integer particle-ID variable to embed (kept out of the continuous
                features); ``pid_values`` lists its codes.
            pid_values: the PID codes with their own embedding; others share one.
            event_token: add a token embedding the jet variables (and PARAMETERS).
            out_dim: size of the jet representation; a Linear maps the CLS token to it when it
                differs from ``embed_dim``.
        """
        super().__init__()
        owner = "PointGlobalMixedViT"
        variables = check_variables(variables, input_name, owner)
        for argument, value in (
            ("embed_dim", embed_dim),
            ("num_heads", num_heads),
            ("num_layers", num_layers),
            ("mlp_ratio", mlp_ratio),
            ("out_dim", out_dim),
        ):
            if value <= 0:
                raise ValueError(f"{owner}.{argument}: expected a positive int, got {value}")
        self.input_name = input_name
        self.embed_dim = embed_dim
        self.output_size: int = out_dim
        self.constituent_size: int | None = embed_dim

        columns, self.pid_column = point_columns(
            variables, input_name, pid_variable, pid_values, owner
        )
        self.register_buffer("feature_columns", torch.tensor(columns), persistent=False)
        self.embed = Dense(len(columns), embed_dim, [embed_dim], activation=activation)
        self.pid_embed = None
        if self.pid_column is not None:
            assert pid_values is not None
            self.pid_embed = PIDEmbedding(pid_values, embed_dim)
        coords = ["deta", "dphi"] if coord_variables is None else list(coord_variables)
        if len(coords) != 2:
            raise ValueError(f"{owner}.coord_variables: expected two names, got {coords}")
        self.coord_columns = [
            variable_column(variables, input_name, name, owner, "coord_variables")
            for name in coords
        ]
        try:
            self.pos_encoding = CoordinateEncoding(
                embed_dim, pos_encoding, min_frequency, max_frequency
            )
        except ValueError as err:
            raise ValueError(f"{owner}.{err}") from None

        self.context_names, n_context = context_groups(variables, global_object)
        if event_token and not n_context:
            raise ValueError(
                f"{owner}.event_token: data.variables has no '{global_object}' or PARAMETERS "
                "variables to build it from; set event_token: false"
            )
        self.event_embed = (
            Dense(n_context, embed_dim, [embed_dim], activation=activation) if event_token else None
        )
        self.cls_token = nn.Parameter(torch.empty(1, 1, embed_dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.num_tokens = 2 if event_token else 1

        try:
            self.blocks = nn.ModuleList(
                TransformerEncoderLayer(
                    embed_dim,
                    {"num_heads": num_heads, "attention": ScaledDotProductAttention(attn_dropout)},
                    {
                        "hidden_layers": [mlp_ratio * embed_dim],
                        "activation": activation,
                        "dropout": dropout,
                    },
                    dropout=dropout,
                )
                for _ in range(num_layers)
            )
        except ValueError as err:
            raise ValueError(f"{owner}: {err}") from None
        self.norm = nn.LayerNorm(embed_dim)
        self.out: nn.Module = (
            nn.Identity() if out_dim == embed_dim else nn.Linear(embed_dim, out_dim)
        )

    def forward(
        self,
        inputs: dict[str, Tensor],
        pad_masks: dict[str, Tensor],
        raw_inputs: dict[str, Tensor],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the jet representation (B, out_dim) and the points (B, L, embed_dim)."""
        mask = pad_masks[self.input_name]
        padded = mask.unsqueeze(-1)
        x = inputs[self.input_name].masked_fill(padded, 0.0)
        raw = raw_inputs[self.input_name].masked_fill(padded, 0.0)
        h = self.embed(x.index_select(-1, self.feature_columns))
        if self.pid_embed is not None:
            h = h + self.pid_embed(raw[..., self.pid_column])
        h = (h + self.pos_encoding(raw[..., self.coord_columns])).masked_fill(padded, 0.0)

        batch = h.shape[0]
        tokens = [self.cls_token.expand(batch, -1, -1)]
        if self.event_embed is not None:
            context = torch.cat([inputs[name] for name in self.context_names], dim=-1)
            tokens.append(self.event_embed(context).unsqueeze(1))
        seq = torch.cat([*tokens, h], dim=1)
        token_mask = torch.zeros(batch, self.num_tokens, dtype=torch.bool, device=mask.device)
        seq_mask = torch.cat([token_mask, mask], dim=1)
        for block in self.blocks:
            seq = block(seq, seq_mask)
        seq = self.norm(seq)
        points = seq[:, self.num_tokens :].masked_fill(padded, 0.0)
        return self.out(seq[:, 0]), {self.input_name: points}


__all__ = ["CoordinateEncoding", "PointGlobalMixedViT"]
