"""Losses and loss regularisers, addressed from YAML as ``salt.losses.<Class>``.

- :class:`MulticlassFocalLoss`, :class:`SigmoidFocalLoss`: focal losses usable as task losses.
- :class:`NamedLoss`, :func:`get_loss`: any registered loss by short name (``focal``,
  ``multiclass_focal``, ``ce``, ``bce``, ``mse``, and pytorch_optimizer's losses).
- :class:`DisCo`: distance-correlation decorrelation from jet variables (a SaltModule
  regulariser).
"""

from salt.losses.disco import DisCo, Regulariser, dcor_squared, distance_correlation
from salt.losses.focal import MulticlassFocalLoss, SigmoidFocalLoss
from salt.losses.registry import NamedLoss, available_losses, get_loss, loss_registry

__all__ = [
    "DisCo",
    "MulticlassFocalLoss",
    "NamedLoss",
    "Regulariser",
    "SigmoidFocalLoss",
    "available_losses",
    "dcor_squared",
    "distance_correlation",
    "get_loss",
    "loss_registry",
]
