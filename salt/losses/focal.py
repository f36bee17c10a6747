"""Focal losses (Lin et al., arXiv 1708.02002): cross entropy that down-weights easy examples.

Both losses evaluate the focal term per sample, ``FL = -alpha_t (1 - p_t)^gamma log p_t``, so the
modulating factor follows each jet's own confidence (a focal factor computed from the batch-mean
cross entropy would scale every jet alike and focus on nothing).

They behave like the torch losses they generalise, so a task can use them in place of those:
a ``weight`` buffer (per-class weights, which the class dict fills through
``ClassificationTask.set_class_weights``) and a ``reduction`` attribute (``none``, ``mean``,
``sum``; tasks that mask entries themselves set it to ``none``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REDUCTIONS = ("none", "mean", "sum")


def _check(reduction: str, gamma: float, label_smoothing: float, owner: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{owner}: reduction must be one of {REDUCTIONS}, got '{reduction}'")
    if gamma < 0:
        raise ValueError(f"{owner}: gamma must be >= 0, got {gamma}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"{owner}: label_smoothing must be in [0, 1), got {label_smoothing}")


def _modulation(one_minus_p: Tensor, gamma: float) -> Tensor:
    """``(1 - p)^gamma`` with finite gradients: skipped at gamma 0 (``0^0`` has a NaN gradient)
    and kept away from 0 for ``gamma < 1`` (where the gradient of ``x^gamma`` diverges)."""
    if gamma == 0:
        return torch.ones_like(one_minus_p)
    if gamma < 1:
        one_minus_p = one_minus_p.clamp_min(1e-12)
    return one_minus_p.pow(gamma)


def _as_weight(weight: Sequence[float] | Tensor | None) -> Tensor | None:
    return None if weight is None else torch.as_tensor(weight, dtype=torch.float32)


class MulticlassFocalLoss(nn.Module):
    """Softmax focal loss on logits ``(N, C)`` (or ``(N, C, d...)``) and class indices ``(N,)``.

    Per sample, ``loss_i = -sum_c q_ic alpha_c (1 - p_ic)^gamma log p_ic`` with ``q`` the
    (optionally smoothed) one-hot target ``(1 - eps) onehot + eps / C``; without smoothing this is
    ``-alpha_t (1 - p_t)^gamma log p_t``. At ``gamma = 0`` it equals
    :class:`torch.nn.CrossEntropyLoss` with the same ``weight``, ``label_smoothing`` and
    ``reduction``, including its weighted mean (divided by the summed weights of the targets).

    Args:
        gamma: focusing parameter; 0 is cross entropy, 2 is the usual choice.
        weight: per-class weights ``alpha_c`` (e.g. inverse class frequencies); None = 1. The
            class dict sets them when the task has ``use_class_dict: true``.
        label_smoothing: ``eps`` in the smoothed target above.
        reduction: ``mean`` (weighted mean, as CrossEntropyLoss), ``sum`` or ``none`` (one
            value per sample).
        ignore_index: targets with this value take no part (as in CrossEntropyLoss).
    """

    weight: Tensor | None

    def __init__(
        self,
        gamma: float = 2.0,
        weight: list[float] | None = None,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        ignore_index: int = -100,
    ):
        super().__init__()
        _check(reduction, gamma, label_smoothing, type(self).__name__)
        self.gamma = float(gamma)
        self.label_smoothing = float(label_smoothing)
        self.reduction = reduction
        self.ignore_index = ignore_index
        self.register_buffer("weight", _as_weight(weight))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if logits.ndim < 2:
            raise ValueError(
                f"{type(self).__name__}: expected logits (N, C, ...), got shape "
                f"{tuple(logits.shape)}"
            )
        num_classes = logits.shape[1]
        weight = self.weight
        if weight is not None and weight.numel() != num_classes:
            raise ValueError(
                f"{type(self).__name__}: {weight.numel()} class weights for {num_classes} classes"
            )
        logp = F.log_softmax(logits.float(), dim=1)
        ignored = target == self.ignore_index
        index = torch.where(ignored, torch.zeros_like(target), target).long()
        one_hot = F.one_hot(index, num_classes).movedim(-1, 1).to(logp.dtype)
        eps = self.label_smoothing
        q = one_hot * (1.0 - eps) + eps / num_classes
        focal = -_modulation(-torch.expm1(logp), self.gamma) * logp  # (1-p)^g * (-log p)
        if weight is not None:
            shape = [1, num_classes] + [1] * (logits.ndim - 2)
            focal = focal * weight.to(logp).view(shape)
            target_weight = weight.to(logp)[index]
        else:
            target_weight = torch.ones_like(index, dtype=logp.dtype)
        keep = (~ignored).to(logp.dtype)
        per_sample = (q * focal).sum(dim=1) * keep
        if self.reduction == "none":
            return per_sample
        if self.reduction == "sum":
            return per_sample.sum()
        total = (target_weight * keep).sum()
        # an empty selection gives 0 rather than the NaN of a mean over nothing
        return per_sample.sum() / torch.where(total > 0, total, torch.ones_like(total))


class SigmoidFocalLoss(nn.Module):
    """Sigmoid (binary) focal loss, as in RetinaNet.

    Per element, ``loss = alpha_t (1 - p_t)^gamma BCE(x, t)`` with ``p = sigmoid(x)``,
    ``p_t = p t + (1 - p)(1 - t)`` and ``alpha_t = alpha t + (1 - alpha)(1 - t)``.

    Two target forms:

    - float targets with the logits' shape (0/1 or soft), like ``BCEWithLogitsLoss`` (e.g. the
      vertexing task's pair logits); ``weight`` then rescales elements by broadcasting;
    - class indices ``(N,)`` with logits ``(N, C)`` (one-vs-rest, e.g. as a ClassificationTask
      loss): targets are one-hot encoded, each sample's loss is the sum over its ``C`` binary
      terms, scaled by ``weight[target]`` (the class dict's weights); indices equal to
      ``ignore_index`` take no part.

    Args:
        alpha: weight of the positive class in ``[0, 1]``; None for no alpha balancing.
        gamma: focusing parameter; 0 gives (alpha-weighted) binary cross entropy.
        weight: see above; None = 1.
        label_smoothing: targets become ``t (1 - eps) + eps / 2``.
        reduction: ``mean`` (plain mean over elements, or over samples with class indices),
            ``sum`` or ``none``.
        ignore_index: the class index that takes no part (class-index form only).
    """

    weight: Tensor | None

    def __init__(
        self,
        alpha: float | None = 0.25,
        gamma: float = 2.0,
        weight: list[float] | None = None,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        ignore_index: int = -100,
    ):
        super().__init__()
        _check(reduction, gamma, label_smoothing, type(self).__name__)
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ValueError(f"{type(self).__name__}: alpha must be in [0, 1], got {alpha}")
        self.alpha = alpha
        self.gamma = float(gamma)
        self.label_smoothing = float(label_smoothing)
        self.reduction = reduction
        self.ignore_index = ignore_index
        self.register_buffer("weight", _as_weight(weight))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logits = logits.float()
        class_indices = not target.is_floating_point() and logits.ndim == target.ndim + 1
        keep: Tensor | None = None
        if class_indices:
            keep = target != self.ignore_index
            index = torch.where(keep, target, torch.zeros_like(target)).long()
            t = F.one_hot(index, logits.shape[-1]).to(logits.dtype)
        else:
            if target.shape != logits.shape:
                raise ValueError(
                    f"{type(self).__name__}: targets of shape {tuple(target.shape)} for logits "
                    f"{tuple(logits.shape)} (expected the same shape, or class indices (N,) for "
                    "logits (N, C))"
                )
            t = target.to(logits.dtype)
        if self.label_smoothing:
            t = t * (1.0 - self.label_smoothing) + self.label_smoothing / 2
        bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
        p = torch.sigmoid(logits)
        one_minus_pt = p * (1 - t) + (1 - p) * t
        loss = _modulation(one_minus_pt, self.gamma) * bce
        if self.alpha is not None:
            loss = loss * (self.alpha * t + (1 - self.alpha) * (1 - t))
        if class_indices:
            assert keep is not None
            loss = loss.sum(dim=-1)
            if self.weight is not None:
                loss = loss * self.weight.to(loss)[index]
            loss = loss * keep.to(loss.dtype)
        elif self.weight is not None:
            loss = loss * self.weight.to(loss)
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        if keep is not None:
            return loss.sum() / keep.sum().clamp_min(1).to(loss.dtype)
        return loss.mean()
