"""``salt.models.Transformer``: the encoder as salt-ml configs write it, built on ours.

salt-ml's GN-family configs describe the encoder with ``num_layers``, ``embed_dim``, ``out_dim``,
``attn_type``, ``norm``, ``dense_kwargs`` and ``attn_kwargs``. This class takes exactly those
arguments and builds a :class:`~salt.models.transformer.TransformerEncoder` from them, adding
the two things our encoder does not have itself: learnable register tokens and gated
feed-forward blocks (the latter through :class:`~salt.models.dense.Dense`'s ``gated``).
Options without an equivalent stop with a one-line error that says what to write instead.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from salt.models.attention import ScaledDotProductAttention
from salt.models.edge_updates import EdgeTransformerEncoder
from salt.models.transformer import TransformerEncoder

log = logging.getLogger(__name__)

# salt-ml's attention kernels; ours pads and lets torch's fused scaled-dot-product attention pick
# the kernel (flash / memory-efficient / math) for the device, which computes the same function.
ATTENTION_TYPES = ("torch-math", "torch-flash", "torch-meff", "flash-varlen")
NORMS = ("LayerNorm", "RMSNorm")


def _unsupported(option: str, value: Any, instead: str) -> ValueError:
    return ValueError(f"encoder {option}={value!r} has no equivalent in salt; {instead}")


def _mha_config(attn_kwargs: dict[str, Any], attn_type: str) -> dict[str, Any]:
    """Our ``mha_config`` from salt-ml's ``attn_kwargs`` (num_heads defaults to 1 there)."""
    kwargs = dict(attn_kwargs)
    kind = kwargs.pop("attn_type", attn_type)
    if kind not in ATTENTION_TYPES:
        raise ValueError(
            f"encoder attn_type={kind!r}: expected one of {', '.join(ATTENTION_TYPES)}"
        )
    kwargs.pop("mup", None)  # follows the encoder's mup
    if not kwargs.pop("bias", True):
        raise _unsupported("attn_kwargs.bias", False, "remove it (projections carry biases)")
    for flag in ("do_qk_norm", "do_v_norm"):
        if kwargs.pop(flag, False):
            raise _unsupported(f"attn_kwargs.{flag}", True, "remove it")
    num_heads = int(kwargs.pop("num_heads", 1))
    dropout = float(kwargs.pop("dropout", 0.0))
    if kwargs:
        raise ValueError(
            f"encoder attn_kwargs: unknown keys {sorted(kwargs)}; expected num_heads, dropout, "
            "attn_type, bias"
        )
    return {"num_heads": num_heads, "attention": ScaledDotProductAttention(dropout)}


def _dense_config(dense_kwargs: dict[str, Any], embed_dim: int) -> dict[str, Any]:
    """Our feed-forward ``dense_config`` from salt-ml's ``dense_kwargs`` (SiLU by default)."""
    kwargs = dict(dense_kwargs)
    kwargs.pop("mup", None)  # follows the encoder's mup
    if not kwargs.pop("bias", True):
        raise _unsupported("dense_kwargs.bias", False, "remove it (the layers carry biases)")
    hidden = kwargs.pop("hidden_dim", None)
    config: dict[str, Any] = {
        "hidden_layers": [int(hidden) if hidden is not None else 2 * embed_dim],
        "activation": str(kwargs.pop("activation", "SiLU")),
        "dropout": float(kwargs.pop("dropout", 0.0)),
        "gated": bool(kwargs.pop("gated", False)),
    }
    if kwargs:
        raise ValueError(
            f"encoder dense_kwargs: unknown keys {sorted(kwargs)}; expected hidden_dim, "
            "activation, dropout, gated, bias"
        )
    return config


