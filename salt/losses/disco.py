"""DisCo: distance-correlation decorrelation of the tagger output from jet variables.

Kasieczka & Shih, arXiv 2001.05310: adding ``lambda * dCor^2(f(x), m)`` to the loss makes the
classifier output ``f`` statistically independent of a variable ``m`` (e.g. the jet mass), so a
cut on ``f`` does not sculpt ``m``. Distance correlation is zero if and only if two variables are
independent (not merely uncorrelated) and it is differentiable, so it is estimated on each batch.

The estimator here is the (weighted) V-statistic: with ``a_ij = |x_i - x_j|`` and normalised
weights ``w_i``, double-centre ``A_ij = a_ij - abar_i - abar_j + abar`` (weighted row and grand
means), likewise ``B`` for ``y``; then ``dCov^2 = sum_ij w_i w_j A_ij B_ij`` and
``dCor^2 = dCov^2(x, y) / sqrt(dCov^2(x, x) dCov^2(y, y))``. Integer weights are the same as
repeating samples. Memory grows as the batch size squared (``max_samples`` caps it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, cast

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from salt.tasks.base import TaskBase


def _centred_distances(x: Tensor, w: Tensor) -> Tensor:
    """Weighted double-centred distance matrix of a 1-D sample ``x`` (``w`` sums to 1)."""
    a = (x[:, None] - x[None, :]).abs()
    row = a @ w  # weighted mean of each row (= of each column: a is symmetric)
    grand = row @ w
    return a - row[:, None] - row[None, :] + grand


def dcor_squared(x: Tensor, y: Tensor, weights: Tensor | None = None) -> Tensor:
    """Squared distance correlation of two 1-D samples, in ``[0, 1]``, differentiable.

    Args:
        x, y: samples of shape ``(N,)``.
        weights: non-negative sample weights ``(N,)`` (e.g. class or event weights); a zero
            weight removes a sample, without any data-dependent indexing. None = equal weights.
    """
    x = x.reshape(-1).float()
    y = y.reshape(-1).float()
    if x.shape != y.shape:
        raise ValueError(f"dcor_squared: samples of different sizes {x.shape} and {y.shape}")
    if weights is None:
        w = torch.full_like(x, 1.0 / max(x.numel(), 1))
    else:
        w = weights.reshape(-1).to(x).clamp_min(0)
        w = w / w.sum().clamp_min(torch.finfo(w.dtype).tiny)
    # standardise y (weighted, no gradient needed): dCor is scale-free, and raw variables such
    # as a jet pT in MeV would otherwise give large products in float32
    y_mean = (w * y).sum()
    y_std = ((w * (y - y_mean) ** 2).sum()).sqrt().clamp_min(1e-12)
    y = ((y - y_mean) / y_std).detach()
    big_a = _centred_distances(x, w)
    big_b = _centred_distances(y, w)
    ww = w[:, None] * w[None, :]
    cov_xy = (ww * big_a * big_b).sum()
    var_x = (ww * big_a * big_a).sum()
    var_y = (ww * big_b * big_b).sum()
    denominator = (var_x * var_y).clamp_min(1e-20).sqrt()
    return (cov_xy / denominator).clamp(0.0, 1.0)


def distance_correlation(x: Tensor, y: Tensor, weights: Tensor | None = None) -> Tensor:
    """Distance correlation ``dCor`` (the square root of :func:`dcor_squared`)."""
    return dcor_squared(x, y, weights).clamp_min(1e-20).sqrt()


class Regulariser(nn.Module):
    """A penalty on the outputs (and raw label fields) of a batch, added to the total loss.

    SaltModule calls ``bind(model)`` once, requests ``label_fields()`` from the data layer, adds
    ``strength * regulariser(outputs, labels)`` to the loss and logs the value under ``name``.
    """

    name: str = "regulariser"
    strength: float = 1.0

    def bind(self, model: nn.Module) -> None:
        """Look up what the penalty needs in the network (e.g. a task), and check the config."""

    def label_fields(self) -> dict[str, list[str]]:
        """The fields to read per input type, like a task's ``label_fields``."""
        return {}

    def forward(self, outputs: dict[str, Tensor], labels: dict[str, dict[str, Tensor]]) -> Tensor:
        raise NotImplementedError


