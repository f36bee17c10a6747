"""Reduce a set of constituent embeddings to one vector per jet."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GlobalAttentionPooling(nn.Module):
    """Weighted sum of the valid constituents with learned, softmax-normalised weights.

    Unlike a plain mean, the network learns which constituents matter for the jet; padding gets
    zero weight and a jet with no valid constituent pools to zeros rather than NaN.
    """

    def __init__(self, input_size: int | None = None) -> None:
        """Build the scoring layer for embeddings of width ``input_size``.

        ``input_size`` may be left out of a config: salt derives it from the encoder output.
        """
        super().__init__()
        if input_size is None:
            raise ValueError("input_size: not set (derived by salt from the encoder output)")
        if input_size <= 0:
            raise ValueError(f"input_size: expected a positive int, got {input_size}")
        self.input_size = input_size
        self.output_size: int = input_size
        self.score = nn.Linear(input_size, 1)

    def forward(self, x: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        """Pool x (B, L, input_size) with pad_mask (B, L, True = padded) to (B, input_size)."""
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"x: expected last dimension input_size={self.input_size}, got {x.shape[-1]}"
            )
        if pad_mask is None:
            weights = torch.softmax(self.score(x).squeeze(-1), dim=-1)
            return torch.einsum("bl,bld->bd", weights, x)

        x = x.masked_fill(pad_mask.unsqueeze(-1), 0.0)
        scores = self.score(x).squeeze(-1).masked_fill(pad_mask, float("-inf"))
        # An all-padded jet would softmax over only -inf (NaN); give it flat scores instead and
        # rely on the zeroed weights below, which keeps the graph free of data-dependent branches.
        scores = scores.masked_fill(pad_mask.all(dim=-1, keepdim=True), 0.0)
        weights = torch.softmax(scores, dim=-1).masked_fill(pad_mask, 0.0)
        return torch.einsum("bl,bld->bd", weights, x)


__all__ = ["GlobalAttentionPooling"]
