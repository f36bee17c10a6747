"""Track-pair vertexing: which constituents come from the same (secondary) vertex.

The head scores every unordered pair of constituents; the pairs it links are then grouped into
vertices by connected components, so a vertex of n tracks needs only a spanning set of its
n(n-1)/2 pairs to be found.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from salt.models.configs import DenseConfig
from salt.models.dense import make_activation
from salt.tasks.base import (
    TaskBase,
    elementwise,
    event_weights,
    masked_mean,
    require_sizes,
    valid_mask,
    weighted_mean,
)

# Under tracing (ONNX export) the number of constituents is not known when the graph is built;
# this many squarings link chains of up to 2**8 + 1 constituents, and extra ones change nothing.
TRACED_SQUARINGS = 8


def off_diagonal(length: int, device: torch.device | None = None) -> Tensor:
    """(L, L) True where i != j; built from ``arange`` so traced graphs keep L dynamic."""
    position = torch.arange(length, device=device)
    return position[:, None] != position[None, :]


def vertex_indices(
    pair_logits: Tensor, pad_mask: Tensor | None = None, threshold: float = 0.5
) -> Tensor:
    """Group constituents into vertices: the connected components of the linked pairs.

    Two constituents are linked when the sigmoid of their pair logit exceeds ``threshold``; the
    logits are symmetrised first (their mean over (i, j) and (j, i)). Linking is transitive:
    reachability comes from squaring the adjacency matrix ceil(log2(L - 1)) times, each squaring
    doubling the path length covered, all in batched torch without per-jet Python (and without
    ops that ONNX lacks, so an exported graph can run it).

    Args:
        pair_logits: (B, L, L) pair logits; the diagonal is ignored.
        pad_mask: (B, L) True for padded constituents; None when all are real.
        threshold: the probability above which a pair is linked.

    Returns:
        (B, L) int64 vertex index per constituent, numbered 0..k-1 per jet in the order of each
        vertex's first constituent (every unlinked constituent is a vertex of its own); -1 on
        padding. This follows the numbering of ``ftagTruthVertexIndex``, so predictions and
        labels can be compared field by field.
    """
    if pair_logits.dim() != 3 or pair_logits.shape[1] != pair_logits.shape[2]:
        raise ValueError(f"pair_logits: expected shape (B, L, L), got {tuple(pair_logits.shape)}")
    batch, length = pair_logits.shape[:2]
    if length == 0:
        return torch.empty(batch, 0, dtype=torch.long, device=pair_logits.device)
    valid = valid_mask(pair_logits, pad_mask)
    symmetric = 0.5 * (pair_logits + pair_logits.transpose(1, 2))
    linked = (torch.sigmoid(symmetric.float()) > threshold) | ~off_diagonal(length, valid.device)
    reach = (linked & valid[:, :, None] & valid[:, None, :]).float()
    steps = TRACED_SQUARINGS if torch.jit.is_tracing() else math.ceil(math.log2(max(length - 1, 1)))
    for _ in range(steps):
        reach = (torch.bmm(reach, reach) > 0).float()
    # the first constituent of each component names it (argmax gives the first maximum) ...
    root = reach.argmax(dim=-1)
    # ... and the components are renumbered 0..k-1 in the order of their roots
    is_root = (root == torch.arange(length, device=root.device)) & valid
    rank = torch.cumsum(is_root.long(), dim=-1) - 1
    return torch.where(valid, rank.gather(1, root), -1)


class VertexingTask(TaskBase):
    """Pairwise vertex finding on one constituent type (usually tracks).

    The first layer is factorised so that it costs per constituent, not per pair: each
    constituent is projected once to ``(s_i, d_i)`` and the jet context to ``(s_c, d_c)`` (width
    h each, h = the first of ``hidden_layers``), and pair (i, j) starts from
    ``act([s_i + s_j + s_c, |d_i - d_j| + d_c])``, followed by the remaining hidden layers and
    one output. Both halves are symmetric in i and j, so the logit of (i, j) equals that of
    (j, i) exactly and the head is equivariant under reordering the constituents. This keeps
    the (B, L, L, 2h) pair tensor small: scoring all pairs of a batch costs about as much as a
    second encoder layer rather than dominating the training step. The full (B, L, L) matrix is
    evaluated (twice the pairs strictly needed) because it is built by broadcasting alone,
    which keeps the head traceable to ONNX with a dynamic L.

    The target of a pair is 1 when both constituents carry the same vertex index >= 0 and 0
    otherwise; pairs with a padded constituent or a label < 0 (unknown) take no part, and the
    loss is the mean over the remaining pairs (with ``data.weight_field``, weighted by the
    weight of each pair's jet).

    Args:
        name: unique task name.
        input_name: the constituent type, e.g. ``tracks``.
        label: the per-constituent vertex index, e.g. ``ftagTruthVertexIndex``.
        dense_config: the pair network; salt sets ``input_size`` to the constituent width D and
            ``context_size`` to the pooled width C, and the network is built with input
            ``2 * D`` (+ C context) and one output.
        loss: a loss on (logit, target) pairs, by default ``BCEWithLogitsLoss`` (e.g. give
            ``pos_weight`` to up-weight the rarer same-vertex pairs); its reduction is set to
            ``none`` because the task averages over the valid pairs itself.
        weight: the factor of this task's loss in the total loss.
        threshold: the pair probability above which ``predict`` links two constituents.
    """

    label: str

    def __init__(
        self,
        name: str,
        input_name: str,
        label: str,
        dense_config: DenseConfig,
        loss: nn.Module | None = None,
        weight: float = 1.0,
        threshold: float = 0.5,
    ):
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"task '{name}': threshold={threshold}, expected a value in (0, 1)")
        config: dict[str, Any] = dict(dense_config)
        require_sizes(name, config, ("input_size",))
        if config.get("output_size", 1) != 1:
            raise ValueError(
                f"task '{name}': dense_config.output_size={config['output_size']}, but the pair "
                "network has one output (the pair logit); remove it"
            )
        self.constituent_size = int(config["input_size"])
        hidden = list(config.get("hidden_layers") or [])
        width = hidden[0] if hidden else self.constituent_size
        context_size = int(config.get("context_size") or 0)
        config["input_size"] = 2 * width
        config["hidden_layers"] = hidden[1:]
        config["context_size"] = 0
        config["output_size"] = 1
        super().__init__(
            name,
            input_name,
            label,
            config,  # type: ignore[arg-type]
            elementwise(loss or nn.BCEWithLogitsLoss(), name),
            weight,
        )
        self.threshold = threshold
        self.track_proj = nn.Linear(self.constituent_size, 2 * width)
        self.context_proj = nn.Linear(context_size, 2 * width) if context_size else None
        self.pair_activation = make_activation(config.get("activation", "ReLU"))

    def pair_targets(
        self, labels: dict[str, dict[str, Tensor]], pad_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Pair targets (B, L, L) and whether each pair takes part in the loss.

        Pairs take part when i != j and both constituents are real with a vertex index >= 0.
        """
        vertex = labels[self.input_name][self.label].long()
        known = vertex >= 0
        if pad_mask is not None:
            known = known & ~pad_mask
        target = (vertex[:, :, None] == vertex[:, None, :]).float()
        take_part = (
            known[:, :, None] & known[:, None, :] & off_diagonal(vertex.shape[1], vertex.device)
        )
        return target, take_part

    def forward(
        self,
        x: Tensor,
        labels: dict[str, dict[str, Tensor]] | None = None,
        pad_mask: Tensor | None = None,
        context: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Return the pair logits (B, L, L) (diagonal 0) and the loss when labels are given.

        Entries that involve a padded constituent are computed like the others but mean nothing.
        The loss averages over ordered pairs, which equals the mean over unordered pairs since
        the logits and targets are symmetric.
        """
        if x.dim() != 3:
            raise ValueError(
                f"task '{self.name}': expected constituents (B, L, D), got {tuple(x.shape)}"
            )
        s, d = self.track_proj(x).chunk(2, dim=-1)
        pair_sum = s.unsqueeze(2) + s.unsqueeze(1)
        pair_diff = (d.unsqueeze(2) - d.unsqueeze(1)).abs()
        if self.context_proj is not None and context is not None:
            s_c, d_c = self.context_proj(context)[:, None, None, :].chunk(2, dim=-1)
            pair_sum, pair_diff = pair_sum + s_c, pair_diff + d_c
        pairs = self.pair_activation(torch.cat([pair_sum, pair_diff], dim=-1))
        logits = self.head(pairs).squeeze(-1)
        logits = logits.masked_fill(~off_diagonal(x.shape[1], x.device), 0.0)
        if labels is None:
            return logits, None
        target, take_part = self.pair_targets(labels, pad_mask)
        values = self.loss(logits.float(), target)
        weights = event_weights(labels)
        if weights is None:
            return logits, masked_mean(values, take_part)
        return logits, weighted_mean(values, take_part, weights)

    def predict(self, output: Tensor, pad_mask: Tensor | None = None) -> dict[str, Tensor]:
        """``{"vertex_index": (B, L) int64}``: see :func:`vertex_indices` (-1 on padding)."""
        return {"vertex_index": vertex_indices(output, pad_mask, self.threshold)}


__all__ = ["VertexingTask", "off_diagonal", "vertex_indices"]
