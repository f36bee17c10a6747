"""Pre-norm transformer encoder over padded sets of constituents."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from salt.models.attention import AttentionBase, MultiheadAttention
from salt.models.configs import DenseConfig, MHAConfig
from salt.models.dense import Dense, dense_from_config, make_norm
from salt.models.packing import Packing, packing_enabled


def encoder_norm(name: str, size: int, affine: bool = True) -> nn.Module:
    """A normalisation of width ``size``; without ``affine`` it learns no scale and shift
    (the following linear layer can absorb them, and it saves a little time)."""
    norm = make_norm(name, size)
    if affine:
        return norm
    try:
        return type(norm)(size, elementwise_affine=False)  # type: ignore[call-arg]
    except TypeError as err:
        raise ValueError(f"norm_affine: {name} has no elementwise_affine option ({err})") from err


def build_mha(
    embed_dim: int,
    mha_config: MHAConfig | None,
    argument: str = "mha_config",
    muP: bool = False,
) -> MultiheadAttention:
    """Build one residual attention block's MHA from a config shared by every layer.

    Errors are prefixed with ``argument`` so that they name the config key the user wrote.
    ``muP`` builds the attention in the maximal update parametrisation (scores scaled by
    1/head_dim).
    """
    config: MHAConfig = mha_config or {}
    prototype = config.get("attention")
    if prototype is not None and not isinstance(prototype, AttentionBase):
        raise ValueError(
            f"{argument}.attention: expected an AttentionBase instance, got {type(prototype)}"
        )
    kwargs: MHAConfig = {**config}
    if prototype is not None:
        # A fresh copy per layer: the configured instance is only a prototype, never shared.
        kwargs["attention"] = copy.deepcopy(prototype)
    try:
        mha = MultiheadAttention(embed_dim, **kwargs, muP=muP)
    except ValueError as err:
        raise ValueError(f"{argument}.{err}") from err
    if mha.output_size != embed_dim:
        raise ValueError(
            f"{argument}: with out_proj=False num_heads * head_dim must equal "
            f"embed_dim={embed_dim} for the residual connection, got {mha.output_size}"
        )
    return mha


def build_ffn(
    embed_dim: int,
    dense_config: DenseConfig | None,
    argument: str = "dense_config",
    muP: bool = False,
) -> Dense:
    """Build a residual feed-forward block (embed_dim -> hidden -> embed_dim) from a config.

    ``muP`` marks it as part of a muP network (see :class:`~salt.models.dense.Dense`).
    """
    config: DenseConfig = dense_config or {}
    for key in ("input_size", "output_size"):
        if config.get(key, embed_dim) != embed_dim:
            raise ValueError(
                f"{argument}.{key}: the feed-forward block maps embed_dim back to itself, "
                f"expected {embed_dim} or unset, got {config.get(key)}"
            )
    if config.get("context_size", 0):
        raise ValueError(f"{argument}.context_size: the encoder takes no context, expected 0")
    full: DenseConfig = {
        "hidden_layers": [2 * embed_dim],
        **config,
        "input_size": embed_dim,
        "output_size": embed_dim,
    }
    if muP:
        full["muP"] = True  # type: ignore[typeddict-unknown-key]
    return dense_from_config(full, argument)


class TransformerEncoderLayer(nn.Module):
    """One pre-norm block: ``x + MHA(norm(x))`` then ``x + FFN(norm(x))``.

    Normalising before each sub-block keeps the residual stream unnormalised, which trains stably
    without warm-up tricks for deep stacks.
    """

    def __init__(
        self,
        embed_dim: int,
        mha_config: MHAConfig | None = None,
        dense_config: DenseConfig | None = None,
        norm_layer: str = "LayerNorm",
        dropout: float = 0.0,
        muP: bool = False,
        norm_affine: bool = True,
    ) -> None:
        """Build the block; see :class:`TransformerEncoder` for the arguments."""
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout}")
        self.attn_norm = encoder_norm(norm_layer, embed_dim, norm_affine)
        self.attn = build_mha(embed_dim, mha_config, muP=muP)
        self.ffn_norm = encoder_norm(norm_layer, embed_dim, norm_affine)
        self.ffn = build_ffn(embed_dim, dense_config, muP=muP)
        self.drop = nn.Dropout(dropout)
        self.output_size: int = embed_dim

    def forward(
        self,
        x: Tensor,
        pad_mask: Tensor | None = None,
        attn_bias: Tensor | None = None,
        packing: Packing | None = None,
    ) -> Tensor:
        """Update x (B, L, embed_dim); padded positions are never attended to.

        ``attn_bias`` (B, num_heads, L, L) is added to the attention scores (edge features).
        With a ``packing``, x holds the packed real constituents (N, embed_dim) instead.
        """
        normed = self.attn_norm(x)
        if packing is not None:
            attended = self.attn(normed, packing=packing)
        else:
            attended = self.attn(normed, pad_mask=pad_mask, attn_bias=attn_bias)
        x = x + self.drop(attended)
        return x + self.drop(self.ffn(self.ffn_norm(x)))


class TransformerEncoder(nn.Module):
    """A stack of pre-norm self-attention layers with a final norm and optional projection.

    This is the message-passing core of GN2: every constituent attends to all valid constituents of
    its jet. Padded positions are zeroed on the way in and out, so whatever the padding holds never
    changes the result.
    """

    def __init__(
        self,
        embed_dim: int,
        num_layers: int,
        mha_config: MHAConfig | None = None,
        dense_config: DenseConfig | None = None,
        out_dim: int | None = None,
        norm_layer: str = "LayerNorm",
        dropout: float = 0.0,
        muP: bool = False,
        num_registers: int = 0,
        norm_affine: bool = True,
        packed: bool = True,
    ) -> None:
        """Build the layers.

        Args:
            embed_dim: Width of the embeddings flowing through the encoder.
            num_layers: Number of encoder layers.
            mha_config: Attention settings; its ``attention`` instance is copied for every layer.
            dense_config: Feed-forward settings; sizes are derived from ``embed_dim`` and
                ``hidden_layers`` defaults to ``[2 * embed_dim]``.
            out_dim: Width of an optional final Linear projection.
            norm_layer: ``torch.nn`` class name of the normalisation (e.g. LayerNorm, RMSNorm).
            dropout: Dropout on each sub-block's output before the residual sum.
            muP: Build the encoder in the maximal update parametrisation of Tensor Programs V,
                so hyperparameters tuned at a small ``embed_dim`` transfer to larger ones:
                attention scores scaled by 1/head_dim, ``out_dim`` (required) projected by a
                ``mup.MuReadout``, and muP initialisation by :meth:`reset_mup_parameters` once
                ``mup.set_base_shapes`` has been called (``model.muP_config``). The
                feed-forward hidden widths must grow with ``embed_dim`` (the default
                ``[2 * embed_dim]`` does).
            num_registers: Learned tokens appended to every jet's sequence. They take part in
                attention like constituents and come out after them (the output has
                ``num_registers`` more positions than the input), so pooling can read them;
                they give attention a place to put weight that no constituent deserves.
            norm_affine: Whether the norms learn a scale and shift (salt-ml's GN2 uses norms
                without them).
            packed: Compute on the real constituents only (see :mod:`salt.models.packing`);
                the padded path (used for ONNX export and ``torch.compile``) gives the same
                result on real constituents. Turn off only to compare the two.
        """
        super().__init__()
        if embed_dim <= 0:
            raise ValueError(f"embed_dim: expected a positive int, got {embed_dim}")
        if num_layers <= 0:
            raise ValueError(f"num_layers: expected a positive int, got {num_layers}")
        if out_dim is not None and out_dim <= 0:
            raise ValueError(f"out_dim: expected a positive int or None, got {out_dim}")
        if num_registers < 0:
            raise ValueError(f"num_registers: expected an int >= 0, got {num_registers}")
        if muP and out_dim is None:
            raise ValueError(
                "out_dim: required with muP=True (the encoder's output projection is the muP "
                "readout layer, a mup.MuReadout, which maps the width to a fixed size)"
            )
        self.embed_dim = embed_dim
        self.muP = muP
        self.packed = packed
        self.num_registers = num_registers
        self.registers = (
            nn.Parameter(torch.randn(num_registers, embed_dim) * 1e-2) if num_registers else None
        )
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(
                embed_dim,
                mha_config,
                dense_config,
                norm_layer,
                dropout,
                muP=muP,
                norm_affine=norm_affine,
            )
            for _ in range(num_layers)
        )
        self.norm = encoder_norm(norm_layer, embed_dim, norm_affine)
        self.out_proj: nn.Module
        if out_dim is None:
            self.out_proj = nn.Identity()
        elif muP:
            from mup import MuReadout

            self.out_proj = MuReadout(embed_dim, out_dim)
        else:
            self.out_proj = nn.Linear(embed_dim, out_dim)
        self.output_size: int = embed_dim if out_dim is None else out_dim

    def reset_mup_parameters(self) -> None:
        """muP initialisation of the readout (the layers initialise their own sub-blocks)."""
        from salt.models.dense import mup_init_linear

        if isinstance(self.out_proj, nn.Linear):
            mup_init_linear(self.out_proj)

    def forward(
        self, x: Tensor, pad_mask: Tensor | None = None, attn_bias: Tensor | None = None
    ) -> Tensor:
        """Encode x (B, L, embed_dim) to (B, L + num_registers, output_size).

        Padded positions come out as zeros. ``attn_bias`` (B, num_heads, L, L), e.g. from
        :class:`~salt.models.edges.EdgeFeatures`, is added to the attention scores of every
        layer: the pair relations do not change with depth, while each layer still learns how
        much to trust them through its own queries.
        """
        if x.shape[-1] != self.embed_dim:
            raise ValueError(
                f"x: expected last dimension embed_dim={self.embed_dim}, got {x.shape[-1]}"
            )
        if self.muP and not hasattr(self.out_proj.weight, "infshape"):
            raise ValueError(
                "encoder.muP: the muP readout needs its base shapes; set model.muP_config "
                "(and run setup_muP) so that mup.set_base_shapes is called on the model"
            )
        x, pad_mask, attn_bias = self._append_registers(x, pad_mask, attn_bias)
        if self.packed and pad_mask is not None and attn_bias is None and packing_enabled(x):
            packing = Packing.from_pad_mask(pad_mask)
            if packing.num_real:
                return packing.unpack(self._encode_packed(packing.pack(x), packing))
        if pad_mask is not None:
            x = x.masked_fill(pad_mask.unsqueeze(-1), 0.0)
        for layer in self.layers:
            x = layer(x, pad_mask, attn_bias)
        x = self.out_proj(self.norm(x))
        if pad_mask is not None:
            x = x.masked_fill(pad_mask.unsqueeze(-1), 0.0)
        return x

    def _encode_packed(self, x: Tensor, packing: Packing) -> Tensor:
        for layer in self.layers:
            x = layer(x, packing=packing)
        return self.out_proj(self.norm(x))

    def _append_registers(
        self, x: Tensor, pad_mask: Tensor | None, attn_bias: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Append the register tokens (never padded) after the constituents of every jet."""
        if self.registers is None:
            return x, pad_mask, attn_bias
        batch = x.shape[0]
        x = torch.cat([x, self.registers.to(x.dtype).expand(batch, -1, -1)], dim=1)
        if pad_mask is not None:
            real = pad_mask.new_zeros(batch, self.num_registers)
            pad_mask = torch.cat([pad_mask, real], dim=1)
        if attn_bias is not None:  # registers relate to nothing by edge features
            attn_bias = nn.functional.pad(attn_bias, (0, self.num_registers, 0, self.num_registers))
        return x, pad_mask, attn_bias


__all__ = ["TransformerEncoder", "TransformerEncoderLayer", "build_ffn", "build_mha"]