class Transformer(nn.Module):
    """Pre-norm transformer encoder with optional register tokens (salt-ml's argument names).

    Registers are ``num_registers`` learned vectors appended to every jet's sequence: each
    constituent can attend to them, so attention always has somewhere to go (also in jets with
    one or no constituent), and they carry jet-wide state between layers. They take part in
    every attention layer; they come out after the constituents, so pooling reads them too (the
    constituent tasks never see them), unless ``drop_registers`` removes them from the output.

    Args:
        num_layers: number of encoder layers.
        embed_dim: width of the embeddings (the init nets' ``output_size``).
        out_dim: width of a final linear projection; none keeps ``embed_dim``.
        norm: ``LayerNorm`` (without a learned scale and shift, as salt-ml's) or ``RMSNorm``
            (before each sub-block and on the output).
        attn_type: salt-ml's attention kernel (``torch-math``, ``torch-flash``, ``torch-meff``,
            ``flash-varlen``); all run torch's fused scaled-dot-product attention over the
            padded sequence, which picks the fastest kernel for the device.
        do_final_norm: normalise the output (our encoder always does; ``false`` is refused).
        num_registers: number of register tokens (0 for none).
        drop_registers: remove the registers from the output (pooling does not see them).
        edge_embed_dim: width of the pair embeddings; above 0 every layer reads them (and with
            ``update_edges`` updates them), see :mod:`salt.models.edge_updates`; they come from
            ``model.model.edge_features`` with ``num_heads: edge_embed_dim``.
        update_edges: add each layer's attention scores to the pair embeddings.
        mup: build in the maximal update parametrisation (our ``muP``).
        dense_kwargs: feed-forward settings: ``hidden_dim`` (default ``2 * embed_dim``),
            ``activation`` (default SiLU), ``dropout``, ``gated`` (a gated linear unit).
        attn_kwargs: attention settings: ``num_heads`` (default 1), ``dropout``, ``attn_type``.
        ls_init, drop_path, norm_type, num_dense: salt-ml options accepted at their defaults.
    """

    def __init__(
        self,
        num_layers: int,
        embed_dim: int,
        out_dim: int | None = None,
        norm: str = "LayerNorm",
        attn_type: str = "torch-math",
        do_final_norm: bool = True,
        num_registers: int = 1,
        drop_registers: bool = False,
        edge_embed_dim: int = 0,
        update_edges: bool = False,
        mup: bool = False,
        dense_kwargs: dict[str, Any] | None = None,
        attn_kwargs: dict[str, Any] | None = None,
        ls_init: float | None = None,
        drop_path: float = 0.0,
        norm_type: str = "pre",
        num_dense: int = 1,
    ) -> None:
        """Check the salt-ml options and build the encoder and the registers."""
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"encoder norm={norm!r}: expected one of {', '.join(NORMS)}")
        if not do_final_norm:
            raise _unsupported("do_final_norm", False, "remove it (the output is normalised)")
        if mup and edge_embed_dim > 0:
            raise _unsupported("mup", True, "remove it, or edge_embed_dim (not combined in salt)")
        if update_edges and edge_embed_dim <= 0:
            raise ValueError(
                "encoder update_edges=True needs edge_embed_dim > 0 (the pair embedding width)"
            )
        if ls_init is not None:
            raise _unsupported("ls_init", ls_init, "remove it (no LayerScale)")
        if drop_path:
            raise _unsupported("drop_path", drop_path, "remove it (no stochastic depth)")
        if norm_type != "pre":
            raise _unsupported("norm_type", norm_type, "remove it (layers are pre-norm)")
        if num_dense != 1:
            raise _unsupported("num_dense", num_dense, "remove it (one feed-forward per layer)")
        if num_registers < 0:
            raise ValueError(f"encoder num_registers={num_registers}: expected an int >= 0")
        self.embed_dim = embed_dim
        self.num_registers = num_registers
        self.drop_registers = drop_registers
        accepted = inspect.signature(TransformerEncoder).parameters
        # registers and affine-free norms are the encoder's own where it has them (then the
        # registers reach pooling, as in salt-ml); otherwise this class adds the registers
        self.native_registers = "num_registers" in accepted or edge_embed_dim > 0
        optional: dict[str, Any] = {}
        if self.native_registers:
            optional["num_registers"] = num_registers
        if "norm_affine" in accepted:
            optional["norm_affine"] = norm != "LayerNorm"  # salt-ml's LayerNorm has no affine
        self.encoder: nn.Module
        if edge_embed_dim > 0:
            mha = _mha_config(attn_kwargs or {}, attn_type)
            self.encoder = EdgeTransformerEncoder(
                embed_dim,
                num_layers,
                edge_embed_dim,
                num_heads=int(mha["num_heads"]),
                dense_config=_dense_config(dense_kwargs or {}, embed_dim),  # type: ignore[arg-type]
                out_dim=out_dim,
                norm_layer=norm,
                norm_affine=norm != "LayerNorm",
                dropout=float(mha["attention"].dropout),
                update_edges=update_edges,
                num_registers=num_registers,
            )
        else:
            self.encoder = TransformerEncoder(
                embed_dim=embed_dim,
                num_layers=num_layers,
                mha_config=_mha_config(attn_kwargs or {}, attn_type),  # type: ignore[arg-type]
                dense_config=_dense_config(dense_kwargs or {}, embed_dim),  # type: ignore[arg-type]
                out_dim=out_dim,
                norm_layer=norm,
                muP=mup,
                **optional,
            )
        self.registers: nn.Parameter | None = None
        if num_registers and not self.native_registers:
            # small values: registers start close to "empty" and learn what to hold
            self.registers = nn.Parameter(1e-4 * torch.randn(num_registers, embed_dim))
        self.output_size: int = embed_dim if out_dim is None else out_dim

    def forward(
        self, x: Tensor, pad_mask: Tensor | None = None, attn_bias: Tensor | None = None
    ) -> Tensor:
        """Encode x (B, L, embed_dim) to (B, L [+ num_registers], output_size).

        The registers come out after the constituents (for pooling) when the encoder has its
        own and ``drop_registers`` is off; otherwise the output has the input's length.
        """
        length = x.shape[1]
        if self.registers is None:
            out = self.encoder(x, pad_mask=pad_mask, attn_bias=attn_bias)
            return out[:, :length] if self.drop_registers else out
        batch = x.shape[0]
        registers = self.registers.to(x.dtype).unsqueeze(0).expand(batch, -1, -1)
        x = torch.cat([x, registers], dim=1)
        if pad_mask is not None:
            real = torch.zeros(batch, self.num_registers, dtype=torch.bool, device=x.device)
            pad_mask = torch.cat([pad_mask, real], dim=1)
        if attn_bias is not None:  # no pair bias to or from a register
            attn_bias = F.pad(attn_bias, (0, self.num_registers, 0, self.num_registers))
        return self.encoder(x, pad_mask=pad_mask, attn_bias=attn_bias)[:, :length]


class TransformerV2(Transformer):
    """salt-ml's earlier name of :class:`Transformer`; the same encoder."""


__all__ = ["ATTENTION_TYPES", "Transformer", "TransformerV2"]
