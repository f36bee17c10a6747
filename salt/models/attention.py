"""Multi-head attention with a pluggable scoring strategy.

The projections and head bookkeeping live in :class:`MultiheadAttention`; how queries score keys
lives in an :class:`AttentionBase` subclass, so a config can swap scaled dot-product attention for
another mechanism (GATv2, ...) without touching the encoder.
"""

from __future__ import annotations

import abc

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from salt.models.packing import Packing


def _check_dropout(dropout: float, argument: str) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{argument}: expected a probability in [0, 1), got {dropout}")


class AttentionBase(nn.Module, abc.ABC):
    """How queries attend to keys: the part of attention that differs between mechanisms.

    Subclasses map ``q`` (B, H, Lq, D), ``k`` and ``v`` (B, H, Lk, D), an optional key padding
    mask ``kv_mask`` (B, Lk, True = padded) and an optional additive score bias ``attn_bias``
    (broadcastable to (B, H, Lq, Lk), e.g. from edge features) to (B, H, Lq, D). Padded keys must
    get no weight whatever the bias says, and a query with no valid key must give zeros (never
    NaN), so that padding never leaks into results.
    """

    def __init__(self, dropout: float = 0.0) -> None:
        """Store the attention-weight dropout probability, used only in training mode."""
        super().__init__()
        _check_dropout(dropout, "dropout")
        self.dropout = dropout

    def configure_heads(self, num_heads: int, head_dim: int) -> None:
        """Called by :class:`MultiheadAttention` with its head layout.

        Strategies without per-head parameters ignore it; those with them (GATv2) size their
        parameters from it, or check that the sizes they were built with agree.
        """

    def enable_muP(self) -> None:
        """Switch to the muP scaling of the scores (Tensor Programs V): 1/head_dim, not its root.

        Called by a :class:`MultiheadAttention` built with ``muP=True``. Under muP, queries and
        keys become correlated during training, so their dot product grows like ``head_dim``
        rather than its square root; only a dot-product strategy knows how to rescale it.
        """
        raise ValueError(
            f"attention: {type(self).__name__} does not support muP; use "
            "salt.models.ScaledDotProductAttention (scores scaled by 1/head_dim)"
        )

    @abc.abstractmethod
    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        kv_mask: Tensor | None = None,
        attn_bias: Tensor | None = None,
    ) -> Tensor:
        """Return the attended values, (B, H, Lq, D)."""


def attention_mask(
    kv_mask: Tensor | None, attn_bias: Tensor | None, dtype: torch.dtype
) -> Tensor | None:
    """Merge key padding and score bias into one mask for a (B, H, Lq, Lk) score tensor.

    Returns None (attend everywhere), a bool mask (True = may attend) or a float mask (added to
    the scores, -inf on padded keys). A row with every key padded would softmax to NaN (also in
    the backward pass), so such rows may attend to everything instead; callers zero them after.
    That keeps the graph free of data-dependent branches, so it exports to ONNX.
    """
    if kv_mask is None:
        return None if attn_bias is None else attn_bias.to(dtype)
    no_valid_key = kv_mask.all(dim=-1, keepdim=True)
    may_attend = (~kv_mask | no_valid_key)[:, None, None, :]
    if attn_bias is None:
        return may_attend
    return attn_bias.to(dtype).masked_fill(~may_attend, float("-inf"))


