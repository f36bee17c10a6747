"""Classification heads: jet flavour (or any class label of any input type)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor, nn

from salt.data.batch import Labels
from salt.models.configs import DenseConfig
from salt.models.packing import Packing, packing_enabled
from salt.tasks.base import (
    NamedOutput,
    TaskBase,
    event_weights,
    fill_padding,
    per_jet,
    unreduced,
)

log = logging.getLogger(__name__)


class ClassificationTask(TaskBase):
    """Multi-class classification with softmax outputs.

    Args:
        class_names: ordered class names; the number of outputs is derived from them. When
            omitted they are read from the training file's attribute named after ``label``.
        label_map: ``{stored value: class index}`` to train on labels that are not 0..N-1
            (requires ``class_names``). Rows whose label is not in the map are left out of the
            loss.
        use_class_dict: weight the loss by the class dict's weights for this label.
        See :class:`salt.tasks.base.TaskBase` for the other arguments.

    With per-jet weights (``data.weight_field``) the loss is evaluated per sample and averaged
    with those weights (see :meth:`weighted_loss`); class weights and ``ignore_index`` keep
    their meaning.
    """

    label: str

    def __init__(
        self,
        name: str,
        input_name: str,
        label: str,
        dense_config: DenseConfig,
        loss: nn.Module | None = None,
        class_names: list[str] | None = None,
        label_map: dict[int, int] | None = None,
        use_class_dict: bool = False,
        weight: float = 1.0,
    ):
        if label_map is not None and not class_names:
            raise ValueError(f"task '{name}': label_map needs class_names as well")
        if not class_names:
            raise ValueError(
                f"task '{name}': class_names unknown (give class_names, or use a label whose "
                "class names are stored in the training file)"
            )
        config = dict(dense_config)
        config.setdefault("output_size", len(class_names))
        if config["output_size"] != len(class_names):
            raise ValueError(
                f"task '{name}': dense_config.output_size={config['output_size']} but there are "
                f"{len(class_names)} class names"
            )
        super().__init__(
            name,
            input_name,
            label,
            config,  # type: ignore[arg-type]
            loss or nn.CrossEntropyLoss(),
            weight,
        )
        self.class_names = list(class_names)
        self.use_class_dict = use_class_dict
        self._reported_unmapped: set[int] = set()
        self.label_map = dict(label_map) if label_map else None
        if self.label_map:
            bad = [v for v in self.label_map.values() if not 0 <= v < len(class_names)]
            if bad:
                raise ValueError(
                    f"task '{name}': label_map targets {bad} are outside 0..{len(class_names) - 1}"
                )
            size = max(self.label_map) + 2
            table = torch.full((size,), -1, dtype=torch.long)
            for stored, index in self.label_map.items():
                table[stored] = index
            self.register_buffer("label_table", table, persistent=False)
        else:
            self.label_table = None

    def set_class_weights(self, weights: list[float]) -> None:
        """Use per-class loss weights (from the class dict)."""
        if len(weights) != len(self.class_names):
            raise ValueError(
                f"class dict: '{self.input_name}.{self.label}' has {len(weights)} weights, "
                f"expected {len(self.class_names)} (one per class of task '{self.name}')"
            )
        if not hasattr(self.loss, "weight"):
            raise ValueError(f"task '{self.name}': the loss does not accept class weights")
        self.loss.weight = torch.as_tensor(weights, dtype=torch.float32)

    def check_label_values(self, values: np.ndarray, where: str) -> None:
        """Fail before training when stored labels cannot be class indices of this task."""
        values = np.asarray(values).astype(np.int64)
        if self.label_map:
            mapped = [v for v in values.tolist() if v in self.label_map]
            if not mapped:
                raise ValueError(
                    f"{where}: '{self.label}' has values {values.tolist()[:10]}, none of which "
                    f"is in the label_map of task '{self.name}'"
                )
            unmapped = sorted({v for v in values.tolist() if v >= 0} - set(self.label_map))
            new = [v for v in unmapped if v not in self._reported_unmapped]
            self._reported_unmapped.update(unmapped)
            if new:  # once per run, not once per file checked
                log.warning(
                    "%s: '%s' values %s are not in the label_map of task '%s'; those rows take "
                    "no part in its loss",
                    where,
                    self.label,
                    new,
                    self.name,
                )
            return
        bad = values[(values < -1) | (values >= len(self.class_names))]
        if bad.size:
            raise ValueError(
                f"{where}: '{self.label}' has values {bad.tolist()[:10]} outside "
                f"0..{len(self.class_names) - 1} (task '{self.name}' has "
                f"{len(self.class_names)} classes); use a label_map with class_names"
            )

    def targets(self, labels: Labels) -> Tensor:
        """Class indices for the loss; -1 marks rows/constituents that take no part."""
        target = labels[self.input_name][self.label].long()
        if self.label_table is not None:
            table = self.label_table
            inside = (target >= 0) & (target < table.numel())
            target = torch.where(inside, table[target.clamp(0, table.numel() - 1)], -1)
        return target

    def forward(
        self,
        x: Tensor,
        labels: Labels | None = None,
        pad_mask: Tensor | None = None,
        context: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        if pad_mask is not None and x.dim() == 3 and packing_enabled(x):
            return self._forward_packed(x, labels, pad_mask, context)
        logits = self.head(x, context)
        if labels is None:
            return logits, None
        target = self.targets(labels)
        keep = target >= 0
        if pad_mask is not None:
            keep = keep & ~pad_mask
        weights = event_weights(labels)
        if weights is not None:
            return logits, self.weighted_loss(logits, target, keep, weights)
        return logits, self.kept_loss(logits, target, keep)

    def _forward_packed(
        self,
        x: Tensor,
        labels: Labels | None,
        pad_mask: Tensor,
        context: Tensor | None,
    ) -> tuple[Tensor, Tensor | None]:
        """Constituent classification on the real constituents only (see
        :class:`~salt.models.packing.Packing`); padded rows of the logits are zero."""
        packing = Packing.from_pad_mask(pad_mask)
        rows = packing.pack(x)
        row_context = None if context is None else context.index_select(0, packing.jet)
        logits = self.head(rows, row_context)
        dense_logits = packing.unpack(logits)
        if labels is None:
            return dense_logits, None
        target = packing.pack(self.targets(labels))
        keep = target >= 0
        weights = event_weights(labels)
        if weights is not None:
            jet_weights = weights.index_select(0, packing.jet)
            return dense_logits, self.weighted_loss(logits, target, keep, jet_weights)
        return dense_logits, self.kept_loss(logits, target, keep)

    def kept_loss(self, logits: Tensor, target: Tensor, keep: Tensor) -> Tensor:
        """The loss over the samples ``keep`` selects; 0 (still in the graph) when it selects
        none, as in a batch whose jets happen to have no labelled constituent of this type: the
        loss's mean over nothing would be NaN and stop the run."""
        kept_target = target[keep]
        if kept_target.numel() == 0:  # the indexing has synchronised already: no extra cost
            return logits.sum() * 0.0
        return self.loss(logits[keep], kept_target)

    def weighted_loss(
        self, logits: Tensor, target: Tensor, keep: Tensor, weights: Tensor
    ) -> Tensor:
        """The loss's own reduction, with each sample counted ``weights`` (B,) times.

        ``mean`` becomes ``sum_i w_i l_i / sum_i w_i c_i``, where ``l_i`` is the per-sample loss
        (which includes the class weight ``c_i`` of its target, 1 without class weights): with
        all ``w_i = 1`` this is exactly the weighted mean of ``CrossEntropyLoss``. ``sum``
        becomes ``sum_i w_i l_i``. Constituents take the weight of their jet; samples left out
        (unknown label, padding, ``ignore_index``) take no part.
        """
        ignore_index = getattr(self.loss, "ignore_index", None)
        if isinstance(ignore_index, int):
            keep = keep & (target != ignore_index)
        safe = torch.where(keep, target, torch.zeros_like(target))
        with unreduced(self.loss, self.name) as loss:
            per_sample = loss(logits.reshape(-1, logits.shape[-1]), safe.reshape(-1))
        per_sample = per_sample.reshape(target.shape)
        w = keep.to(per_sample.dtype) * per_jet(weights, per_sample)
        total = (per_sample * w).sum()
        if getattr(self.loss, "reduction", "mean") == "sum":
            return total
        class_weights = getattr(self.loss, "weight", None)
        if isinstance(class_weights, Tensor):
            w = w * class_weights.to(w)[safe]
        norm = w.sum()
        return total / torch.where(norm != 0, norm, torch.ones_like(norm))

    def probabilities(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits, dim=-1)

    def predict(self, output: Tensor, pad_mask: Tensor | None = None) -> dict[str, Tensor]:
        """``{"p<class name>": probability}`` per class; NaN on padded constituents."""
        probs = self.probabilities(output.float())
        return {
            f"p{name}": fill_padding(probs[..., k], pad_mask, float("nan"))
            for k, name in enumerate(self.class_names)
        }

    def exported_outputs(
        self,
        output: Tensor,
        prefix: str,
        constituent: str | None = None,
        pad_mask: Tensor | None = None,
        main: bool = False,
    ) -> list[NamedOutput]:
        """Probabilities named by class, plus the most probable class for constituents.

        The main jet task gives ``<prefix>_p<flavour>`` (``GN2_pb``), the names of the
        predictions file; another jet task ``<prefix>_<task>_p<flavour>``; a constituent task
        ``<prefix>_<task>_p<class>`` (NaN on padding) and ``<prefix>_<task>``, the int64 index
        of the most probable class (as ATLAS' ``TrackOrigin``, -1 on padding).
        """
        from salt.evaluation.metrics import flavour_short_name

        probs = torch.softmax(output.float(), dim=-1)
        outputs = []
        for k, class_name in enumerate(self.class_names):
            p = probs[..., k]
            if constituent is None:
                key = f"p{flavour_short_name(class_name)}"
                name = f"{prefix}_{key}" if main else f"{prefix}_{self.name}_{key}"
            else:
                key = f"p{class_name}"
                name = f"{prefix}_{self.name}_{key}"
                if pad_mask is not None:
                    p = p.masked_fill(pad_mask, float("nan"))
            outputs.append(NamedOutput(name, p, self.name, key, constituent, class_name))
        if constituent is not None:
            index = probs.argmax(dim=-1)
            if pad_mask is not None:
                index = index.masked_fill(pad_mask, -1)
            sources = tuple(o.name for o in outputs)
            name = f"{prefix}_{self.name}"
            outputs.append(
                NamedOutput(name, index, self.name, "argmax", constituent, None, sources)
            )
        return outputs


def jet_classifications(tasks: Iterable[nn.Module], global_object: str) -> list[ClassificationTask]:
    """The jet-level classification tasks, in model order (each logs an accuracy)."""
    return [
        task
        for task in tasks
        if isinstance(task, ClassificationTask) and task.input_name == global_object
    ]


def main_task(tasks: Iterable[nn.Module], global_object: str) -> ClassificationTask | None:
    """The model's main task: its first jet-level classification, whose outputs are the
    tagger's ``<name>_p<flavour>`` (predictions file, ONNX, Athena, evaluation)."""
    return next(iter(jet_classifications(tasks, global_object)), None)


__all__ = ["ClassificationTask", "jet_classifications", "main_task"]
