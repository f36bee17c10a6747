"""``salt profile``: what a config's network costs per jet, and where a training step spends time.

    salt profile --config configs/GN2.yaml [--config more.yaml] [salt overrides]
        [--steps 5] [--wait 1] [--warmup 1] [--depth 3] [--batch_size B] [--out DIR] [--overwrite]

The model and data module are built exactly as ``salt fit`` builds them (same configs, overrides
and derived sizes). On the first training batch salt counts, per module, the trainable
parameters and the multiply-accumulates (MACs) per jet of one forward pass; then it runs
``wait + warmup + steps`` training steps (forward, loss, backward, optimizer) with Lightning and
records the last ``steps`` with ``torch.profiler``. Written into ``--out`` (default
``<trainer.default_root_dir>/profile_<name>_<timestamp>``):

- ``modules.json``: parameters and MACs per jet per module, totals, batch and constituent counts;
- ``summary.txt``: the module table and the operators sorted by self CPU time;
- ``trace.json``: a Chrome trace (chrome://tracing or https://ui.perfetto.dev).

MACs are FLOPs / 2 as counted by ``torch.utils.flop_counter.FlopCounterMode``: matrix products
(linear layers, attention, convolutions); element-wise work (norms, activations, softmax) is not
counted. The transformer encoder and the constituent heads compute on the real constituents
only (attention on a layout as long as the longest jet of the batch), so their MACs follow the
mean and largest number of valid constituents, reported alongside; networks without a packed
path count padded positions as they compute them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile, record_function, schedule
from torch.utils.flop_counter import FlopCounterMode

from salt.callbacks.nan_guard import NaNLossGuard
from salt.callbacks.preemption import PreemptionCheckpoint
from salt.cli.run_dir import check_free, run_dir_name
from salt.cli.salt_cli import Built, build
from salt.data.batch import Batch
from salt.utils.files import atomic_write_text
from salt.utils.modules import count_parameters

log = logging.getLogger(__name__)

PROG = "salt profile"
DEFAULT_DEPTH = 3


# -- options -------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        allow_abbrev=False,  # --st must not swallow a salt option
        description=(
            "Count the parameters and multiply-accumulates per jet of each module of a salt "
            "config's network and profile a few training steps. Other arguments (--config, "
            "--data.train_file=..., ...) go to salt's config parser, as for salt fit."
        ),
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=5,
        help="training steps recorded by the profiler (0: only count parameters and MACs)",
    )
    parser.add_argument("--wait", type=int, default=1, help="steps run before the profiler starts")
    parser.add_argument(
        "--warmup", type=int, default=1, help="steps the profiler runs but does not record"
    )
    parser.add_argument(
        "--depth",
        type=int,
        default=DEFAULT_DEPTH,
        help=f"module levels in the table: 3 shows model.encoder.layers (default {DEFAULT_DEPTH})",
    )
    parser.add_argument(
        "--batch_size", type=int, default=None, help="jets per batch (as --data.batch_size)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default <trainer.default_root_dir>/profile_<name>_<timestamp>)",
    )
    parser.add_argument(
        "--overwrite", "--force", action="store_true", help="write into an existing --out"
    )
    return parser


def split_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The profile options, and the arguments for salt's config parser (as for ``salt fit``)."""
    options, rest = _parser().parse_known_args(argv)
    for key in ("steps", "wait", "warmup"):
        if getattr(options, key) < 0:
            raise ValueError(f"--{key}: expected an int >= 0, got {getattr(options, key)}")
    if options.depth < 1:
        raise ValueError(f"--depth: expected an int >= 1, got {options.depth}")
    if options.batch_size is not None and options.batch_size < 1:
        raise ValueError(f"--batch_size: expected a positive int, got {options.batch_size}")
    if any(a.startswith("--print_config") for a in rest):
        raise ValueError("--print_config: see the config with salt fit ... --print_config")
    salt_args = [a for a in rest if a != "--debug"]
    if options.batch_size is not None:
        salt_args.append(f"--data.batch_size={options.batch_size}")
    return options, salt_args


# -- parameters and multiply-accumulates ---------------------------------------------------------
@dataclass
class ModuleCost:
    """One row of the table: a module's trainable parameters and MACs per jet (with children)."""

    name: str
    type: str
    parameters: int
    macs_per_jet: float
    forward_cpu_ms: float | None = None  # host time of its forward per step, when profiled