class DisCo(Regulariser):
    """Distance-correlation penalty between a classifier's output and raw jet variables.

    Add it to the module's ``regularisers``: salt requests the variables (read unnormalised, as
    labels) from the data layer, adds ``strength * value`` to the total loss and logs the value
    as ``<stage>/<name>`` (``train/disco``). The value is ``sum over variables of
    dCor^2(score, variable) ** power``.

    Args:
        variables: jet-level fields to decorrelate from (e.g. ``[mass]``), read raw from the
            global object's dataset; they need not be network inputs.
        strength: the DisCo lambda (``lambda`` is a Python keyword, so it cannot be an argument
            name in the YAML schema).
        power: exponent on ``dCor^2``; 1 is the paper's penalty.
        weighted: weight the estimator; by the field ``weight_field`` if given, else by the class
            weights of the task's loss (set from the class dict; 1 when there are none).
        multiclass_reduction: how a multi-class output becomes one score: ``logits`` is the
            log-likelihood ratio ``log(p_signal / sum_k f_k p_k)`` over the other classes (the
            b-tagging discriminant for ``signal: bjets``), ``entropy`` is ``-sum_k p_k log p_k``.
            A single-output (binary) head is used as it is.
        task: the classification task whose output is decorrelated; default the first
            jet-level task with class names.
        signal: the signal class for ``logits``; default the task's first class.
        fractions: the background mixture ``{class: f}`` for ``logits`` (e.g.
            ``{cjets: 0.2, ujets: 0.8}``); classes left out get 0. Default: equal fractions of
            all non-signal classes.
        classes: decorrelate only on jets of these classes (e.g. the backgrounds, as in the
            paper); default all jets with a known label.
        weight_field: a per-jet weight field (e.g. an event weight) used when ``weighted``.
        max_samples: use at most the first N jets of each batch (memory is O(N^2)).
        name: the name the value is logged under.
    """

    def __init__(
        self,
        variables: list[str],
        strength: float = 1.0,
        power: int = 1,
        weighted: bool = False,
        multiclass_reduction: Literal["logits", "entropy"] = "logits",
        task: str | None = None,
        signal: str | None = None,
        fractions: dict[str, float] | None = None,
        classes: list[str] | None = None,
        weight_field: str | None = None,
        max_samples: int | None = None,
        name: str = "disco",
    ):
        super().__init__()
        if not variables:
            raise ValueError("DisCo: give at least one variable to decorrelate from")
        if multiclass_reduction not in ("logits", "entropy"):
            raise ValueError(
                f"DisCo: multiclass_reduction must be 'logits' or 'entropy', got "
                f"'{multiclass_reduction}'"
            )
        if power <= 0:
            raise ValueError(f"DisCo: power must be positive, got {power}")
        if strength < 0:
            raise ValueError(f"DisCo: strength must be >= 0, got {strength}")
        if max_samples is not None and max_samples < 2:
            raise ValueError(f"DisCo: max_samples must be at least 2, got {max_samples}")
        self.variables = list(variables)
        self.strength = float(strength)
        self.power = power
        self.weighted = weighted
        self.multiclass_reduction = multiclass_reduction
        self.task_name = task
        self.signal = signal
        self.fractions = dict(fractions) if fractions else None
        self.classes = list(classes) if classes else None
        self.weight_field = weight_field
        self.max_samples = max_samples
        self.name = name
        self._bound: tuple[TaskBase, ...] = ()  # (task,), kept out of the module tree
        self.signal_index = 0
        self.register_buffer("log_fractions", None, persistent=False)
        self.register_buffer("class_mask", None, persistent=False)

    # -- binding to the network's task ---------------------------------------------------------
    def bind(self, model: nn.Module) -> None:
        """Find the task to decorrelate in a :class:`~salt.models.SaltModel` and check names."""
        global_object = getattr(model, "global_object", "jets")
        tasks = list(getattr(model, "tasks", []))
        if self.task_name is not None:
            found = [t for t in tasks if t.name == self.task_name]
            if not found:
                names = [t.name for t in tasks]
                raise ValueError(f"DisCo: no task named '{self.task_name}' (tasks: {names})")
            task = found[0]
        else:
            found = [
                t
                for t in tasks
                if t.input_name == global_object and getattr(t, "class_names", None)
            ]
            if not found:
                raise ValueError("DisCo: no jet-level classification task to decorrelate")
            task = found[0]
        if task.input_name != global_object:
            raise ValueError(
                f"DisCo: task '{task.name}' is not jet-level (input '{task.input_name}')"
            )
        class_names = list(getattr(task, "class_names", None) or [])
        if task.label is None:
            raise ValueError(f"DisCo: task '{task.name}' has no single label field")
        self._bound = (cast("TaskBase", task),)
        self.input_name: str = task.input_name
        self.label: str = task.label
        if len(class_names) > 1 and self.multiclass_reduction == "logits":
            self.log_fractions = self._log_fractions(class_names)
        if self.classes is not None:
            self._require(self.classes, class_names, "classes")
            self.class_mask = torch.tensor([c in self.classes for c in class_names])

    def _require(self, wanted: list[str], class_names: list[str], key: str) -> None:
        unknown = [c for c in wanted if c not in class_names]
        if unknown:
            raise ValueError(f"DisCo.{key}: unknown classes {unknown} (classes: {class_names})")

    def _log_fractions(self, class_names: list[str]) -> Tensor:
        """``log f_k`` of the background mixture; -inf for the signal and unused classes."""
        signal = self.signal or class_names[0]
        self._require([signal], class_names, "signal")
        self.signal_index = class_names.index(signal)
        if self.fractions is not None:
            self._require(list(self.fractions), class_names, "fractions")
            if signal in self.fractions:
                raise ValueError(f"DisCo.fractions: the signal class '{signal}' is listed")
            f = torch.tensor([float(self.fractions.get(c, 0.0)) for c in class_names])
        else:
            f = torch.tensor([0.0 if c == signal else 1.0 for c in class_names])
        if f.sum() <= 0 or (f < 0).any():
            raise ValueError("DisCo.fractions: expected non-negative fractions with a positive sum")
        return (f / f.sum()).log()

    @property
    def task(self) -> TaskBase:
        if not self._bound:
            raise RuntimeError("DisCo: call bind(model) before use (SaltModule does this)")
        return self._bound[0]

    def label_fields(self) -> dict[str, list[str]]:
        """The raw fields to read: the variables, the task's label and the weight field."""
        task = self.task
        fields = [*self.variables]
        for extra in (self.label, self.weight_field if self.weighted else None):
            if extra is not None and extra not in fields:
                fields.append(extra)
        return {task.input_name: fields}

    # -- the penalty --------------------------------------------------------------------------
    def score(self, output: Tensor) -> Tensor:
        """Reduce the task's raw output ``(B, C)`` (or ``(B,)``/``(B, 1)``) to one score."""
        output = output.float()
        if output.ndim == 1 or output.shape[-1] == 1:
            return output.reshape(-1)
        logp = torch.log_softmax(output, dim=-1)
        if self.multiclass_reduction == "entropy":
            return -(logp.exp() * logp).sum(-1)
        log_f = self.log_fractions
        assert log_f is not None
        return logp[..., self.signal_index] - torch.logsumexp(logp + log_f.to(logp), dim=-1)

    def weights(self, labels: dict[str, dict[str, Tensor]], target: Tensor) -> Tensor:
        """Per-jet estimator weights: 0 for unknown labels and unselected classes."""
        known = target >= 0
        index = target.clamp_min(0)
        w = known.float()
        if self.class_mask is not None:
            w = w * self.class_mask.to(target.device)[index].float()
        if self.weighted:
            if self.weight_field is not None:
                w = w * labels[self.input_name][self.weight_field].float()
            else:
                class_weight = getattr(self.task.loss, "weight", None)
                if class_weight is not None:
                    w = w * class_weight.to(w)[index]
        return w

    def forward(self, outputs: dict[str, Tensor], labels: dict[str, dict[str, Tensor]]) -> Tensor:
        """The penalty (before ``strength``) for one batch of outputs and labels."""
        task = self.task
        targets = getattr(task, "targets", None)
        if targets is not None:
            target = targets(labels)
        else:
            target = labels[self.input_name][self.label].long()
        score = self.score(outputs[task.name])
        w = self.weights(labels, target)
        n = self.max_samples
        if n is not None:
            score, w, target = score[:n], w[:n], target[:n]
        total = score.new_zeros(())
        for variable in self.variables:
            values = labels[self.input_name][variable].float()
            if n is not None:
                values = values[:n]
            finite = torch.isfinite(values)
            values = torch.where(finite, values, torch.zeros_like(values))
            total = total + dcor_squared(score, values, w * finite.float()) ** self.power
        return total

    def extra_repr(self) -> str:
        return (
            f"variables={self.variables}, strength={self.strength}, power={self.power}, "
            f"reduction={self.multiclass_reduction}"
        )
