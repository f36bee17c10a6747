"""``salt <subcommand> --help`` that shows what applies to that subcommand.

Every subcommand parses the same config (``salt test --config <run>/config.yaml`` reads what
``salt fit`` saved), so nothing is removed from the parser: options that do nothing for a
subcommand are only hidden from its help, as are the model keys salt copies from ``data``.
"""

from __future__ import annotations

import argparse
from typing import Any

# what only training uses: optimisation, schedule, checkpoints, the training data
TRAINING_ONLY = (
    "model.optimizer",
    "model.lr_scheduler",
    "model.lrs_config",
    "model.lr_scheduler_config",
    "model.init_weights",
    "model.freeze",
    "trainer.max_epochs",
    "trainer.min_epochs",
    "trainer.max_steps",
    "trainer.min_steps",
    "trainer.max_time",
    "trainer.limit_train_batches",
    "trainer.overfit_batches",
    "trainer.val_check_interval",
    "trainer.check_val_every_n_epoch",
    "trainer.num_sanity_val_steps",
    "trainer.log_every_n_steps",
    "trainer.enable_checkpointing",
    "trainer.enable_model_summary",
    "trainer.accumulate_grad_batches",
    "trainer.gradient_clip_val",
    "trainer.gradient_clip_algorithm",
    "trainer.reload_dataloaders_every_n_epochs",
    "trainer.detect_anomaly",
    "trainer.logger",
    "checkpoint",
    "last_checkpoint",
    "nan_guard",
    "preemption",
    "log_suffix",
    "log_train_memory",
    "compile",
    "compile_backend",
    "data.train_file",
    "data.num_train",
    "data.sample_weights",
    "data.weight_field",
    "seed_everything",
)
# what only evaluation uses
EVALUATION_ONLY = (
    "evaluation",
    "test_suffix",
    "data.test_file",
    "data.num_test",
    "trainer.limit_test_batches",
    "trainer.limit_predict_batches",
)
VALIDATION = ("data.val_file", "data.num_val", "trainer.limit_val_batches")
LOSSES = ("model.regularisers",)
# filled in by salt from the data section: never the user's to set
DERIVED = (
    "model.norm_dict",
    "model.class_dict",
    "model.variables",
    "model.input_map",
    "model.global_object",
)

HIDDEN: dict[str, tuple[str, ...]] = {
    "fit": (*DERIVED, "trainer.limit_predict_batches", "test_suffix"),
    "validate": (*DERIVED, *TRAINING_ONLY, *EVALUATION_ONLY, "force", "overwrite"),
    "test": (*DERIVED, *TRAINING_ONLY, *VALIDATION, *LOSSES),
    "predict": (*DERIVED, *TRAINING_ONLY, *VALIDATION, *LOSSES, "trainer.limit_test_batches"),
}

USAGE = "salt {subcommand} --config CONFIG [--config CONFIG ...] [options]"

# salt's meaning of the Trainer-method options (Lightning's text describes its Python API)
CKPT_PATH_HELP = {
    "fit": "checkpoint to resume from; 'last' with --config <run>/config.yaml: its last.ckpt",
    "validate": "checkpoint to validate (default: the run's lowest validation loss)",
    "test": "checkpoint to evaluate (default: the run's lowest validation loss)",
    "predict": "checkpoint to run (default: the run's lowest validation loss)",
}
ALWAYS_HIDDEN = ("weights_only",)  # salt loads checkpoints with weights only and an allow-list
TRAINER_TITLE = "trainer (Lightning's Trainer; devices, precision, strategy, ...)"


def _hidden(dest: str, prefixes: tuple[str, ...]) -> bool:
    return any(dest == p or dest.startswith(p + ".") for p in prefixes)


def focus_help(parser: Any, subcommand: str, description: str | None = None) -> None:
    """Hide from ``parser``'s help the options ``subcommand`` does not use, shorten its usage
    line (the full one lists every option) and set its one-line description."""
    prefixes = (*HIDDEN.get(subcommand, ()), *ALWAYS_HIDDEN)
    for action in parser._actions:
        dest = str(action.dest)
        if dest.endswith(".help"):  # --model.optimizer.help: follows its option
            dest = dest[: -len(".help")]
        if _hidden(dest, prefixes):
            action.help = argparse.SUPPRESS
        elif dest == "ckpt_path" and subcommand in CKPT_PATH_HELP:
            action.help = CKPT_PATH_HELP[subcommand]
    for group in parser._action_groups:
        actions = group._group_actions
        if actions and all(a.help == argparse.SUPPRESS for a in actions):
            group.title = argparse.SUPPRESS
            group.description = argparse.SUPPRESS
        elif any(a.dest == "ckpt_path" for a in actions):
            group.title = f"salt {subcommand}"
        elif any(str(a.dest).startswith("trainer.") for a in actions):
            group.title = TRAINER_TITLE
    parser.usage = USAGE.format(subcommand=subcommand)
    if description is not None:
        parser.description = description