@dataclass
class CostReport:
    """Everything the table and ``modules.json`` show."""

    modules: list[ModuleCost]
    total: ModuleCost
    batch_size: int
    constituents: dict[str, dict[str, float]] = field(default_factory=dict)
    step_ms: float | None = None
    profiled_steps: int = 0
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """A fixed-width text table, one row per module, then the totals."""
        timed = self.step_ms is not None
        head = ["module", "type", "parameters", "MACs/jet", "share"]
        if timed:
            head.append("fwd ms/step")
        total_macs = self.total.macs_per_jet
        rows = []
        for row in [*self.modules, self.total]:
            level = row.name.count(".") if row is not self.total else 0
            share = row.macs_per_jet / total_macs if total_macs else 0.0
            cells = [
                "  " * level + row.name,
                row.type,
                f"{row.parameters:,}",
                f"{row.macs_per_jet:,.0f}",
                f"{100 * share:.1f}%",
            ]
            if timed:
                ms = row.forward_cpu_ms
                cells.append("" if ms is None else f"{ms:.2f}")
            rows.append(cells)
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

        def line(cells: list[str]) -> str:
            left = [c.ljust(w) for c, w in zip(cells[:2], widths[:2])]
            right = [c.rjust(w) for c, w in zip(cells[2:], widths[2:])]
            return "  ".join(left + right).rstrip()

        rule = "-" * len(line(head))
        body = [line(r) for r in rows[:-1]]
        notes = [f"batch of {self.batch_size} jets on {self.device}"]
        for name, counts in self.constituents.items():
            notes.append(
                f"{name}: {counts['mean_valid']:.1f} valid of {counts['padded_length']:.0f} "
                "padded (MACs count the padded positions)"
            )
        if timed:
            notes.append(
                f"training step: {self.step_ms:.2f} ms (mean of {self.profiled_steps} profiled "
                "steps: data, forward, backward, optimizer)"
            )
            notes.append("fwd ms/step: host time of each module's forward in a training step")
        return "\n".join([line(head), rule, *body, rule, line(rows[-1]), "", *notes])


def count_macs(module: nn.Module, forward: Callable[[], object]) -> dict[str, float]:
    """Multiply-accumulates of ``forward()`` per submodule name of ``module`` ("" = all of it).

    Attention runs through the math kernel while counting: torch's counter has no formula for
    the fused CPU kernel, and the math kernel does the same two matrix products per head.
    """
    root = type(module).__name__
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        forward()
    called: dict[str, float] = {}
    for key, ops in counter.get_flop_counts().items():
        if key.startswith(f"{root}."):
            called[key[len(root) + 1 :]] = sum(ops.values()) / 2

    def total(name: str, sub: nn.Module) -> float:
        # containers (ModuleList, ModuleDict) are never called: their children's sum
        if name in called:
            return called[name]
        prefix = f"{name}." if name else ""
        return sum(total(prefix + child, m) for child, m in sub.named_children())

    macs = {name: total(name, sub) for name, sub in module.named_modules() if name}
    macs[""] = counter.get_total_flops() / 2
    return macs


def named_modules(module: nn.Module, depth: int) -> Iterator[tuple[str, nn.Module]]:
    """Submodules down to ``depth`` levels below ``module`` (``model.encoder`` is level 2)."""
    for name, sub in module.named_modules():
        if name and name.count(".") < depth:
            yield name, sub


def module_costs(
    module: nn.Module, forward: Callable[[], object], batch_size: int, depth: int = DEFAULT_DEPTH
) -> CostReport:
    """Parameters and MACs per jet of ``module`` and its submodules for one ``forward()`` call
    on a batch of ``batch_size`` jets; modules with neither are left out."""
    macs = count_macs(module, forward)
    rows = []
    for name, sub in named_modules(module, depth):
        cost = ModuleCost(name, type(sub).__name__, count_parameters(sub), macs.get(name, 0.0))
        if cost.parameters or cost.macs_per_jet:
            cost.macs_per_jet /= batch_size
            rows.append(cost)
    total = ModuleCost(
        "total", type(module).__name__, count_parameters(module), macs[""] / batch_size
    )
    return CostReport(rows, total, batch_size)


def constituent_counts(pad_masks: dict[str, Tensor]) -> dict[str, dict[str, float]]:
    """Padded length, mean and largest number of valid (not padded) constituents per type."""
    return {
        name: {
            "padded_length": float(mask.shape[1]),
            "mean_valid": float((~mask).sum(dim=1).float().mean()),
            "max_valid": float((~mask).sum(dim=1).max()) if mask.shape[0] else 0.0,
        }
        for name, mask in pad_masks.items()
    }


