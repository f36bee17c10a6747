"""A transformer encoder that carries an embedding per pair of constituents through its layers.

:class:`~salt.models.edges.EdgeFeatures` turns pair features (ΔR, kT, ...) into one fixed
attention bias per head, the same in every layer. Here the pairs keep an embedding of width
``edge_dim`` instead; every layer reads it through its own projections (a bias on the attention
scores and a sigmoid gate on the attention weights, per head) and, with ``update_edges``, adds
what its attention scores say about each pair back into the embedding, so later layers see pair
relations refined by earlier ones (salt-ml's ``edge_embed_dim`` and ``update_edges``).

The edge embeddings come from ``EdgeFeatures`` with ``num_heads`` set to ``edge_dim`` (its
output width), passed as ``attn_bias`` ``(B, edge_dim, L, L)``. Attention is computed
explicitly (the gate acts after the softmax, which fused kernels cannot do), on the padded
sequence.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from salt.models.configs import DenseConfig
from salt.models.transformer import build_ffn, encoder_norm


class EdgeAttention(nn.Module):
    """Self-attention with a per-head score bias and weight gate from pair embeddings.

    Args:
        embed_dim: width of the constituents.
        edge_dim: width of the pair embeddings.
        num_heads: attention heads (``embed_dim`` must be a multiple).
        dropout: dropout on the attention weights.
    """

    def __init__(self, embed_dim: int, edge_dim: int, num_heads: int = 1, dropout: float = 0.0):
        """Build the projections."""
        super().__init__()
        if num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(
                f"num_heads={num_heads}: expected a positive divisor of embed_dim={embed_dim}"
            )
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.out = nn.Linear(embed_dim, embed_dim)
        self.edge_bias = nn.Linear(edge_dim, num_heads)
        self.edge_gate = nn.Linear(edge_dim, num_heads)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: Tensor, edges: Tensor, pad_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """x (B, L, D), edges (B, L, L, edge_dim) -> (output (B, L, D), scores (B, L, L, H)).

        Padded keys get no weight; the scores (before the softmax) are returned for the edge
        update.
        """
        batch, length, width = x.shape
        q, k, v = (
            t.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
            for t in self.qkv(x).chunk(3, dim=-1)
        )
        scores = q @ k.transpose(-2, -1) / self.head_dim**0.5
        scores = scores + self.edge_bias(edges).permute(0, 3, 1, 2)
        masked = scores
        if pad_mask is not None:  # a large negative, not -inf: rows of padding stay finite
            masked = scores.masked_fill(pad_mask[:, None, None, :], torch.finfo(x.dtype).min)
        weights = masked.softmax(dim=-1) * torch.sigmoid(self.edge_gate(edges)).permute(0, 3, 1, 2)
        out = (self.drop(weights) @ v).transpose(1, 2).reshape(batch, length, width)
        return self.out(out), scores.permute(0, 2, 3, 1)


class EdgeEncoderLayer(nn.Module):
    """Pre-norm block: ``x + EdgeAttention(norm(x), norm(e))``, ``x + FFN(norm(x))`` and, with
    ``update_edges``, ``e + norm(W scores)``."""

    def __init__(
        self,
        embed_dim: int,
        edge_dim: int,
        num_heads: int = 1,
        dense_config: DenseConfig | None = None,
        norm_layer: str = "LayerNorm",
        norm_affine: bool = True,
        dropout: float = 0.0,
        update_edges: bool = False,
    ) -> None:
        """Build the block; see :class:`EdgeTransformerEncoder` for the arguments."""
        super().__init__()
        self.attn_norm = encoder_norm(norm_layer, embed_dim, norm_affine)
        self.edge_norm = encoder_norm(norm_layer, edge_dim, norm_affine)
        self.attn = EdgeAttention(embed_dim, edge_dim, num_heads, dropout)
        self.ffn_norm = encoder_norm(norm_layer, embed_dim, norm_affine)
        self.ffn = build_ffn(embed_dim, dense_config)
        self.drop = nn.Dropout(dropout)
        self.edge_update: nn.Module | None = None
        if update_edges:
            self.edge_update = nn.Sequential(
                nn.Linear(num_heads, edge_dim), encoder_norm(norm_layer, edge_dim, norm_affine)
            )

    def forward(
        self, x: Tensor, edges: Tensor, pad_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Update x (B, L, D) and, with ``update_edges``, edges (B, L, L, edge_dim)."""
        attended, scores = self.attn(self.attn_norm(x), self.edge_norm(edges), pad_mask)
        x = x + self.drop(attended)
        x = x + self.drop(self.ffn(self.ffn_norm(x)))
        if self.edge_update is not None:
            edges = edges + self.edge_update(scores)
            if pad_mask is not None:
                pairs = pad_mask.unsqueeze(-1) | pad_mask.unsqueeze(-2)
                edges = edges.masked_fill(pairs.unsqueeze(-1), 0.0)
        return x, edges


