"""Losses by short name (``"focal"``, ``"ce"``, ...) for users who would rather not type a
class_path, and for Python code that builds tasks from a name.

Every loss also works by class_path (``salt.losses.MulticlassFocalLoss``,
``torch.nn.CrossEntropyLoss``, ``pytorch_optimizer.FocalLoss``); the names are only shortcuts.
From YAML, :class:`NamedLoss` takes a name where a loss module is expected::

    loss:
      class_path: salt.losses.NamedLoss
      init_args: {name: multiclass_focal, params: {gamma: 2.0}}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from salt.errors import suggest
from salt.losses.focal import MulticlassFocalLoss, SigmoidFocalLoss

LossFactory = Callable[..., nn.Module]

# short names first; every class is also reachable by its lower-cased class name
_BUILTIN: dict[str, LossFactory] = {
    "bce": nn.BCEWithLogitsLoss,
    "ce": nn.CrossEntropyLoss,
    "mse": nn.MSELoss,
    "l1": nn.L1Loss,
    "huber": nn.HuberLoss,
    "smooth_l1": nn.SmoothL1Loss,
    "nll": nn.NLLLoss,
    "focal": SigmoidFocalLoss,
    "multiclass_focal": MulticlassFocalLoss,
}


def _pytorch_optimizer_losses() -> dict[str, LossFactory]:
    """The loss classes of ``pytorch_optimizer`` under its own (lower-case) names, if installed."""
    try:
        from pytorch_optimizer.loss import LOSS_FUNCTIONS
    except ImportError:
        return {}
    return {str(name): cls for name, cls in LOSS_FUNCTIONS.items()}


def loss_registry() -> dict[str, LossFactory]:
    """All known names: salt's short names, lower-cased class names, pytorch_optimizer's."""
    registry: dict[str, LossFactory] = {}
    registry.update(_pytorch_optimizer_losses())
    for factory in list(_BUILTIN.values()):
        registry[factory.__name__.lower()] = factory
    registry.update(_BUILTIN)  # salt's short names win over any clash
    return registry


def available_losses() -> list[str]:
    """The names :func:`get_loss` accepts, sorted."""
    return sorted(loss_registry())


def get_loss(name: str, **params: Any) -> nn.Module:
    """Build a loss from its name (case-insensitive) and keyword arguments.

    Raises:
        KeyError: for an unknown name, with the closest known name when there is one.
    """
    registry = loss_registry()
    key = name.strip().lower()
    if key not in registry:
        hint = suggest(key, registry)
        tip = f" (did you mean '{hint}'?)" if hint else ""
        raise KeyError(f"loss '{name}' is unknown{tip}; known: {', '.join(sorted(registry))}")
    return registry[key](**params)


class NamedLoss(nn.Module):
    """A loss chosen by name, usable wherever a loss module is expected (e.g. a task's ``loss``).

    ``weight`` and ``reduction`` read and write the wrapped loss's attributes, so class-dict
    weights and the tasks' element-wise reduction reach it as they would a torch loss.

    Args:
        name: a name from :func:`available_losses`, e.g. ``focal``, ``multiclass_focal``,
            ``ce``, ``bce``, ``mse``, or a pytorch_optimizer loss such as ``focalloss``.
        params: the loss's keyword arguments.
    """

    def __init__(self, name: str, params: dict[str, Any] | None = None):
        super().__init__()
        self.name = name
        self.loss = get_loss(name, **(params or {}))

    @property
    def reduction(self) -> str:
        return self.loss.reduction  # type: ignore[return-value]

    @reduction.setter
    def reduction(self, value: str) -> None:
        if not hasattr(self.loss, "reduction"):
            raise AttributeError(f"loss '{self.name}' has no 'reduction' attribute")
        setattr(self.loss, "reduction", value)  # noqa: B010 (a torch loss attribute)

    @property
    def weight(self) -> Tensor | None:
        return self.loss.weight  # type: ignore[return-value]

    @weight.setter
    def weight(self, value: Tensor | None) -> None:
        if not hasattr(self.loss, "weight"):
            raise AttributeError(f"loss '{self.name}' does not accept class weights")
        setattr(self.loss, "weight", value)  # noqa: B010 (a buffer of the torch loss)

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        return self.loss(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"name={self.name!r}"
