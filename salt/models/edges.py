"""Pairwise (edge) features between constituents, turned into a per-head attention bias."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from salt.models.dense import Dense

# The input variables each feature is computed from.
REQUIRED_VARIABLES: dict[str, tuple[str, ...]] = {
    "dR": ("eta", "phi"),
    "kt": ("pt", "eta", "phi"),
    "z": ("pt",),
    "isSelfLoop": (),
    "subjetIndex": ("subjetIndex",),
    "mass": ("pt", "eta", "phi"),
}

# Keeps logs finite on the diagonal (zero distance) and for zero pT; far below physical values.
EPS = 1e-6


def _pair_difference(values: Tensor) -> Tensor:
    # (B, L) -> (B, L, L) with [b, i, j] = values[b, i] - values[b, j]
    return values.unsqueeze(-1) - values.unsqueeze(-2)


def wrap_phi(dphi: Tensor) -> Tensor:
    """Wrap an azimuthal difference into [-pi, pi), so that phi = -3.1 and 3.1 are close."""
    # floor rather than torch.remainder: it exports to every ONNX opset.
    return dphi - 2 * math.pi * torch.floor((dphi + math.pi) / (2 * math.pi))


def pair_features(
    pt: Tensor | None,
    eta: Tensor | None,
    phi: Tensor | None,
    features: Sequence[str],
    subjet: Tensor | None = None,
    eps: float = EPS,
    like: Tensor | None = None,
) -> Tensor:
    """Compute the requested features for every pair (i, j) of constituents.

    With dη = η_i - η_j, dφ = wrap(φ_i - φ_j), ΔR² = dη² + dφ² and min pT = min(pT_i, pT_j):

    - ``dR`` = ½ log(ΔR² + ε), i.e. log ΔR
    - ``kt`` = log(min pT + ε) + ½ log(ΔR² + ε), i.e. log(min pT · ΔR)
    - ``z`` = log(min pT + ε) - log(pT_i + pT_j + ε), i.e. log(min pT / (pT_i + pT_j))
    - ``mass`` = ½ log(m² + ε) with the massless pair mass m² = 2 pT_i pT_j (cosh dη - cos dφ),
      computed as 4 pT_i pT_j (sinh²(dη/2) + sin²(dφ/2)) to avoid cancellation for close pairs
    - ``isSelfLoop`` = 1 for i == j, else 0
    - ``subjetIndex`` = 1 if both share a subjet index, else 0

    Logs of squares keep the gradients finite at zero distance (no sqrt'(0)).

    Args:
        pt, eta, phi: (B, L) kinematics; only those the features need may be None.
        features: Names of the features, in the order of the output's last dimension.
        subjet: (B, L) subjet indices, needed for ``subjetIndex``.
        eps: Added inside the logs.
        like: A (B, L) tensor giving batch size, length, dtype and device when none of the
            others is given (``isSelfLoop`` alone).

    Returns:
        (B, L, L, len(features)).
    """
    given = {"pt": pt, "eta": eta, "phi": phi, "subjetIndex": subjet}
    for feature in features:
        if feature not in REQUIRED_VARIABLES:
            raise ValueError(
                f"features: unknown edge feature {feature!r}, expected one of "
                f"{list(REQUIRED_VARIABLES)}"
            )
        for variable in REQUIRED_VARIABLES[feature]:
            if given[variable] is None:
                raise ValueError(f"pair_features: feature {feature!r} needs {variable!r}")
    reference = next((value for value in (*given.values(), like) if value is not None), None)
    if reference is None:
        raise ValueError("pair_features: give at least one (B, L) tensor to size the output")

    deta = dphi = dr2 = min_pt = None
    if eta is not None and phi is not None:
        deta, dphi = _pair_difference(eta), wrap_phi(_pair_difference(phi))
        dr2 = deta**2 + dphi**2
    if pt is not None:
        min_pt = torch.minimum(pt.unsqueeze(-1), pt.unsqueeze(-2))

    out: list[Tensor] = []
    for feature in features:
        if feature == "dR":
            assert dr2 is not None
            out.append(0.5 * torch.log(dr2 + eps))
        elif feature == "kt":
            assert dr2 is not None and min_pt is not None
            out.append(torch.log(min_pt + eps) + 0.5 * torch.log(dr2 + eps))
        elif feature == "z":
            assert pt is not None and min_pt is not None
            sum_pt = pt.unsqueeze(-1) + pt.unsqueeze(-2)
            out.append(torch.log(min_pt + eps) - torch.log(sum_pt + eps))
        elif feature == "mass":
            assert pt is not None and deta is not None and dphi is not None
            prod_pt = pt.unsqueeze(-1) * pt.unsqueeze(-2)
            # sinh through exp: the TorchScript ONNX exporter has no sinh. The relative error
            # it adds for nearly collinear pairs (~1e-7 / dη) is harmless inside a log.
            half_deta = deta / 2
            sinh = (torch.exp(half_deta) - torch.exp(-half_deta)) / 2
            angular = sinh**2 + torch.sin(dphi / 2) ** 2
            out.append(0.5 * torch.log(4 * prod_pt * angular + eps))
        elif feature == "isSelfLoop":
            index = torch.arange(reference.shape[-1], device=reference.device)
            self_loop = (index.unsqueeze(-1) == index.unsqueeze(-2)).to(reference.dtype)
            out.append(self_loop.expand(reference.shape[0], -1, -1))
        else:  # subjetIndex
            assert subjet is not None
            out.append((_pair_difference(subjet) == 0).to(reference.dtype))
    return torch.stack(out, dim=-1)


class EdgeFeatures(nn.Module):
    """Embed relations between pairs of constituents as an additive attention bias per head.

    Constituent features alone make the network rediscover angular distances and momentum
    sharing between tracks; computing them per pair (from the unnormalised kinematics) and adding
    a learned function of them to the attention scores hands this geometry over directly.
    The result goes to ``TransformerEncoder.forward(..., attn_bias=...)``.
    """

    def __init__(
        self,
        features: Sequence[str] = ("dR", "kt", "z", "isSelfLoop"),
        num_heads: int = 8,
        hidden_layers: list[int] | None = None,
        input_name: str = "tracks",
        variables: list[str] | None = None,
        activation: str = "SiLU",
    ) -> None:
        """Check the variables and build the embedding network.

        Args:
            features: Edge features to compute; see :func:`pair_features` for the choices.
            num_heads: Number of attention heads of the encoder, one bias per head.
            hidden_layers: Hidden widths of the per-pair network; defaults to ``[32]``.
            input_name: The constituent type the pairs are formed from.
            variables: The ordered input variables of ``input_name``; salt fills it from
                ``data.variables``.
            activation: Activation of the per-pair network.

        ``num_heads`` is the output width: one bias per attention head, or the width of the
        pair embeddings of :class:`~salt.models.edge_updates.EdgeTransformerEncoder`.
        """
        super().__init__()
        features = list(features)
        if not features or len(set(features)) != len(features):
            raise ValueError(f"features: expected distinct edge feature names, got {features}")
        unknown = [feature for feature in features if feature not in REQUIRED_VARIABLES]
        if unknown:
            raise ValueError(
                f"features: unknown edge features {unknown}, expected some of "
                f"{list(REQUIRED_VARIABLES)}"
            )
        if num_heads <= 0:
            raise ValueError(f"num_heads: expected a positive int, got {num_heads}")
        if variables is None:
            raise ValueError(f"variables: not set; salt fills it from data.variables[{input_name}]")
        for feature in features:
            for variable in REQUIRED_VARIABLES[feature]:
                if variable not in variables:
                    raise ValueError(
                        f"features: edge feature {feature!r} needs the variable {variable!r} "
                        f"in data.variables[{input_name}], which has {list(variables)}"
                    )
        needed = {v for feature in features for v in REQUIRED_VARIABLES[feature]}
        self.features = features
        self.num_heads = num_heads
        self.input_name = input_name
        self.variables = list(variables)
        # Column of each needed variable in the (B, L, F) inputs.
        self.columns: dict[str, int] = {v: self.variables.index(v) for v in sorted(needed)}
        self.net = Dense(
            len(features),
            num_heads,
            hidden_layers=[32] if hidden_layers is None else hidden_layers,
            activation=activation,
            norm_layer="LayerNorm",
        )
        self.output_size: int = num_heads

    def forward(self, x_raw: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        """Map unnormalised inputs x_raw (B, L, len(variables)) to a bias (B, num_heads, L, L).

        Pairs involving a padded constituent get bias 0 (attention masks them anyway); padded
        inputs are zeroed first, so garbage there cannot turn into NaN in values or gradients.
        """
        if x_raw.shape[-1] != len(self.variables):
            raise ValueError(
                f"x_raw: expected last dimension {len(self.variables)} (the variables of "
                f"{self.input_name}), got {x_raw.shape[-1]}"
            )
        if pad_mask is not None:
            x_raw = x_raw.masked_fill(pad_mask.unsqueeze(-1), 0.0)
        columns = {name: x_raw[..., index] for name, index in self.columns.items()}
        pt = columns.get("pt")
        features = pair_features(
            None if pt is None else pt.clamp_min(0.0),
            columns.get("eta"),
            columns.get("phi"),
            self.features,
            subjet=columns.get("subjetIndex"),
            like=x_raw[..., 0],
        )
        bias = self.net(features).permute(0, 3, 1, 2)
        if pad_mask is None:
            return bias
        pair_padded = pad_mask.unsqueeze(-1) | pad_mask.unsqueeze(-2)
        return bias.masked_fill(pair_padded.unsqueeze(1), 0.0)


__all__ = ["EPS", "REQUIRED_VARIABLES", "EdgeFeatures", "pair_features", "wrap_phi"]
