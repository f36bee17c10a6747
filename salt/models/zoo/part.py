"""Particle Transformer (ParT; Qu, Li and Qian, arXiv 2202.03772) as a salt backbone.

Particles are embedded by an MLP; every pair of particles gets four physics features
(ln ΔR, ln kT, ln z, ln m) that a pointwise network turns into one additive bias per attention
head, so the attention sees the jet's geometry directly. Particle attention blocks (NormFormer
style) are followed by class-attention blocks in which a learned class token gathers the jet
representation.

The helpers at the top (variable lookup, jet context) are shared by the other zoo backbones.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor, nn

from salt.models.attention import MultiheadAttention, ScaledDotProductAttention
from salt.models.contracts import BackboneSizes
from salt.models.edges import EPS, pair_features
from salt.models.zoo.embeddings import MaskedBatchNorm
from salt.models.zoo.inputs import check_variables
from salt.utils.modules import count_parameters

log = logging.getLogger(__name__)

PARAMETERS = "PARAMETERS"


def variable_column(
    variables: dict[str, list[str]], input_name: str, name: str, owner: str, argument: str
) -> int:
    """Column of variable ``name`` in the (B, L, F) inputs of ``input_name``."""
    names = variables[input_name]
    if name not in names:
        raise ValueError(
            f"{owner}.{argument}: variable '{name}' is not in data.variables[{input_name}] "
            f"({names})"
        )
    return names.index(name)


def context_groups(
    variables: dict[str, list[str]], global_object: str, use_jet: bool = True
) -> tuple[list[str], int]:
    """The jet-level input groups (jet variables, PARAMETERS) a backbone conditions on.

    Decided once at construction, so ``forward`` never branches on what a batch contains.
    """
    groups = [global_object] if use_jet and variables.get(global_object) else []
    if variables.get(PARAMETERS):
        groups.append(PARAMETERS)
    return groups, sum(len(variables[g]) for g in groups)


def part_pair_features(
    pt: Tensor, eta: Tensor, phi: Tensor, energy: Tensor | None = None, eps: float = EPS
) -> Tensor:
    """ParT's interaction features (B, L, L, 4): ln ΔR, ln kT, ln z and ln m of each pair.

    ln m = ½ ln m², the paper's ln m² up to a factor the batch norm absorbs. Without an energy
    the particles are taken as massless (E = pT cosh η), for which m² = 2 pT_i pT_j (cosh Δη -
    cos Δφ) exactly; :func:`salt.models.edges.pair_features` evaluates that without cancellation.
    ΔR uses the pseudorapidity η, the coordinate salt's inputs carry.
    """
    features = pair_features(pt, eta, phi, ["dR", "kt", "z", "mass"], eps=eps)
    if energy is None:
        return features
    # exp instead of sinh: the TorchScript ONNX exporter has no sinh
    sinh_eta = (torch.exp(eta) - torch.exp(-eta)) / 2
    px, py, pz = pt * torch.cos(phi), pt * torch.sin(phi), pt * sinh_eta

    def pair_sum(v: Tensor) -> Tensor:
        return v.unsqueeze(-1) + v.unsqueeze(-2)

    m2 = pair_sum(energy) ** 2 - pair_sum(px) ** 2 - pair_sum(py) ** 2 - pair_sum(pz) ** 2
    ln_m = 0.5 * torch.log(m2.clamp_min(0.0) + eps)
    return torch.cat([features[..., :3], ln_m.unsqueeze(-1)], dim=-1)


class PairEmbedding(nn.Module):
    """Pointwise network (the paper's 1x1 convolutions) from pair features to one bias per head."""

    def __init__(self, num_features: int, hidden: list[int], num_heads: int) -> None:
        """Build input batch norm, then Linear -> batch norm -> GELU per hidden width."""
        super().__init__()
        self.input_norm = MaskedBatchNorm(num_features)
        sizes = [num_features, *hidden]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(sizes))
        self.norms = nn.ModuleList(MaskedBatchNorm(size) for size in hidden)
        self.out = nn.Linear(sizes[-1], num_heads)
        self.act = nn.GELU()

    def forward(self, features: Tensor, valid: Tensor) -> Tensor:
        """Map features (B, L, L, F) of valid pairs (B, L, L) to a bias (B, H, L, L), else 0."""
        padded = ~valid
        features = features.masked_fill(padded.unsqueeze(-1), 0.0)
        x = self.input_norm(features, padded)
        for linear, norm in zip(self.linears, self.norms):
            x = self.act(norm(linear(x), padded))
        bias = self.out(x).permute(0, 3, 1, 2)
        return bias.masked_fill(~valid.unsqueeze(1), 0.0)


