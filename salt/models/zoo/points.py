"""What the point-cloud backbones (PET2, PointGlobalMixedViT) share: points embedded from their
features and an optional particle ID, their (Δη, Δφ) columns, and the class and jet tokens that
join the points in the attention.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from salt.data.batch import Inputs, PadMasks
from salt.models.dense import Dense
from salt.models.zoo.part import check_variables, context_groups, variable_column


class PIDEmbedding(nn.Module):
    """A learned vector per particle-ID code, so that IDs act as categories, not magnitudes.

    Codes not in ``values`` (and padding) share one extra "other" vector.
    """

    codes: Tensor

    def __init__(self, values: list[int], dim: int) -> None:
        """Build an embedding table for the integer codes ``values`` plus "other"."""
        super().__init__()
        if not values or len(set(values)) != len(values):
            raise ValueError(f"pid_values: expected distinct integer codes, got {values}")
        self.register_buffer("codes", torch.tensor(values, dtype=torch.float32), persistent=False)
        self.num_codes = len(values)
        self.embed = nn.Embedding(len(values) + 1, dim)

    def forward(self, pid: Tensor) -> Tensor:
        """Map raw codes (B, L) to embeddings (B, L, dim)."""
        match = pid.round().unsqueeze(-1) == self.codes
        other = torch.full_like(pid, float(self.num_codes))
        index = torch.where(match.any(-1), match.float().argmax(-1).to(pid.dtype), other)
        return self.embed(index.long())


def point_columns(
    variables: dict[str, list[str]],
    input_name: str,
    pid_variable: str | None,
    pid_values: list[int] | None,
    owner: str,
) -> tuple[list[int], int | None]:
    """Columns of the continuous point features and of the PID code (kept out of them)."""
    if pid_variable is None:
        if pid_values:
            raise ValueError(f"{owner}.pid_values: given without a pid_variable to read them from")
        return list(range(len(variables[input_name]))), None
    if not pid_values:
        raise ValueError(f"{owner}.pid_values: needed with pid_variable='{pid_variable}'")
    pid = variable_column(variables, input_name, pid_variable, owner, "pid_variable")
    features = [i for i in range(len(variables[input_name])) if i != pid]
    if not features:
        raise ValueError(f"{owner}: data.variables[{input_name}] has no variable besides the PID")
    return features, pid


class PointCloudBackbone(nn.Module):
    """Base of the point-cloud backbones: the point embedding and the [CLS; jet] tokens.

    Subclasses build their own layers between :meth:`_build_points` and
    :meth:`_build_tokens` and call :meth:`_embed_points` and :meth:`_with_tokens` in
    ``forward``; the submodule names (``embed``, ``pid_embed``, ``cls_token``) are those of
    saved weights.
    """

    feature_columns: Tensor

    def _build_points(
        self,
        variables: dict[str, list[str]] | None,
        input_name: str,
        dim: int,
        activation: str,
        pid_variable: str | None,
        pid_values: list[int] | None,
        coord_variables: list[str] | None,
        owner: str,
    ) -> dict[str, list[str]]:
        """The point embedding and coordinate columns; returns the checked variables."""
        variables = check_variables(variables, input_name, owner)
        self.input_name = input_name
        columns, self.pid_column = point_columns(
            variables, input_name, pid_variable, pid_values, owner
        )
        self.register_buffer("feature_columns", torch.tensor(columns), persistent=False)
        self.embed = Dense(len(columns), dim, [dim], activation=activation)
        self.pid_embed = None
        if self.pid_column is not None:
            assert pid_values is not None
            self.pid_embed = PIDEmbedding(pid_values, dim)
        coords = ["deta", "dphi"] if coord_variables is None else list(coord_variables)
        if len(coords) != 2:
            raise ValueError(f"{owner}.coord_variables: expected two names, got {coords}")
        self.coord_columns = [
            variable_column(variables, input_name, name, owner, "coord_variables")
            for name in coords
        ]
        return variables

    def _build_tokens(
        self,
        variables: dict[str, list[str]],
        global_object: str,
        dim: int,
        activation: str,
        jet_token: bool,
        argument: str,
        owner: str,
    ) -> Dense | None:
        """The class token, and the embedding of the jet token (returned: the subclass keeps
        it under its own name) when ``jet_token`` (the argument ``argument``) is set."""
        self.context_names, n_context = context_groups(variables, global_object)
        if jet_token and not n_context:
            raise ValueError(
                f"{owner}.{argument}: data.variables has no '{global_object}' or PARAMETERS "
                f"variables to build it from; set {argument}: false"
            )
        context = Dense(n_context, dim, [dim], activation=activation) if jet_token else None
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.num_tokens = 2 if jet_token else 1
        return context

    def _embed_points(
        self, inputs: Inputs, pad_masks: PadMasks, raw_inputs: Inputs
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The embedded points (B, L, D), their raw features (padding zeroed) and pad mask."""
        mask = pad_masks[self.input_name]
        padded = mask.unsqueeze(-1)
        x = inputs[self.input_name].masked_fill(padded, 0.0)
        raw = raw_inputs[self.input_name].masked_fill(padded, 0.0)
        h = self.embed(x.index_select(-1, self.feature_columns))
        if self.pid_embed is not None:
            h = h + self.pid_embed(raw[..., self.pid_column])
        return h, raw, mask

    def _with_tokens(
        self, points: Tensor, mask: Tensor, inputs: Inputs, context: nn.Module | None
    ) -> tuple[Tensor, Tensor]:
        """[CLS; jet token; points] and its pad mask (the tokens are never padded)."""
        batch = points.shape[0]
        tokens = [self.cls_token.expand(batch, -1, -1)]
        if context is not None:
            jet = torch.cat([inputs[name] for name in self.context_names], dim=-1)
            tokens.append(context(jet).unsqueeze(1))
        seq = torch.cat([*tokens, points], dim=1)
        token_mask = torch.zeros(batch, self.num_tokens, dtype=torch.bool, device=mask.device)
        return seq, torch.cat([token_mask, mask], dim=1)


__all__ = ["PIDEmbedding", "PointCloudBackbone", "point_columns"]
