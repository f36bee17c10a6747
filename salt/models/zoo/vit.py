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
from salt.models.transformer import TransformerEncoderLayer
from salt.models.zoo.points import PointCloudBackbone


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


class PointGlobalMixedViT(PointCloudBackbone):
    """Pre-norm transformer over [CLS; event; points] with coordinate encodings.

    The CLS token, after the final norm, is the jet representation; the points, after the same
    norm, are returned for constituent tasks (width ``embed_dim``).
    """

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
        for argument, value in (
            ("embed_dim", embed_dim),
            ("num_heads", num_heads),
            ("num_layers", num_layers),
            ("mlp_ratio", mlp_ratio),
            ("out_dim", out_dim),
        ):
            if value <= 0:
                raise ValueError(f"{owner}.{argument}: expected a positive int, got {value}")
        self.embed_dim = embed_dim
        self.output_size: int = out_dim
        self.constituent_size: int | None = embed_dim

        variables = self._build_points(
            variables,
            input_name,
            embed_dim,
            activation,
            pid_variable,
            pid_values,
            coord_variables,
            owner,
        )
        try:
            self.pos_encoding = CoordinateEncoding(
                embed_dim, pos_encoding, min_frequency, max_frequency
            )
        except ValueError as err:
            raise ValueError(f"{owner}.{err}") from None

        self.event_embed = self._build_tokens(
            variables, global_object, embed_dim, activation, event_token, "event_token", owner
        )

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
        h, raw, mask = self._embed_points(inputs, pad_masks, raw_inputs)
        padded = mask.unsqueeze(-1)
        h = (h + self.pos_encoding(raw[..., self.coord_columns])).masked_fill(padded, 0.0)
        seq, seq_mask = self._with_tokens(h, mask, inputs, self.event_embed)
        for block in self.blocks:
            seq = block(seq, seq_mask)
        seq = self.norm(seq)
        points = seq[:, self.num_tokens :].masked_fill(padded, 0.0)
        return self.out(seq[:, 0]), {self.input_name: points}


__all__ = ["CoordinateEncoding", "PointGlobalMixedViT"]
