"""A quiet console for ``salt fit|validate|test|predict``: third-party chatter is filtered where it
is emitted, so what is left is salt's progress bar, salt's log lines and warnings that ask the
user to act.

Nothing here imports torch or Lightning: the filters are installed by name before either is
imported, so they hold from the first line a command prints.
"""

from __future__ import annotations

import logging
import os
import re
import warnings

# Lightning info lines that advertise, state the obvious on the machine at hand, or repeat what
# salt reports itself (the run summary, the checkpoint tested)
LIGHTNING_NOISE = (
    "💡 Tip",  # litlogger / litmodels adverts
    "Seed set to",
    "GPU available:",
    "TPU available:",
    "HPU available:",
    "Loading `train_dataloader` to estimate number of stepping batches",
    "`Trainer.fit` stopped:",  # the run summary says how many epochs ran
    "Restoring states from the checkpoint path at",  # followed by Lightning's "Loaded/Restored"
    "Trainer already configured with model summary callbacks",  # salt's summary replaces it
)

# Python warnings raised inside third-party code that the user can do nothing about
WARNING_NOISE = (
    # Lightning's pytree helper on newer torch (its own deprecated call)
    r".*isinstance\(treespec, LeafSpec\)",
    # salt's datasets know their length exactly: each worker reads disjoint blocks
    r".*Your `IterableDataset` has `__len__` defined",
    # salt's CSV log keeps its history on resume; a new run directory holds only salt's files
    r".*Experiment logs directory .* exists and is not empty",
    r".*Checkpoint directory .* exists and is not empty",
    # a moved run: salt finds its checkpoints in its new place (the run's config.yaml)
    r".*The dirpath has changed from",
    # a short fit or a small file: the metrics are still written every epoch
    r".*is smaller than the logging interval",
    # salt loads checkpoints with weights_only=True and an allow-list of its own
    r".*weights_only",
    # salt strips its own flags (--debug) before handing the rest to LightningCLI
    r".*LightningCLI's args parameter",
)

# where Lightning and lightning_utilities emit rank-zero info lines
_LIGHTNING_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning.fabric.utilities.seed",
    "lightning_utilities.core.rank_zero",
    "lightning.pytorch",
    "lightning.fabric",
)

# Comet's console: errors only (its summary table and warnings about import order, git and the
# machine's IP are not the user's business); salt logs where the experiment or archive is
COMET_CONSOLE_ENV = "COMET_LOGGING_CONSOLE"
VERBOSE_ENV = "SALT_VERBOSE"


class DropMessages(logging.Filter):
    """Drops log records whose message starts with (or contains) one of ``fragments``."""

    def __init__(self, fragments: tuple[str, ...]):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record is not ours to hide
            return True
        return not any(fragment in message for fragment in self.fragments)


_FILTER = DropMessages(LIGHTNING_NOISE)


def quiet_third_party() -> None:
    """Install the filters (idempotent): call it before Lightning is imported and again after
    (Lightning attaches its console handler on import; records of its child loggers reach that
    handler without passing their parents' filters). ``SALT_VERBOSE=1`` leaves every line."""
    if os.environ.get(VERBOSE_ENV, "") not in ("", "0", "false"):
        return
    os.environ.setdefault(COMET_CONSOLE_ENV, "ERROR")
    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for target in (logger, *logger.handlers):
            if _FILTER not in target.filters:
                target.addFilter(_FILTER)
    for pattern in WARNING_NOISE:
        warnings.filterwarnings("ignore", message=pattern)


def is_noise(line: str) -> bool:
    """Whether a console line is one that :func:`quiet_third_party` exists to remove (used by
    the tests to check a real run's output)."""
    return any(f in line for f in LIGHTNING_NOISE) or any(re.match(p, line) for p in WARNING_NOISE)
