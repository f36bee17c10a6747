"""Cross-attention blocks: a class token that pools a jet, and encoders that mix input types."""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from salt.models.configs import DenseConfig, MHAConfig
from salt.models.dense import make_norm
from salt.models.transformer import TransformerEncoderLayer, build_ffn, build_mha


def _check_common(embed_dim: int, num_layers: int, out_dim: int | None, dropout: float) -> None:
    for argument, value in (("num_layers", num_layers), ("out_dim", out_dim)):
        if value is not None and value <= 0:
            raise ValueError(f"{argument}: expected a positive int, got {value}")
    if embed_dim <= 0:
        raise ValueError(f"embed_dim: expected a positive int, got {embed_dim}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout}")


class CrossAttentionLayer(nn.Module):
    """One pre-norm block: ``x + MHA(norm(x), norm(kv))`` then ``x + FFN(norm(x))``.

    The queries and the keys/values get their own norms because they come from different
    streams (a class token and the constituents, or two input types) with different statistics.
    """

    def __init__(
        self,
        embed_dim: int,
        mha_config: MHAConfig | None = None,
        dense_config: DenseConfig | None = None,
        norm_layer: str = "LayerNorm",
        dropout: float = 0.0,
        dense_argument: str = "dense_config",
    ) -> None:
        """Build the block; ``dense_argument`` names the feed-forward config in error messages."""
        super().__init__()
        _check_common(embed_dim, 1, None, dropout)
        self.q_norm = make_norm(norm_layer, embed_dim)
        self.kv_norm = make_norm(norm_layer, embed_dim)
        self.attn = build_mha(embed_dim, mha_config)
        self.ffn_norm = make_norm(norm_layer, embed_dim)
        self.ffn = build_ffn(embed_dim, dense_config, dense_argument)
        self.drop = nn.Dropout(dropout)
        self.output_size: int = embed_dim

    def forward(
        self,
        x: Tensor,
        kv: Tensor,
        pad_mask: Tensor | None = None,
        kv_pad_mask: Tensor | None = None,
    ) -> Tensor:
        """Update x (B, Lq, embed_dim) from kv (B, Lk, embed_dim); padded keys get no weight."""
        if kv_pad_mask is not None:
            # Zero before the norm: a non-finite padded value would turn its gradient into NaN.
            kv = kv.masked_fill(kv_pad_mask.unsqueeze(-1), 0.0)
        attended = self.attn(
            self.q_norm(x), self.kv_norm(kv), pad_mask=pad_mask, kv_pad_mask=kv_pad_mask
        )
        x = x + self.drop(attended)
        return x + self.drop(self.ffn(self.ffn_norm(x)))


class CrossAttentionPooling(nn.Module):
    """Pool a jet into a learnable class token that attends to its constituents.

    Unlike a single softmax-weighted sum, several heads and layers can each pick out different
    constituents, and the feed-forward blocks mix what they found. The token never sees the
    constituents' order, so the result is invariant to permutations and to extra padding.
    """

    def __init__(
        self,
        input_size: int | None = None,
        num_layers: int = 1,
        mha_config: MHAConfig | None = None,
        dense_config: DenseConfig | None = None,
        out_dim: int | None = None,
        norm_layer: str = "LayerNorm",
        dropout: float = 0.0,
    ) -> None:
        """Build the token and the blocks.

        Args:
            input_size: Width of the constituent embeddings; salt derives it from the encoder.
            num_layers: Number of cross-attention blocks updating the token.
            mha_config: Attention settings, as for :class:`~salt.models.TransformerEncoder`.
            dense_config: Feed-forward settings; ``hidden_layers`` defaults to
                ``[2 * input_size]``.
            out_dim: Width of an optional final Linear projection; the output is ``input_size``
                wide without it.
            norm_layer: ``torch.nn`` class name of the normalisation.
            dropout: Dropout on each sub-block's output before the residual sum.
        """
        super().__init__()
        if input_size is None:
            raise ValueError("input_size: not set (derived by salt from the encoder output)")
        if input_size <= 0:
            raise ValueError(f"input_size: expected a positive int, got {input_size}")
        _check_common(input_size, num_layers, out_dim, dropout)
        self.input_size = input_size
        # Small random start: LayerNorm of a constant vector would have huge gradients.
        self.class_token = nn.Parameter(torch.randn(1, 1, input_size) * 0.02)
        self.layers = nn.ModuleList(
            CrossAttentionLayer(input_size, mha_config, dense_config, norm_layer, dropout)
            for _ in range(num_layers)
        )
        self.norm = make_norm(norm_layer, input_size)
        self.out_proj: nn.Module = (
            nn.Identity() if out_dim is None else nn.Linear(input_size, out_dim)
        )
        self.output_size: int = input_size if out_dim is None else out_dim

    def forward(self, x: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        """Pool x (B, L, input_size) with pad_mask (B, L, True = padded) to (B, output_size).

        A jet without valid constituents gets the (finite) token that attended to nothing.
        """
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"x: expected last dimension input_size={self.input_size}, got {x.shape[-1]}"
            )
        token = self.class_token.expand(x.shape[0], 1, self.input_size)
        for layer in self.layers:
            token = layer(token, x, kv_pad_mask=pad_mask)
        return self.out_proj(self.norm(token)).squeeze(1)