def batch_costs(module: nn.Module, batch: Batch, depth: int = DEFAULT_DEPTH) -> CostReport:
    """The costs of a salt module's inference forward pass on one training batch."""
    inputs, pad_masks, _ = batch
    batch_size = next(iter(inputs.values())).shape[0]
    training = module.training
    module.eval()
    try:
        with torch.no_grad():
            report = module_costs(module, lambda: module(inputs, pad_masks), batch_size, depth)
    finally:
        module.train(training)
    report.constituents = constituent_counts(pad_masks)
    return report


# -- building as salt fit does -------------------------------------------------------------------
@dataclass
class Profiled:
    """What ``salt profile`` works on: the objects ``salt fit`` would build, with a trainer that
    runs only the profiled steps (no validation, checkpoints, logger or callbacks)."""

    built: Built
    options: argparse.Namespace
    out_dir: Path

    @property
    def model(self) -> Any:
        return self.built.module

    @property
    def datamodule(self) -> Any:
        return self.built.datamodule

    @property
    def trainer(self) -> L.Trainer:
        return self.built.trainer

    @property
    def config(self) -> Namespace:
        return self.built.config


# what every fit adds (checkpoints, NaN guard, pre-emption): not part of a profile
RUN_CALLBACKS = (ModelCheckpoint, NaNLossGuard, PreemptionCheckpoint)


def trainer_args(options: argparse.Namespace) -> list[str]:
    """The trainer settings of a profile: exactly the profiled steps, nothing else."""
    steps = max(options.wait + options.warmup + options.steps, 1)
    return [
        "--trainer.logger=false",
        "--trainer.callbacks=[]",
        "--trainer.profiler=null",
        "--trainer.enable_model_summary=false",
        "--trainer.enable_progress_bar=false",
        f"--trainer.max_steps={steps}",
        "--trainer.max_epochs=-1",
        "--trainer.min_epochs=null",
        "--trainer.min_steps=null",
        "--trainer.max_time=null",
        "--trainer.limit_val_batches=0",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.val_check_interval=null",
        "--trainer.devices=1",
        "--trainer.num_nodes=1",
        "--trainer.strategy=auto",
    ]


def build_profile(salt_args: list[str], options: argparse.Namespace) -> Profiled:
    """Build as ``salt fit`` would from ``salt_args``, with the trainer of a profile."""
    built = build([], "fit", [*salt_args, *trainer_args(options)])
    trainer: Any = built.trainer
    trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, RUN_CALLBACKS)]
    return Profiled(built, options, output_dir(built.config, options.out, options.overwrite))


def output_dir(cfg: Namespace, out: Path | None, overwrite: bool) -> Path:
    """``--out``, or ``<default_root_dir>/profile_<name>_<timestamp>``; refused when it exists
    with files in it, unless ``overwrite``."""
    if out is None:
        root = Path(cfg.trainer.default_root_dir or "logs")
        path = root / run_dir_name(f"profile_{cfg.name}", cfg.log_suffix)
        check_free(path, overwrite)
        return path
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out: '{out}' exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"--out: '{out}' already exists; pass --overwrite to write into it")
    return out


