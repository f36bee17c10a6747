"""Packed constituents: compute on the real constituents only, not on the padding.

A batch of jets holds its constituents padded to a fixed length L (40 tracks), while a jet has
on average far fewer real ones (8 to 20). Every per-constituent layer (projections,
feed-forward blocks, heads) would spend most of its time on padding. :class:`Packing` gathers the
real constituents of a batch into one ``(N, D)`` tensor (N = number of real constituents) and
scatters results back, with plain index operations (no boolean indexing of values, so autograd
stays cheap and ``torch.compile`` sees ordinary gathers).

Attention needs the per-jet layout: :meth:`Packing.to_compact` puts each jet's constituents
first in a ``(B, Lc, ...)`` tensor whose length ``Lc`` is the longest jet of the batch, not L.
Pairs of constituents of the same jet (for vertexing) come from :meth:`Packing.pairs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def packing_enabled(x: Tensor) -> bool:
    """Whether the packed path may run: never while tracing or exporting, whose graphs need
    shapes that do not depend on the data (the padded path computes the same function)."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return False
    return not torch.compiler.is_compiling()


@dataclass(frozen=True)
class Packing:
    """Where the real constituents of a padded batch are.

    Attributes:
        batch_size: B.
        length: L, the padded length.
        index: (N,) flat positions ``b * L + i`` of the real constituents, in row-major order.
        jet: (N,) the jet ``b`` of each real constituent.
        slot: (N,) the position of each constituent among the real ones of its jet (0, 1, ...).
        lengths: (B,) number of real constituents per jet.
        max_length: the longest jet of the batch (``Lc``).
    """

    batch_size: int
    length: int
    index: Tensor
    jet: Tensor
    slot: Tensor
    lengths: Tensor
    max_length: int

    @classmethod
    def from_pad_mask(cls, pad_mask: Tensor) -> Packing:
        """Build from a (B, L) mask, True = padded (one host synchronisation, for N)."""
        valid = ~pad_mask
        batch_size, length = valid.shape
        index = valid.reshape(-1).nonzero().squeeze(1)
        lengths = valid.sum(dim=1)
        jet = torch.div(index, max(length, 1), rounding_mode="floor")
        slot = (valid.cumsum(dim=1) - 1).reshape(-1)[index]
        max_length = int(lengths.max()) if batch_size else 0
        return cls(batch_size, length, index, jet, slot, lengths, max_length)

    @property
    def num_real(self) -> int:
        """N, the number of real constituents."""
        return int(self.index.numel())

    def pack(self, x: Tensor) -> Tensor:
        """(B, L, ...) -> (N, ...): the real constituents only."""
        return x.reshape(self.batch_size * self.length, *x.shape[2:]).index_select(0, self.index)

    def unpack(self, values: Tensor, fill: float = 0.0) -> Tensor:
        """(N, ...) -> (B, L, ...), ``fill`` on padding."""
        out = values.new_full((self.batch_size * self.length, *values.shape[1:]), fill)
        out = out.index_copy(0, self.index, values)
        return out.reshape(self.batch_size, self.length, *values.shape[1:])

    def compact_mask(self) -> Tensor:
        """(B, Lc) True on the padded slots of the compact layout."""
        slots = torch.arange(self.max_length, device=self.lengths.device)
        return slots[None, :] >= self.lengths[:, None]

    def compact_index(self) -> Tensor:
        """(N,) flat positions ``b * Lc + slot`` in the compact layout."""
        return self.jet * self.max_length + self.slot

    def to_compact(self, values: Tensor) -> Tensor:
        """(N, ...) -> (B, Lc, ...): each jet's constituents first, zeros after."""
        out = values.new_zeros((self.batch_size * self.max_length, *values.shape[1:]))
        out = out.index_copy(0, self.compact_index(), values)
        return out.reshape(self.batch_size, self.max_length, *values.shape[1:])

    def from_compact(self, values: Tensor) -> Tensor:
        """(B, Lc, ...) -> (N, ...)."""
        flat = values.reshape(self.batch_size * self.max_length, *values.shape[2:])
        return flat.index_select(0, self.compact_index())

    def offsets(self) -> Tensor:
        """(B + 1,) start of each jet in the packed order (for variable-length kernels)."""
        return torch.nn.functional.pad(self.lengths.cumsum(0), (1, 0))

    def pairs(self, ordered: bool = True) -> tuple[Tensor, Tensor]:
        """Packed indices ``(first, second)`` (P,) of the pairs of distinct constituents of
        the same jet: all ordered pairs (i != j), or each unordered pair once (i < j)."""
        lc = self.max_length
        slots = torch.arange(lc, device=self.index.device)
        wanted = slots[:, None] != slots[None, :] if ordered else slots[:, None] < slots[None, :]
        first_slot, second_slot = wanted.nonzero(as_tuple=True)
        # which of those slot pairs exist in each jet: both slots below the jet's length
        exists = torch.maximum(first_slot, second_slot)[None, :] < self.lengths[:, None]
        jet, pair = exists.nonzero(as_tuple=True)
        start = self.offsets()[:-1][jet]
        return start + first_slot[pair], start + second_slot[pair]


__all__ = ["Packing", "packing_enabled"]