class ParticleAttentionBlock(nn.Module):
    """Pre-norm attention + MLP block with ParT's NormFormer extras (Shleifer et al. 2110.09456).

    The extras steady the training of deep stacks: a norm after attention (``scale_attn``) and
    inside the MLP (``scale_fc``), a learned scale per head (``scale_heads``) and a learned scale
    of the residual stream (``scale_resids``). Used as a particle block (self-attention with the
    pair bias) and as a class-attention block (a class token attending to [cls; particles]).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        ffn_ratio: int = 4,
        dropout: float = 0.1,
        attn_dropout: float = 0.1,
        activation_dropout: float = 0.1,
        scale_attn: bool = True,
        scale_fc: bool = True,
        scale_heads: bool = True,
        scale_resids: bool = True,
    ) -> None:
        """Build the block; the arguments are those of :class:`ParticleTransformer`."""
        super().__init__()
        hidden = ffn_ratio * embed_dim
        self.num_heads = num_heads
        self.attn_norm = nn.LayerNorm(embed_dim)
        # heads are merged here, not in the attention, so that each can be scaled first
        self.attn = MultiheadAttention(
            embed_dim, num_heads, attention=ScaledDotProductAttention(attn_dropout), out_proj=False
        )
        self.head_scale = nn.Parameter(torch.ones(num_heads)) if scale_heads else None
        self.attn_out = nn.Linear(embed_dim, embed_dim)
        self.post_attn_norm = nn.LayerNorm(embed_dim) if scale_attn else nn.Identity()
        self.ffn_norm = nn.LayerNorm(embed_dim)
        self.fc1 = nn.Linear(embed_dim, hidden)
        self.act = nn.GELU()
        self.act_drop = nn.Dropout(activation_dropout)
        self.fc_norm = nn.LayerNorm(hidden) if scale_fc else nn.Identity()
        self.fc2 = nn.Linear(hidden, embed_dim)
        self.resid_scale = nn.Parameter(torch.ones(embed_dim)) if scale_resids else None
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        pad_mask: Tensor | None = None,
        attn_bias: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
    ) -> Tensor:
        """Update x (B, L, D).

        Self-attention when ``context`` is None (``attn_bias`` (B, H, L, L) added to the
        logits); otherwise class attention: x (B, 1, D) is the class token and attends to
        [x; context] with ``context_mask`` marking padded context entries.
        """
        if context is None:
            h = self.attn_norm(x)
            h = self.attn(h, pad_mask=pad_mask, attn_bias=attn_bias)
        else:
            seq = self.attn_norm(torch.cat([x, context], dim=1))
            own = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
            if context_mask is None:
                context_mask = torch.zeros(context.shape[:2], dtype=torch.bool, device=x.device)
            kv_mask = torch.cat([own, context_mask], dim=1)
            h = self.attn(seq[:, : x.shape[1]], kv=seq, kv_pad_mask=kv_mask)
        if self.head_scale is not None:
            heads = h.unflatten(-1, (self.num_heads, -1)) * self.head_scale.unsqueeze(-1)
            h = heads.flatten(-2)
        x = x + self.drop(self.post_attn_norm(self.attn_out(h)))

        h = self.act_drop(self.act(self.fc1(self.ffn_norm(x))))
        h = self.drop(self.fc2(self.fc_norm(h)))
        residual = x if self.resid_scale is None else x * self.resid_scale
        return residual + h


class ParticleTransformer(nn.Module):
    """ParT: particle attention with pairwise physics bias, then class attention.

    Defaults are the paper's: embed 128, 8 heads, 8 particle and 2 class-attention blocks,
    particle embedding MLP [128, 512, 128], pair embedding [64, 64, 64], MLP expansion 4, dropout
    0.1 in particle blocks and none in class blocks. Differences to the paper: salt normalises the
    particle inputs already, so there is no input batch norm on them; the jet variables (and
    PARAMETERS) can be appended to every particle's inputs (``attach_global``), as GN2 does.
    """

    @classmethod
    def config_sizes(cls, args: Mapping[str, Any]) -> BackboneSizes:
        """The jet (``out_dim``) and the particle embeddings (``embed_dim``)."""
        return BackboneSizes(int(args["out_dim"]), int(args["embed_dim"]))

    def __init__(
        self,
        variables: dict[str, list[str]] | None = None,
        global_object: str = "jets",
        input_name: str = "tracks",
        embed_dim: int = 128,
        num_heads: int = 8,
        num_layers: int = 8,
        num_cls_layers: int = 2,
        embed_hidden: list[int] | None = None,
        pair_hidden: list[int] | None = None,
        ffn_ratio: int = 4,
        dropout: float = 0.1,
        attn_dropout: float = 0.1,
        activation_dropout: float = 0.1,
        scale_attn: bool = True,
        scale_fc: bool = True,
        scale_heads: bool = True,
        scale_resids: bool = True,
        use_pair_bias: bool = True,
        attach_global: bool = True,
        pt_variable: str = "pt",
        eta_variable: str = "eta",
        phi_variable: str = "phi",
        energy_variable: str | None = "energy",
        out_dim: int = 128,
    ) -> None:
        """Build the network.

        Args:
            variables: ``{input type: [variables]}``; filled in by salt from ``data.variables``.
            global_object: name of the jet-level input type; filled in by salt.
            input_name: the constituent type (e.g. tracks) the particles come from.
            embed_dim: width of the particle embeddings and the class token.
            num_heads: attention heads, also the number of pair-bias channels.
            num_layers: particle attention blocks.
            num_cls_layers: class-attention blocks.
            embed_hidden: hidden widths of the particle embedding MLP (which ends at
                ``embed_dim``); default ``[embed_dim, 4 * embed_dim]`` as in the paper.
            pair_hidden: widths of the pair embedding network; default ``[64, 64, 64]``.
            ffn_ratio: MLP expansion in the attention blocks.
            dropout, attn_dropout, activation_dropout: dropout in the particle blocks (on block
                outputs, attention weights and MLP activations); class blocks use none.
            scale_attn, scale_fc, scale_heads, scale_resids: NormFormer extras, see
                :class:`ParticleAttentionBlock`.
            use_pair_bias: add the pair-feature bias to the particle attention logits.
            attach_global: append the jet variables to every particle's inputs; PARAMETERS are
                appended whenever present.
            pt_variable, eta_variable, phi_variable: names of the constituent kinematics used
                (unnormalised) for the pair features.
            energy_variable: name of the constituent energy; if it is not among the inputs the
                particles are taken as massless, E = pT cosh η.
            out_dim: size of the jet representation; a Linear projects the class token to it
                when it differs from ``embed_dim`` (salt reads it to size the task heads).
        """
        super().__init__()
        owner = "ParticleTransformer"
        variables = check_variables(variables, input_name, owner)
        for argument, value in (
            ("embed_dim", embed_dim),
            ("num_heads", num_heads),
            ("num_layers", num_layers),
            ("num_cls_layers", num_cls_layers),  # the class token is the only readout
            ("ffn_ratio", ffn_ratio),
            ("out_dim", out_dim),
        ):
            if value <= 0:
                raise ValueError(f"{owner}.{argument}: expected a positive int, got {value}")
        if embed_dim % num_heads:
            raise ValueError(
                f"{owner}.embed_dim: expected a multiple of num_heads={num_heads}, got {embed_dim}"
            )
        self.input_name = input_name
        self.embed_dim = embed_dim
        self.num_layers, self.num_cls_layers = num_layers, num_cls_layers
        self.output_size: int = out_dim
        self.constituent_size: int | None = embed_dim
        self.context_names, n_context = context_groups(variables, global_object, attach_global)

        in_size = len(variables[input_name]) + n_context
        hidden = [embed_dim, 4 * embed_dim] if embed_hidden is None else list(embed_hidden)
        layers: list[nn.Module] = []
        for size in [*hidden, embed_dim]:
            layers += [nn.LayerNorm(in_size), nn.Linear(in_size, size), nn.GELU()]
            in_size = size
        self.embed = nn.Sequential(*layers)

        self.pair_embed: PairEmbedding | None = None
        self.has_energy = False
        self.kinematic_columns: list[int] = []
        if use_pair_bias:

            def col(name: str, argument: str) -> int:
                return variable_column(variables, input_name, name, owner, argument)

            columns = [
                col(pt_variable, "pt_variable"),
                col(eta_variable, "eta_variable"),
                col(phi_variable, "phi_variable"),
            ]
            self.has_energy = (
                energy_variable is not None and energy_variable in variables[input_name]
            )
            if self.has_energy:
                assert energy_variable is not None
                columns.append(col(energy_variable, "energy_variable"))
            else:
                log.info(
                    "%s: no energy variable '%s' in %s, pair masses assume massless particles",
                    owner,
                    energy_variable,
                    input_name,
                )
            self.kinematic_columns = columns
            self.pair_embed = PairEmbedding(
                4, [64, 64, 64] if pair_hidden is None else list(pair_hidden), num_heads
            )

        def make_block(drop: float, attn_drop: float, act_drop: float) -> nn.Module:
            return ParticleAttentionBlock(
                embed_dim,
                num_heads,
                ffn_ratio,
                drop,
                attn_drop,
                act_drop,
                scale_attn,
                scale_fc,
                scale_heads,
                scale_resids,
            )

        drops = (dropout, attn_dropout, activation_dropout)
        self.blocks = nn.ModuleList(make_block(*drops) for _ in range(num_layers))
        self.cls_blocks = nn.ModuleList(make_block(0.0, 0.0, 0.0) for _ in range(num_cls_layers))
        self.cls_token = nn.Parameter(torch.empty(1, 1, embed_dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.norm = nn.LayerNorm(embed_dim)
        self.out: nn.Module = (
            nn.Identity() if out_dim == embed_dim else nn.Linear(embed_dim, out_dim)
        )

    def _pair_bias(self, raw: Tensor, pad_mask: Tensor) -> Tensor:
        assert self.pair_embed is not None
        kin = raw[..., self.kinematic_columns]
        energy = kin[..., 3] if self.has_energy else None
        features = part_pair_features(kin[..., 0].clamp_min(0.0), kin[..., 1], kin[..., 2], energy)
        valid = ~(pad_mask.unsqueeze(-1) | pad_mask.unsqueeze(-2))
        return self.pair_embed(features, valid)

    def forward(
        self,
        inputs: dict[str, Tensor],
        pad_masks: dict[str, Tensor],
        raw_inputs: dict[str, Tensor],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the jet representation (B, out_dim) and the particles (B, L, embed_dim)."""
        mask = pad_masks[self.input_name]
        padded = mask.unsqueeze(-1)
        x = inputs[self.input_name].masked_fill(padded, 0.0)
        if self.context_names:
            context = torch.cat([inputs[name] for name in self.context_names], dim=-1)
            x = torch.cat([x, context.unsqueeze(1).expand(-1, x.shape[1], -1)], dim=-1)
        x = self.embed(x).masked_fill(padded, 0.0)

        bias = None
        if self.pair_embed is not None:
            raw = raw_inputs[self.input_name].masked_fill(padded, 0.0)
            bias = self._pair_bias(raw, mask)
        for block in self.blocks:
            x = block(x, pad_mask=mask, attn_bias=bias)
        x = x.masked_fill(padded, 0.0)

        cls = self.cls_token.expand(x.shape[0], -1, -1)
        for block in self.cls_blocks:
            cls = block(cls, context=x, context_mask=mask)
        pooled = self.out(self.norm(cls.squeeze(1)))
        return pooled, {self.input_name: self.norm(x).masked_fill(padded, 0.0)}


__all__ = [
    "PairEmbedding",
    "ParticleAttentionBlock",
    "ParticleTransformer",
    "check_variables",
    "context_groups",
    "count_parameters",
    "part_pair_features",
    "variable_column",
]