class TransformerCrossAttentionEncoder(nn.Module):
    """Encode several input types with their own self-attention, exchanging via cross-attention.

    Each type (tracks, electrons, ...) keeps its own parameters, and each type attends to the
    concatenation of all the other types: after every layer (``ca_every_layer``) or once at the
    end. Within a cross-attention step all types read the states from before that step, so the
    result does not depend on the order of ``input_names``.
    """

    def __init__(
        self,
        input_names: list[str],
        embed_dim: int,
        num_layers: int,
        mha_config: MHAConfig | None = None,
        sa_dense_config: DenseConfig | None = None,
        ca_every_layer: bool = False,
        out_dim: int | None = None,
        norm_layer: str = "LayerNorm",
        dropout: float = 0.0,
    ) -> None:
        """Build the per-type blocks.

        Args:
            input_names: The input types to encode, e.g. ``[tracks, electrons]``; at least two.
            embed_dim: Width of every type's embeddings.
            num_layers: Number of self-attention layers per type.
            mha_config: Attention settings for self- and cross-attention.
            sa_dense_config: Feed-forward settings of every block (self- and cross-attention);
                ``hidden_layers`` defaults to ``[2 * embed_dim]``.
            ca_every_layer: Cross-attend after every layer instead of once after the last.
            out_dim: Width of an optional final Linear projection per type.
            norm_layer: ``torch.nn`` class name of the normalisation.
            dropout: Dropout on each sub-block's output before the residual sum.
        """
        super().__init__()
        _check_common(embed_dim, num_layers, out_dim, dropout)
        if len(input_names) < 2 or len(set(input_names)) != len(input_names):
            raise ValueError(
                f"input_names: expected at least two distinct input types (use "
                f"TransformerEncoder for one), got {input_names}"
            )
        if any(not name or "." in name for name in input_names):
            raise ValueError(
                f"input_names: expected non-empty names without '.', got {input_names}"
            )
        self.input_names = list(input_names)
        self.embed_dim = embed_dim
        self.ca_every_layer = ca_every_layer
        self.num_layers = num_layers
        num_ca = num_layers if ca_every_layer else 1

        def sa_layer() -> TransformerEncoderLayer:
            return TransformerEncoderLayer(
                embed_dim, mha_config, sa_dense_config, norm_layer, dropout
            )

        def ca_layer() -> CrossAttentionLayer:
            return CrossAttentionLayer(
                embed_dim, mha_config, sa_dense_config, norm_layer, dropout, "sa_dense_config"
            )

        # Cross-attention blocks first, so a bad sa_dense_config is reported under its own name.
        ca_layers = nn.ModuleDict(
            {name: nn.ModuleList(ca_layer() for _ in range(num_ca)) for name in input_names}
        )
        self.sa_layers = nn.ModuleDict(
            {name: nn.ModuleList(sa_layer() for _ in range(num_layers)) for name in input_names}
        )
        self.ca_layers = ca_layers
        self.norms = nn.ModuleDict({name: make_norm(norm_layer, embed_dim) for name in input_names})
        self.out_projs = nn.ModuleDict(
            {
                name: nn.Identity() if out_dim is None else nn.Linear(embed_dim, out_dim)
                for name in input_names
            }
        )
        self.output_size: int = embed_dim if out_dim is None else out_dim

    def _check_inputs(
        self, x: dict[str, Tensor], pad_masks: dict[str, Tensor] | None
    ) -> dict[str, Tensor]:
        if set(x) != set(self.input_names):
            raise ValueError(f"x: expected the input types {self.input_names}, got {sorted(x)}")
        for name, value in x.items():
            if value.shape[-1] != self.embed_dim:
                raise ValueError(
                    f"x[{name}]: expected last dimension embed_dim={self.embed_dim}, "
                    f"got {value.shape[-1]}"
                )
        if pad_masks is None:
            # Nothing padded: all-valid masks, needed to concatenate the types for cross-attention.
            return {
                name: torch.zeros(x[name].shape[:2], dtype=torch.bool, device=x[name].device)
                for name in self.input_names
            }
        missing = [name for name in self.input_names if name not in pad_masks]
        if missing:
            raise ValueError(f"pad_masks: missing the input types {missing}")
        return {name: pad_masks[name] for name in self.input_names}

    def _cross_attend(
        self, x: dict[str, Tensor], masks: dict[str, Tensor], step: int
    ) -> dict[str, Tensor]:
        updated = {}
        for name in self.input_names:
            others = [other for other in self.input_names if other != name]
            kv = torch.cat([x[other] for other in others], dim=1)
            kv_mask = torch.cat([masks[other] for other in others], dim=1)
            layer = cast(nn.ModuleList, self.ca_layers[name])[step]
            updated[name] = layer(x[name], kv, pad_mask=masks[name], kv_pad_mask=kv_mask)
        return updated

    def forward(
        self, x: dict[str, Tensor], pad_masks: dict[str, Tensor] | None = None
    ) -> dict[str, Tensor]:
        """Encode {type: (B, L_type, embed_dim)} to {type: (B, L_type, output_size)}.

        ``pad_masks`` maps each type to (B, L_type, True = padded); None means nothing is
        padded. Padded positions come out as zeros; a type with no valid entry in a jet only
        stops receiving attention, it never produces NaN.
        """
        masks = self._check_inputs(x, pad_masks)
        x = {name: x[name].masked_fill(masks[name].unsqueeze(-1), 0.0) for name in self.input_names}
        for i in range(self.num_layers):
            x = {
                name: cast(nn.ModuleList, self.sa_layers[name])[i](x[name], masks[name])
                for name in self.input_names
            }
            if self.ca_every_layer:
                x = self._cross_attend(x, masks, i)
        if not self.ca_every_layer:
            x = self._cross_attend(x, masks, 0)
        return {
            name: self.out_projs[name](self.norms[name](x[name])).masked_fill(
                masks[name].unsqueeze(-1), 0.0
            )
            for name in self.input_names
        }


__all__ = ["CrossAttentionLayer", "CrossAttentionPooling", "TransformerCrossAttentionEncoder"]