# -- the torch profiler over training steps ------------------------------------------------------
@contextmanager
def module_ranges(module: nn.Module, depth: int) -> Iterator[None]:
    """Label each submodule's forward (down to ``depth``) in the profile with its name."""
    handles = []
    for name, sub in named_modules(module, depth):
        open_ranges: list[record_function] = []

        def enter(_m: nn.Module, _a: Any, name: str = name, stack: list = open_ranges) -> None:
            rf = record_function(name)
            rf.__enter__()
            stack.append(rf)

        def leave(_m: nn.Module, _a: Any, _o: Any, stack: list = open_ranges) -> None:
            if stack:
                stack.pop().__exit__(None, None, None)

        handles += [sub.register_forward_pre_hook(enter), sub.register_forward_hook(leave)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class StepProfiler(L.Callback):
    """Advance a ``torch.profiler.profile`` once per training batch and keep its results."""

    def __init__(self, activities: list[ProfilerActivity], wait: int, warmup: int, steps: int):
        super().__init__()
        self.results: Any = None
        self.profiler = profile(
            activities=activities,
            schedule=schedule(wait=wait, warmup=warmup, active=steps, repeat=1),
            on_trace_ready=self._keep,
            record_shapes=True,
        )

    def _keep(self, prof: profile) -> None:
        self.results = prof

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.profiler.start()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        self.profiler.step()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.profiler.stop()


def profile_training(cli: Profiled, report: CostReport, depth: int) -> str:
    """Run the training steps under the profiler; fill the report's times, write ``trace.json``
    and return the operator table (sorted by self CPU time)."""
    options, trainer, module = cli.options, cli.trainer, cli.model
    on_gpu = trainer.strategy.root_device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    report.device = str(trainer.strategy.root_device)
    callback = StepProfiler(activities, options.wait, options.warmup, options.steps)
    trainer.callbacks.append(callback)  # type: ignore[attr-defined]
    compiled = bool(cli.config.get("compile"))
    if compiled:  # as salt fit --compile; module labels would break the compiled graph
        module.model.compile(backend=cli.config.compile_backend)
    with module_ranges(module, 0 if compiled else depth):
        trainer.fit(module, datamodule=cli.datamodule)
    prof = callback.results
    if prof is None:
        raise ValueError(
            f"the profiler recorded no step: training stopped after {trainer.global_step} steps "
            f"of the {trainer.max_steps} asked (--wait + --warmup + --steps)"
        )
    trace = cli.out_dir / "trace.json"
    tmp = trace.with_name(".trace.json.tmp")
    prof.export_chrome_trace(str(tmp))
    os.replace(tmp, trace)
    averages = prof.key_averages()
    by_name = {event.key: event for event in averages}
    for row in report.modules:
        if row.name in by_name:
            row.forward_cpu_ms = by_name[row.name].cpu_time_total / 1000 / options.steps
    steps = by_name.get("ProfilerStep*")  # one range per step, from step() to step()
    if steps is not None and steps.count:
        report.step_ms = steps.cpu_time_total / steps.count / 1000
        report.profiled_steps = steps.count
    table = averages.table(sort_by="self_cpu_time_total", row_limit=-1)
    if on_gpu:  # the host runs ahead of the device: what the GPU itself spends
        table += "\n\nBy self device time:\n"
        table += averages.table(sort_by="self_device_time_total", row_limit=30)
    return table


# -- the command ---------------------------------------------------------------------------------
def first_batch(cli: Profiled) -> Batch:
    """The first batch of the training loader, as the first training step sees it."""
    datamodule = cli.datamodule
    datamodule.setup("fit")
    try:
        return next(iter(datamodule.train_dataloader()))
    except StopIteration:
        raise ValueError("data.train_file: no training batch (is data.num_train 0?)") from None


def run(argv: list[str]) -> CostReport:
    """Parse ``argv``, count, profile, print the table and write the outputs. Errors propagate."""
    from salt.s3.cli import localize_config_args

    options, salt_args = split_args(argv)
    cli = build_profile(localize_config_args(salt_args), options)
    report = batch_costs(cli.model, first_batch(cli), options.depth)
    out = cli.out_dir
    out.mkdir(parents=True, exist_ok=True)
    operators = profile_training(cli, report, options.depth) if options.steps else ""
    written = ["modules.json", "summary.txt"] + (["trace.json"] if options.steps else [])
    if not options.steps:  # no trace of an earlier profile beside the new counts
        (out / "trace.json").unlink(missing_ok=True)
    table = report.table()
    header = f"{cli.config.name}: {' '.join(argv)}"
    summary = f"{header}\n\n{table}\n"
    if operators:
        summary += f"\nOperators, {report.profiled_steps} training steps:\n{operators}\n"
    atomic_write_text(out / "summary.txt", summary)
    document = {"name": cli.config.name, "depth": options.depth, **report.to_dict()}
    atomic_write_text(out / "modules.json", json.dumps(document, indent=2) + "\n")
    print(table)
    log.info("%s written to %s", ", ".join(written), out)
    return report


def profile_main(argv: list[str]) -> int:
    """``salt profile``: 0 on success, 2 (one line on stderr) on a user error."""
    from salt.cli.errors import run_cli

    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    return run_cli(lambda: run(argv), argv)


__all__ = [
    "CostReport",
    "ModuleCost",
    "batch_costs",
    "count_macs",
    "count_parameters",
    "module_costs",
    "profile_main",
    "run",
    "split_args",
]