class ScaledDotProductAttention(AttentionBase):
    """softmax(q k^T / sqrt(D)) v via torch's fused kernel, which is fast and exports to ONNX.

    With ``muP`` the scores are scaled by 1/D instead (the muP attention of Tensor Programs V),
    so that attention logits stay of the same size when the width (and D) grows.

    Args:
        dropout: attention-weight dropout probability, used only in training mode.
        varlen: attend over packed variable-length sequences (torch's jagged nested tensors,
            which reach the flash / memory-efficient kernels without any padding) when the
            encoder runs packed. ``None`` (default) uses them on CUDA only: on the CPU they
            loop over jets in Python, and a compact padded layout is much faster there.
    """

    def __init__(self, dropout: float = 0.0, varlen: bool | None = None) -> None:
        """Store the dropout probability and the variable-length choice."""
        super().__init__(dropout)
        self.muP = False  # set by a MultiheadAttention built with muP=True
        self.varlen = varlen

    def enable_muP(self) -> None:
        self.muP = True

    def use_varlen(self, device: torch.device) -> bool:
        """Whether packed attention on ``device`` goes through jagged nested tensors."""
        return device.type == "cuda" if self.varlen is None else self.varlen

    def forward_varlen(self, q: Tensor, k: Tensor, v: Tensor, packing: Packing) -> Tensor:
        """Attend within each jet of packed (N, H, D) tensors; returns (N, H, D)."""
        offsets = packing.offsets()

        def jagged(x: Tensor) -> Tensor:  # (N, H, D) -> (B, H, ragged, D)
            return torch.nested.nested_tensor_from_jagged(x.contiguous(), offsets).transpose(1, 2)

        dropout_p = self.dropout if self.training else 0.0
        scale = 1.0 / q.shape[-1] if self.muP else None
        out = F.scaled_dot_product_attention(
            jagged(q), jagged(k), jagged(v), dropout_p=dropout_p, scale=scale
        )
        return out.transpose(1, 2).values()

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        kv_mask: Tensor | None = None,
        attn_bias: Tensor | None = None,
    ) -> Tensor:
        """Attend over the valid keys; queries whose keys are all padded give zeros."""
        dropout_p = self.dropout if self.training else 0.0
        mask = attention_mask(kv_mask, attn_bias, q.dtype)
        if self.muP:  # 1/D rather than the kernel's default 1/sqrt(D)
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=1.0 / q.shape[-1]
            )
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        if kv_mask is None:
            return out
        return out.masked_fill(kv_mask.all(dim=-1)[:, None, None, None], 0.0)


