"""GATv2 attention: scores from an MLP on each query/key pair instead of a dot product."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from salt.models.attention import AttentionBase, attention_mask
from salt.models.dense import make_activation

# The slope of the GATv2 paper (Brody et al. 2021); torch's LeakyReLU default (0.01) is nearly
# a ReLU and would waste half of every pair's features.
LEAKY_RELU_SLOPE = 0.2


class GATv2Attention(AttentionBase):
    """Dynamic graph attention (GATv2, Brody et al. 2021) as a strategy for MultiheadAttention.

    Per head h the score of query i for key j is ``e_ij = a_h . act(W_q x_i + W_k x_j)``: the
    linear map of the concatenated pair ``W [x_i || x_j]`` is split into its query and key parts,
    which are exactly the ``q`` and ``k`` projections MultiheadAttention already computes, so the
    strategy only owns the per-head scoring vectors ``a_h``. Applying the non-linearity before
    ``a_h`` lets the ranking of keys depend on the query, which a dot product (or GAT v1) cannot
    do for every query. Scores are then ``softmax``-ed over the valid keys (plus ``attn_bias``)
    and weight ``v``.

    Memory grows as (B, H, Lq, Lk, head_dim), unlike fused dot-product attention: keep it for
    constituent counts of a jet, not for long sequences.
    """

    def __init__(
        self,
        num_heads: int | None = None,
        head_dim: int | None = None,
        activation: str = "LeakyReLU",
        dropout: float = 0.0,
    ) -> None:
        """Build the strategy.

        Args:
            num_heads: Number of heads; left out, it is taken from the MultiheadAttention.
            head_dim: Width of each head; left out, it is taken from the MultiheadAttention.
            activation: ``torch.nn`` class name of the pair non-linearity. ``LeakyReLU`` (the
                paper's choice) uses the paper's negative slope 0.2.
            dropout: Dropout on the attention weights, used only in training mode.
        """
        super().__init__(dropout)
        for argument, value in (("num_heads", num_heads), ("head_dim", head_dim)):
            if value is not None and value <= 0:
                raise ValueError(f"{argument}: expected a positive int or None, got {value}")
        self.act: nn.Module = (
            nn.LeakyReLU(LEAKY_RELU_SLOPE)
            if activation == "LeakyReLU"
            else make_activation(activation)
        )
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.att_weight: nn.Parameter | None
        self.register_parameter("att_weight", None)
        if num_heads is not None and head_dim is not None:
            self._build_weight(num_heads, head_dim)
        self._bound = False

    def _build_weight(self, num_heads: int, head_dim: int) -> None:
        # Scale so that a head's score starts O(1) whatever head_dim is.
        bound = head_dim**-0.5
        self.att_weight = nn.Parameter(torch.empty(num_heads, head_dim).uniform_(-bound, bound))

    def configure_heads(self, num_heads: int, head_dim: int) -> None:
        """Take the head layout of the MultiheadAttention, or check that it matches ours.

        The first MultiheadAttention to use this instance draws fresh scoring vectors: encoder
        layers each get a copy of one configured prototype and must not start identical.
        """
        if (self.num_heads or num_heads, self.head_dim or head_dim) != (num_heads, head_dim):
            raise ValueError(
                f"attention: GATv2Attention has num_heads={self.num_heads}, "
                f"head_dim={self.head_dim} but the MultiheadAttention has num_heads={num_heads}, "
                f"head_dim={head_dim}; make them equal or leave them out of the attention"
            )
        if not self._bound:
            self.num_heads, self.head_dim = num_heads, head_dim
            self._build_weight(num_heads, head_dim)
            self._bound = True

    def scores(self, q: Tensor, k: Tensor) -> Tensor:
        """Unnormalised scores (B, H, Lq, Lk) from q (B, H, Lq, D) and k (B, H, Lk, D)."""
        if self.att_weight is None:
            raise ValueError(
                "GATv2Attention: num_heads and head_dim are unknown; give them or use it inside "
                "a MultiheadAttention"
            )
        pairs = self.act(q.unsqueeze(-2) + k.unsqueeze(-3))  # (B, H, Lq, Lk, D)
        # (B, H, Lq, Lk, D) @ (1, H, 1, D, 1): one dot product per pair with that head's vector.
        return (pairs @ self.att_weight[None, :, None, :, None]).squeeze(-1)

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        kv_mask: Tensor | None = None,
        attn_bias: Tensor | None = None,
    ) -> Tensor:
        """Attend over the valid keys; queries whose keys are all padded give zeros."""
        scores = self.scores(q, k)
        mask = attention_mask(kv_mask, attn_bias, scores.dtype)
        if mask is not None:
            if mask.dtype == torch.bool:
                scores = scores.masked_fill(~mask, float("-inf"))
            else:
                scores = scores + mask
        weights = torch.softmax(scores, dim=-1)
        weights = F.dropout(weights, self.dropout, self.training)
        out = weights @ v
        if kv_mask is None:
            return out
        return out.masked_fill(kv_mask.all(dim=-1)[:, None, None, None], 0.0)


__all__ = ["GATv2Attention"]
