"""Track-pair vertexing: which constituents come from the same (secondary) vertex.

The head scores every pair of constituents of a jet; the pairs it links are then grouped into
vertices by connected components, so a vertex of n tracks needs only a spanning set of its
pairs to be found.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

from salt.data.batch import Labels
from salt.models.configs import DenseConfig
from salt.models.packing import Packing, packing_enabled
from salt.tasks.base import TaskBase, elementwise, event_weights, require_sizes, valid_mask

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


HEAVY_FLAVOUR_ORIGINS = (3, 4, 5)  # FromB, FromBC, FromC in ftagTruthOriginLabel
FAKE_ORIGIN = 1  # Fake in ftagTruthOriginLabel


class VertexingTask(TaskBase):
    """Pairwise vertex finding on one constituent type (usually tracks).

    The pair network sees ``[x_i, x_j]`` (plus the pooled jet as context) and gives one logit
    per ordered pair (i, j), i != j: hidden layers ``dense_config.hidden_layers``, one output.
    Its first layer is linear in the concatenation, so it is evaluated per constituent (``W_a
    x_i`` and ``W_b x_j``) and only summed per pair: the pairs cost one addition and the
    remaining hidden layers, not a matrix product over the concatenated width. With packed
    constituents (the default in training and evaluation) only the pairs of real constituents
    of the same jet are formed, so a jet of n tracks costs n(n-1) pairs, not L(L-1); the padded
    path (ONNX export, ``torch.compile``) computes the same logits on the full (B, L, L) grid.

    The target of a pair is 1 when both constituents carry the same vertex index >= 0, else 0;
    pairs with a padded constituent or a label < 0 (unknown) take no part.

    Args:
        name: unique task name.
        input_name: the constituent type, e.g. ``tracks``.
        label: the per-constituent vertex index, e.g. ``ftagTruthVertexIndex``.
        dense_config: the pair network; salt sets ``input_size`` to the constituent width D and
            ``context_size`` to the pooled width C; the network is built with input ``2 * D``
            (+ C context) and one output.
        loss: a loss on (logit, target) pairs, by default ``BCEWithLogitsLoss`` (e.g. give
            ``pos_weight`` to up-weight the rarer same-vertex pairs); its reduction is set to
            ``none`` because the task reduces over the pairs itself.
        weight: the factor of this task's loss in the total loss.
        threshold: the pair probability above which ``predict`` links two constituents.
        normalise_by: ``pairs`` (default): the loss is the (weighted) mean over the pairs that
            take part. ``linked_pairs``: their weighted sum divided by the number of linked
            (same-vertex) pairs, which scales the loss up by the inverse fraction of linked
            pairs, as salt-ml's GN2 does; it makes vertexing a much stronger auxiliary signal.
        origin_label: the per-constituent truth origin field (e.g. ``ftagTruthOriginLabel``);
            needed for the two pair weights below.
        heavy_flavour_pair_weight: weight of pairs whose two constituents come from
            heavy-flavour decays (origins FromB, FromBC, FromC): the vertices that matter.
        fake_pair_weight: weight of pairs of two fake tracks (0 leaves them out).
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
        normalise_by: Literal["pairs", "linked_pairs"] = "pairs",
        origin_label: str | None = None,
        heavy_flavour_pair_weight: float = 1.0,
        fake_pair_weight: float = 1.0,
    ):
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"task '{name}': threshold={threshold}, expected a value in (0, 1)")
        if normalise_by not in ("pairs", "linked_pairs"):
            raise ValueError(
                f"task '{name}': normalise_by={normalise_by!r}, expected 'pairs' or 'linked_pairs'"
            )
        weighted_origins = heavy_flavour_pair_weight != 1.0 or fake_pair_weight != 1.0
        if weighted_origins and origin_label is None:
            raise ValueError(
                f"task '{name}': heavy_flavour_pair_weight/fake_pair_weight need origin_label "
                "(e.g. ftagTruthOriginLabel)"
            )
        if heavy_flavour_pair_weight < 0 or fake_pair_weight < 0:
            raise ValueError(f"task '{name}': pair weights must be >= 0")
        config: dict[str, Any] = dict(dense_config)
        require_sizes(name, config, ("input_size",))
        if config.get("output_size", 1) != 1:
            raise ValueError(
                f"task '{name}': dense_config.output_size={config['output_size']}, but the pair "
                "network has one output (the pair logit); remove it"
            )
        self.constituent_size = int(config["input_size"])
        config["input_size"] = 2 * self.constituent_size
        config["output_size"] = 1
        if not config.get("hidden_layers"):
            raise ValueError(
                f"task '{name}': dense_config.hidden_layers is empty; the pair network needs at "
                "least one hidden layer"
            )
        if config.get("gated"):
            raise ValueError(f"task '{name}': dense_config.gated is not supported by the pair net")
        super().__init__(
            name,
            input_name,
            label,
            config,  # type: ignore[arg-type]
            elementwise(loss or nn.BCEWithLogitsLoss(), name),
            weight,
        )
        self.threshold = threshold
        self.normalise_by = normalise_by
        self.origin_label = origin_label
        self.heavy_flavour_pair_weight = heavy_flavour_pair_weight
        self.fake_pair_weight = fake_pair_weight

    def label_fields(self) -> dict[str, list[str]]:
        fields = [self.label]
        if self.origin_label is not None:
            fields.append(self.origin_label)
        return {self.input_name: fields}

    def _first_layer(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """The pair net's first Linear split by input: ``(W_a x, W_b x, W_c context + bias)``.

        ``x`` is (..., D); the context term is (B, h) (or (h,) broadcastable without context).
        """
        first = self.net.net[0]
        assert isinstance(first, nn.Linear)
        size = self.constituent_size
        weight = first.weight
        as_first = x @ weight[:, :size].T
        as_second = x @ weight[:, size : 2 * size].T
        if self.net.context_size:
            if context is None:
                raise ValueError(f"task '{self.name}': the pair net needs the pooled context")
            jet_term = torch.addmm(first.bias, context, weight[:, 2 * size :].T)
        else:
            jet_term = first.bias
        return as_first, as_second, jet_term

    def _rest(self, pre_activation: Tensor) -> Tensor:
        """The pair net after its first Linear (activation, hidden layers, output)."""
        return self.net.net[1:](pre_activation).squeeze(-1)

    def pair_targets(self, labels: Labels, pad_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
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

    def _origin_classes(self, origins: Tensor) -> tuple[Tensor, Tensor]:
        origins = origins.long()
        heavy = torch.zeros_like(origins, dtype=torch.bool)
        for origin in HEAVY_FLAVOUR_ORIGINS:
            heavy = heavy | (origins == origin)
        return heavy, origins == FAKE_ORIGIN

    def _pair_weights(self, heavy: tuple[Tensor, Tensor], fake: tuple[Tensor, Tensor]) -> Tensor:
        """Weights of pairs from their constituents' heavy-flavour / fake flags."""
        both_heavy = heavy[0] & heavy[1]
        both_fake = fake[0] & fake[1]
        weights = torch.ones(both_heavy.shape, device=both_heavy.device)
        weights = weights.masked_fill(both_heavy, self.heavy_flavour_pair_weight)
        return weights.masked_fill(both_fake, self.fake_pair_weight)

    def _reduce(
        self,
        values: Tensor,
        target: Tensor,
        take_part: Tensor,
        pair_weights: Tensor | None,
        jet_weights: Tensor | None,
    ) -> Tensor:
        """The loss over the pairs that take part, as ``normalise_by`` says."""
        w = take_part.to(values.dtype)
        if pair_weights is not None:
            w = w * pair_weights
        if jet_weights is not None:
            w = w * jet_weights.to(values.dtype)
        total = (values * w).sum()
        linked = self.normalise_by == "linked_pairs"
        norm = (target * take_part).sum() if linked else w.sum()
        return total / torch.where(norm > 0, norm, torch.ones_like(norm))

    def forward(
        self,
        x: Tensor,
        labels: Labels | None = None,
        pad_mask: Tensor | None = None,
        context: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Return the pair logits (B, L, L) (0 on the diagonal and on padding) and the loss
        when labels are given."""
        if x.dim() != 3:
            raise ValueError(
                f"task '{self.name}': expected constituents (B, L, D), got {tuple(x.shape)}"
            )
        if pad_mask is not None and packing_enabled(x):
            packing = Packing.from_pad_mask(pad_mask)
            if packing.num_real:
                return self._forward_packed(x, labels, packing, context)
        as_first, as_second, jet_term = self._first_layer(x, context)
        if jet_term.dim() == 2:
            jet_term = jet_term[:, None, None, :]
        logits = self._rest(as_first[:, :, None, :] + as_second[:, None, :, :] + jet_term)
        grid = off_diagonal(x.shape[1], x.device)
        if pad_mask is not None:
            grid = grid & ~pad_mask[:, :, None] & ~pad_mask[:, None, :]
        logits = logits.masked_fill(~grid, 0.0)
        if labels is None:
            return logits, None
        target, take_part = self.pair_targets(labels, pad_mask)
        values = self.loss(logits.float(), target)
        pair_weights = None
        if self.origin_label is not None:
            heavy, fake = self._origin_classes(labels[self.input_name][self.origin_label])
            pair_weights = self._pair_weights(
                (heavy[:, :, None], heavy[:, None, :]), (fake[:, :, None], fake[:, None, :])
            )
        jet_weights = event_weights(labels)
        if jet_weights is not None:
            jet_weights = jet_weights[:, None, None]
        return logits, self._reduce(values, target, take_part, pair_weights, jet_weights)

    def _forward_packed(
        self,
        x: Tensor,
        labels: Labels | None,
        packing: Packing,
        context: Tensor | None,
    ) -> tuple[Tensor, Tensor | None]:
        """Logits for the ordered pairs of real constituents of the same jet only."""
        as_first, as_second, jet_term = self._first_layer(packing.pack(x), context)
        first, second = packing.pairs(ordered=True)
        pair_jet = packing.jet.index_select(0, first)
        pre = as_first.index_select(0, first) + as_second.index_select(0, second)
        pre = pre + (jet_term.index_select(0, pair_jet) if jet_term.dim() == 2 else jet_term)
        pair_logits = self._rest(pre)
        length = packing.length
        row = packing.index.index_select(0, first) - pair_jet * length
        column = packing.index.index_select(0, second) - pair_jet * length
        flat = (pair_jet * length + row) * length + column
        logits = pair_logits.new_zeros(packing.batch_size * length * length)
        logits = logits.index_put((flat,), pair_logits).view(packing.batch_size, length, length)
        if labels is None:
            return logits, None
        vertex = packing.pack(labels[self.input_name][self.label].long())
        v_first, v_second = vertex.index_select(0, first), vertex.index_select(0, second)
        target = (v_first == v_second).float()
        take_part = (v_first >= 0) & (v_second >= 0)
        values = self.loss(pair_logits.float(), target)
        pair_weights = None
        if self.origin_label is not None:
            heavy, fake = self._origin_classes(
                packing.pack(labels[self.input_name][self.origin_label])
            )
            pair_weights = self._pair_weights(
                (heavy.index_select(0, first), heavy.index_select(0, second)),
                (fake.index_select(0, first), fake.index_select(0, second)),
            )
        jet_weights = event_weights(labels)
        if jet_weights is not None:
            jet_weights = jet_weights.index_select(0, pair_jet)
        return logits, self._reduce(values, target, take_part, pair_weights, jet_weights)

    def predict(self, output: Tensor, pad_mask: Tensor | None = None) -> dict[str, Tensor]:
        """``{"vertex_index": (B, L) int64}``: see :func:`vertex_indices` (-1 on padding)."""
        return {"vertex_index": vertex_indices(output, pad_mask, self.threshold)}


__all__ = ["VertexingTask", "off_diagonal", "vertex_indices"]