class MultiheadAttention(nn.Module):
    """Project to heads, attend with a configurable strategy, merge heads and project back.

    Works as self-attention (``kv`` omitted) or cross-attention (``kv`` from another sequence of
    width ``kv_size``). Padded query rows, and every row of a sequence without valid keys, come out
    exactly zero so that padding cannot leak into later layers or pooling.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int = 8,
        head_dim: int | None = None,
        attention: AttentionBase | None = None,
        out_proj: bool = True,
        dropout: float = 0.0,
        kv_size: int | None = None,
        muP: bool = False,
    ) -> None:
        """Build the projections.

        Args:
            embed_dim: Width of the queries, and of the output when ``out_proj`` is set.
            num_heads: Number of attention heads.
            head_dim: Width of each head; defaults to ``embed_dim // num_heads``.
            attention: Scoring strategy; defaults to :class:`ScaledDotProductAttention`.
            out_proj: Whether to map the merged heads back to ``embed_dim`` with a Linear layer;
                without it the output width is ``num_heads * head_dim``.
            dropout: Dropout on the output (attention-weight dropout belongs to the strategy).
            kv_size: Width of the key/value inputs for cross-attention; defaults to ``embed_dim``.
            muP: Use the maximal update parametrisation (Tensor Programs V): scores scaled by
                1/head_dim, and :meth:`reset_mup_parameters` initialises the projections once
                ``mup.set_base_shapes`` has been called on the model.
        """
        super().__init__()
        if embed_dim <= 0:
            raise ValueError(f"embed_dim: expected a positive int, got {embed_dim}")
        if num_heads <= 0:
            raise ValueError(f"num_heads: expected a positive int, got {num_heads}")
        if head_dim is None:
            if embed_dim % num_heads:
                raise ValueError(
                    f"embed_dim: expected a multiple of num_heads={num_heads} when head_dim is "
                    f"not given, got {embed_dim}"
                )
            head_dim = embed_dim // num_heads
        if head_dim <= 0:
            raise ValueError(f"head_dim: expected a positive int, got {head_dim}")
        kv_size = embed_dim if kv_size is None else kv_size
        if kv_size <= 0:
            raise ValueError(f"kv_size: expected a positive int, got {kv_size}")
        _check_dropout(dropout, "dropout")

        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.kv_size = kv_size
        inner_dim = num_heads * head_dim
        self.q_proj = nn.Linear(embed_dim, inner_dim)
        self.k_proj = nn.Linear(kv_size, inner_dim)
        self.v_proj = nn.Linear(kv_size, inner_dim)
        if attention is not None and not isinstance(attention, AttentionBase):
            raise ValueError(
                f"attention: expected an AttentionBase instance, got {type(attention)}"
            )
        self.attention = ScaledDotProductAttention() if attention is None else attention
        # Strategies with per-head parameters size them here, or reject a mismatched layout.
        self.attention.configure_heads(num_heads, head_dim)
        self.muP = muP
        if muP:
            self.attention.enable_muP()
        self.out_proj: nn.Module = nn.Linear(inner_dim, embed_dim) if out_proj else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.output_size: int = embed_dim if out_proj else inner_dim

    def reset_mup_parameters(self) -> None:
        """muP initialisation of the projections (needs ``mup.set_base_shapes`` first)."""
        from salt.models.dense import mup_init_linear

        for layer in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            if isinstance(layer, nn.Linear):
                mup_init_linear(layer)

    def _split_heads(self, x: Tensor) -> Tensor:
        # (B, L, H * D) -> (B, H, L, D)
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def forward(
        self,
        x: Tensor,
        kv: Tensor | None = None,
        pad_mask: Tensor | None = None,
        kv_pad_mask: Tensor | None = None,
        attn_bias: Tensor | None = None,
        packing: Packing | None = None,
    ) -> Tensor:
        """Attend from ``x`` (B, Lq, embed_dim) to ``kv`` (B, Lk, kv_size), or to itself.

        In self-attention ``kv_pad_mask`` defaults to ``pad_mask``. ``attn_bias`` is added to the
        attention scores, broadcastable to (B, num_heads, Lq, Lk). Returns (B, Lq, output_size).
        With a ``packing``, x holds packed constituents instead (see :meth:`forward_packed`).
        """
        if packing is not None:
            return self.forward_packed(x, packing)
        if kv is None:
            kv = x
            if kv_pad_mask is None:
                kv_pad_mask = pad_mask
        if kv_pad_mask is not None:
            # Zero padded keys/values up front: arbitrary (even inf) values there cannot leak.
            kv = kv.masked_fill(kv_pad_mask.unsqueeze(-1), 0.0)

        q = self._split_heads(self.q_proj(x))
        k = self._split_heads(self.k_proj(kv))
        v = self._split_heads(self.v_proj(kv))
        if attn_bias is None:
            # Leave the argument out so strategies written before attn_bias existed still work.
            out = self.attention(q, k, v, kv_pad_mask)
        else:
            out = self.attention(q, k, v, kv_pad_mask, attn_bias)
        # an explicit last size keeps the reshape valid in exported graphs for empty sequences
        batch, length = out.shape[0], out.shape[2]
        merged = out.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        out = self.drop(self.out_proj(merged))

        zero_rows: Tensor | None = pad_mask
        if kv_pad_mask is not None:
            no_valid_key = kv_pad_mask.all(dim=-1, keepdim=True)
            zero_rows = no_valid_key if zero_rows is None else zero_rows | no_valid_key
        if zero_rows is not None:
            out = out.masked_fill(zero_rows.unsqueeze(-1), 0.0)
        return out

    def forward_packed(self, x: Tensor, packing: Packing) -> Tensor:
        """Self-attention of packed constituents x (N, embed_dim) within their jets.

        The same function as :meth:`forward` on the padded batch, restricted to its real
        rows: projections run on the N real constituents only, and the scores on a compact
        layout whose length is the longest jet of the batch (or on jagged tensors, see
        :class:`ScaledDotProductAttention`'s ``varlen``). Returns (N, output_size).
        """
        if self.kv_size != self.embed_dim:
            raise ValueError("forward_packed: self-attention only (kv_size must equal embed_dim)")
        # one matmul for the three projections
        weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        qkv = F.linear(x, weight, bias).unflatten(-1, (3, self.num_heads, self.head_dim))
        q, k, v = qkv.unbind(dim=1)  # (N, H, D) each
        attention = self.attention
        if isinstance(attention, ScaledDotProductAttention) and attention.use_varlen(x.device):
            out = attention.forward_varlen(q, k, v, packing)
        else:

            def compact(t: Tensor) -> Tensor:  # (N, H, D) -> (B, H, Lc, D)
                return packing.to_compact(t).transpose(1, 2)

            kv_mask = packing.compact_mask()
            attended = attention(compact(q), compact(k), compact(v), kv_mask)
            out = packing.from_compact(attended.transpose(1, 2))
        merged = out.reshape(out.shape[0], self.num_heads * self.head_dim)
        return self.drop(self.out_proj(merged))


__all__ = [
    "AttentionBase",
    "MultiheadAttention",
    "ScaledDotProductAttention",
    "attention_mask",
]
