"""The LightningModule: normalise, run the network, sum the task losses, set up optimisation."""

from __future__ import annotations

from typing import Any, TypedDict

import lightning as L
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from salt.data.batch import SPECIAL_GROUPS, Batch
from salt.data.normalisation import Normaliser, load_norm_dict
from salt.losses.disco import Regulariser
from salt.models.saltmodel import SaltModel
from salt.mup.config import MuPConfig
from salt.tasks.classification import jet_classifications
from salt.training.class_dict import apply_class_dict
from salt.training.finetune import InitWeights, freeze_modules, load_selected, select_weights
from salt.training.optim import (
    DEFAULT_LRS,
    LRSConfig,
    SchedulerConfig,
    check_lrs_config,
    configure_optimization,
)
from salt.utils.label_fields import LabelFields, merge_label_fields


class StepOutput(TypedDict):
    """What a training step returns: the loss to minimise, and each task's (and regulariser's)
    loss, detached, for callbacks such as :class:`salt.callbacks.nan_guard.NaNLossGuard`."""

    loss: Tensor
    task_losses: dict[str, Tensor]


class SaltModule(L.LightningModule):
    """Wraps a :class:`SaltModel` for training and evaluation.

    Args:
        model: the network.
        lrs_config: the default one-cycle schedule (used unless ``optimizer``/``lr_scheduler``
            are given).
        optimizer: any optimizer by class_path (default AdamW with ``lrs_config`` values).
        lr_scheduler: any scheduler by class_path (default one-cycle from ``lrs_config``),
            e.g. ``salt.training.schedulers.CosineWarmup`` or
            ``torch.optim.lr_scheduler.ReduceLROnPlateau``.
        lr_scheduler_config: how the scheduler is stepped: ``interval`` (``step``, or ``epoch``;
            default ``step``, ``epoch`` for ReduceLROnPlateau), ``frequency``, ``monitor``
            (default ``val/loss``).
        regularisers: penalties added to the total loss, e.g. ``salt.losses.DisCo``; each is
            logged as ``<stage>/<its name>``.
        name: the tagger name, used for output names such as ``<name>_pb``.
        norm_dict, class_dict, variables, input_map, global_object: taken from ``data`` by
            salt, so that normalisation and class weights are part of the model (and of its
            checkpoint and ONNX export).
        muP_config: train in the maximal update parametrisation (muTransfer): the base shapes
            written by ``setup_muP`` are loaded into the network (``mup.set_base_shapes``, then
            the muP initialisation) and the optimizer gets the muP learning-rate scaling
            (``mup.MuAdamW``/``MuAdam``/``MuSGD``). The encoder (and the init nets) need
            ``muP: true``; see ``configs/GN2_muP.yaml``.
        init_weights: start ``salt fit`` from the weights of another checkpoint (all or some,
            see :class:`salt.training.finetune.InitWeights`), with a fresh optimizer, schedule
            and epoch count; unlike ``--ckpt_path``, which resumes a run.
        freeze: modules to keep fixed (no gradients), by name or pattern, e.g.
            ``[model.init_nets.*, model.encoder]``.
    """

    def __init__(
        self,
        model: SaltModel,
        lrs_config: LRSConfig | None = None,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_config: SchedulerConfig | None = None,
        regularisers: list[Regulariser] | None = None,
        name: str = "salt",
        norm_dict: str | None = None,
        class_dict: str | None = None,
        variables: dict[str, list[str]] | None = None,
        input_map: dict[str, str] | None = None,
        global_object: str = "jets",
        muP_config: MuPConfig | None = None,
        init_weights: InitWeights | None = None,
        freeze: list[str] | None = None,
    ):
        super().__init__()
        self.model = model
        self.init_weights = init_weights
        self._selected_weights: dict[str, Tensor] | None = None
        self.muP_config = muP_config
        if muP_config is not None:
            from salt.mup import set_base_shapes

            set_base_shapes(self.model, muP_config)
        check_lrs_config(dict(lrs_config or {}))
        self.lrs_config: LRSConfig = {**DEFAULT_LRS, **(lrs_config or {})}
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.lr_scheduler_config = lr_scheduler_config
        self.regularisers = nn.ModuleList(regularisers or [])
        for regulariser in regularisers or []:
            regulariser.bind(model)
        self.name = name
        self.normaliser: Normaliser | None = None
        input_map = input_map or {}

        def dataset(name: str) -> str:
            key = global_object if name in SPECIAL_GROUPS else name
            return input_map.get(key, key)

        apply_class_dict(class_dict, model.tasks, dataset)
        if norm_dict is not None and variables is not None:
            from salt.data.datamodule import canonical_variables

            canonical = canonical_variables(variables)
            self.normaliser = Normaliser(
                load_norm_dict(norm_dict),
                canonical,
                {n: dataset(n) for n in canonical},
                source=f"data.norm_dict '{norm_dict}'",
            )
        if freeze:
            freeze_modules(self, list(freeze))

    def check_init_weights(self) -> None:
        """Read and check ``init_weights`` now (before the run directory is written)."""
        if self.init_weights is not None and self._selected_weights is None:
            self._selected_weights = select_weights(self.init_weights, self)

    def setup(self, stage: str) -> None:
        # before a resumed checkpoint is restored, so --ckpt_path still wins
        if stage == "fit" and self.init_weights is not None:
            self.check_init_weights()
            assert self._selected_weights is not None
            load_selected(self, self._selected_weights, f"'{self.init_weights.path}'")
            self._selected_weights = None

    def label_fields(self) -> LabelFields:
        """The fields the tasks and regularisers need from the data layer, per input type."""
        return merge_label_fields(
            self.model.label_fields(), *(r.label_fields() for r in self._regularisers())
        )

    def _regularisers(self) -> list[Regulariser]:
        return list(self.regularisers)  # type: ignore[arg-type]  # ModuleList of Regularisers

    def forward(
        self,
        inputs: dict[str, Tensor],
        pad_masks: dict[str, Tensor],
        labels: dict[str, dict[str, Tensor]] | None = None,
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        raw = inputs
        if self.normaliser is not None:
            inputs = self.normaliser(inputs, pad_masks)
        return self.model(inputs, pad_masks, labels, raw_inputs=raw)

    def _shared_step(
        self, batch: Batch, stage: str
    ) -> tuple[dict[str, Tensor], Tensor, dict[str, Tensor]]:
        """Outputs, the weighted total loss and every term of it (detached), by name."""
        inputs, pad_masks, labels = batch
        outputs, losses = self(inputs, pad_masks, labels)
        terms = {name: loss.detach() for name, loss in losses.items()}
        weights = {task.name: task.weight for task in self.model.tasks}
        total = sum(weights[name] * loss for name, loss in losses.items())
        batch_size = next(iter(inputs.values())).shape[0]
        sync = stage != "train"
        for regulariser in self.regularisers:
            value = regulariser(outputs, labels)
            total = total + regulariser.strength * value
            terms[regulariser.name] = value.detach()
            self.log(f"{stage}/{regulariser.name}", value, batch_size=batch_size, sync_dist=sync)
        for name, loss in losses.items():
            self.log(f"{stage}/{name}_loss", loss, batch_size=batch_size, sync_dist=sync)
        self.log(f"{stage}/loss", total, prog_bar=True, batch_size=batch_size, sync_dist=sync)
        return outputs, total, terms  # type: ignore[return-value]

    def training_step(self, batch: Batch, batch_idx: int) -> StepOutput:
        _, total, terms = self._shared_step(batch, "train")
        return {"loss": total, "task_losses": terms}

    def validation_step(self, batch: Batch, batch_idx: int) -> Tensor:
        outputs, total, _ = self._shared_step(batch, "val")
        self._log_accuracy(batch, outputs, "val")
        return total

    def test_step(self, batch: Batch, batch_idx: int) -> dict[str, Any]:
        return self.predict_step(batch, batch_idx)

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Any]:
        """Outputs without losses (``salt predict`` files may have no truth labels); the labels
        the batch has (carried jet fields) are passed through for the predictions file."""
        inputs, pad_masks, labels = batch
        outputs, _ = self(inputs, pad_masks, None)
        return {"outputs": outputs, "pad_masks": pad_masks, "labels": labels}

    def _log_accuracy(self, batch: Batch, outputs: dict[str, Tensor], stage: str) -> None:
        _, _, labels = batch
        for task in jet_classifications(self.model.tasks, self.model.global_object):
            target = task.targets(labels)
            keep = target >= 0
            correct = (outputs[task.name].argmax(-1) == target) & keep
            accuracy = correct.sum() / keep.sum().clamp(min=1)
            self.log(
                f"{stage}/{task.name}_accuracy",
                accuracy,
                batch_size=target.shape[0],
                sync_dist=True,
            )

    def configure_optimizers(self) -> Any:
        optimizer_factory, scheduler_factory = self.optimizer_factory, self.scheduler_factory
        if self.muP_config is not None:  # muP learning rates, per width multiplier
            from salt.mup import mup_factories

            optimizer_factory, scheduler_factory = mup_factories(
                self.lrs_config,
                optimizer_factory,
                scheduler_factory,
                self.lr_scheduler_config,
                self.trainer,
            )
        return configure_optimization(
            self.model,
            self.lrs_config,
            optimizer_factory,
            scheduler_factory,
            self.lr_scheduler_config,
            self.trainer,
        )