class EdgeTransformerEncoder(nn.Module):
    """Transformer encoder with pair embeddings read (and optionally updated) in every layer.

    Args:
        embed_dim: width of the constituents.
        num_layers: number of layers.
        edge_dim: width of the pair embeddings (the ``EdgeFeatures`` output, its ``num_heads``).
        num_heads: attention heads.
        dense_config: feed-forward settings (``hidden_layers`` defaults to ``[2 * embed_dim]``).
        out_dim: width of a final linear projection; none keeps ``embed_dim``.
        norm_layer: normalisation (e.g. LayerNorm, RMSNorm) before each sub-block and at the end.
        norm_affine: whether the norms learn a scale and shift.
        dropout: dropout on the sub-blocks' outputs and the attention weights.
        update_edges: add each layer's attention scores (projected to ``edge_dim``) to the pair
            embeddings for the next layer.
        num_registers: learned tokens appended to every jet (no pair embedding to or from
            them); they come out after the constituents.
    """

    def __init__(
        self,
        embed_dim: int,
        num_layers: int,
        edge_dim: int,
        num_heads: int = 1,
        dense_config: DenseConfig | None = None,
        out_dim: int | None = None,
        norm_layer: str = "LayerNorm",
        norm_affine: bool = True,
        dropout: float = 0.0,
        update_edges: bool = False,
        num_registers: int = 0,
    ) -> None:
        """Build the layers."""
        super().__init__()
        for name, value in (("embed_dim", embed_dim), ("num_layers", num_layers)):
            if value <= 0:
                raise ValueError(f"{name}: expected a positive int, got {value}")
        if edge_dim <= 0:
            raise ValueError(f"edge_dim: expected a positive int (the pair width), got {edge_dim}")
        if num_registers < 0:
            raise ValueError(f"num_registers: expected an int >= 0, got {num_registers}")
        self.embed_dim = embed_dim
        self.edge_dim = edge_dim
        self.num_registers = num_registers
        self.registers = (
            nn.Parameter(torch.randn(num_registers, embed_dim) * 1e-2) if num_registers else None
        )
        self.layers = nn.ModuleList(
            EdgeEncoderLayer(
                embed_dim,
                edge_dim,
                num_heads,
                dense_config,
                norm_layer,
                norm_affine,
                dropout,
                update_edges,
            )
            for _ in range(num_layers)
        )
        self.norm = encoder_norm(norm_layer, embed_dim, norm_affine)
        self.out_proj: nn.Module = (
            nn.Identity() if out_dim is None else nn.Linear(embed_dim, out_dim)
        )
        self.output_size: int = embed_dim if out_dim is None else out_dim

    def forward(
        self, x: Tensor, pad_mask: Tensor | None = None, attn_bias: Tensor | None = None
    ) -> Tensor:
        """Encode x (B, L, embed_dim) with the pair embeddings ``attn_bias`` (B, edge_dim, L, L)
        to (B, L + num_registers, output_size); padded positions come out as zeros."""
        if attn_bias is None:
            raise ValueError(
                "EdgeTransformerEncoder: no pair embeddings; set model.model.edge_features "
                f"(salt.models.EdgeFeatures with num_heads: {self.edge_dim})"
            )
        if attn_bias.dim() != 4 or attn_bias.shape[1] != self.edge_dim:
            raise ValueError(
                f"EdgeTransformerEncoder: pair embeddings of shape {tuple(attn_bias.shape)}, "
                f"expected (B, edge_dim={self.edge_dim}, L, L) (EdgeFeatures num_heads: "
                f"{self.edge_dim})"
            )
        edges = attn_bias.permute(0, 2, 3, 1)
        if self.registers is not None:
            batch = x.shape[0]
            x = torch.cat([x, self.registers.to(x.dtype).expand(batch, -1, -1)], dim=1)
            if pad_mask is not None:
                pad_mask = torch.cat([pad_mask, pad_mask.new_zeros(batch, self.num_registers)], 1)
            extra = self.num_registers
            edges = nn.functional.pad(edges, (0, 0, 0, extra, 0, extra))
        if pad_mask is not None:
            x = x.masked_fill(pad_mask.unsqueeze(-1), 0.0)
        for layer in self.layers:
            x, edges = layer(x, edges, pad_mask)
        x = self.out_proj(self.norm(x))
        if pad_mask is not None:
            x = x.masked_fill(pad_mask.unsqueeze(-1), 0.0)
        return x


__all__ = ["EdgeAttention", "EdgeEncoderLayer", "EdgeTransformerEncoder"]
