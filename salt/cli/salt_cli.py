"""``salt fit|validate|test|predict``: the LightningCLI that assembles a run.

It coordinates; the work lives elsewhere: :mod:`salt.cli.wiring` derives the sizes a config
leaves out, :mod:`salt.cli.run_dir` names and protects the run directory,
:class:`~salt.cli.save_run.SaveRunDirectory` writes it, the checkpoint, NaN-guard and
pre-emption callbacks are config sections of their own (``checkpoint:``, ``last_checkpoint:``,
``nan_guard:``, ``preemption:``), and the model applies the class dict and names the label
fields the data module reads. :func:`build` gives the objects of a config without running.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from argparse import ArgumentError
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentParser, Namespace
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from salt.callbacks.checkpoint import (
    EpochCheckpoint,
    LastCheckpoint,
    RunPreemptionCheckpoint,
    run_ckpt_dir,
)
from salt.callbacks.nan_guard import NaNLossGuard
from salt.class_paths import check_command_line
from salt.cli.errors import config_files, one_line, suggest, unknown_keys
from salt.cli.loggers import run_dir_loggers
from salt.cli.run_dir import (
    RUN_DIR_ENV,
    best_checkpoint,
    check_resumable,
    choose_run_dir,
    release_claims,
)
from salt.cli.save_run import RUN_DIR_PATHS, SaveRunDirectory
from salt.cli.wiring import derive_config
from salt.data.datamodule import SaltDataModule
from salt.data.paths import not_a_file, resolve_files
from salt.errors import ConfigError, UserError
from salt.redact import redact_yaml
from salt.s3.cli import S3Session, prepare_s3
from salt.safe_load import validate_checkpoint
from salt.tasks.classification import ClassificationTask
from salt.training.module import SaltModule
from salt.utils.label_fields import merge_label_fields

log = logging.getLogger(__name__)

# flags of earlier versions, now options of the callbacks' own config sections
RENAMED_FLAGS = {
    "--save_top_k": "--checkpoint.save_top_k",
    "--last_ckpt_every_n_steps": "--last_checkpoint.every_n_train_steps",
}


def renamed_flags(argv: list[str]) -> list[str]:
    """``--save_top_k 3`` -> ``--checkpoint.save_top_k 3`` (and the ``=`` forms)."""
    out = []
    for arg in argv:
        flag, sep, value = arg.partition("=")
        out.append(RENAMED_FLAGS.get(flag, flag) + sep + value if flag in RENAMED_FLAGS else arg)
    return out


BASE_CONFIG = Path(__file__).parents[1] / "configs" / "base.yaml"
SUBCOMMANDS = ("fit", "validate", "test", "predict")


@dataclass
class EvaluationOptions:
    """What ``salt test`` writes and measures.

    Args:
        fc: c-jet fraction in the b-tagging discriminant.
        jet_fields: jet fields copied from the test file into the predictions file (those
            missing from the file are skipped); the tasks' labels are always added.
        working_points: b-jet efficiencies at which rejections are reported.
        run_evaluation: compute metrics.json and plots after writing the predictions.
        write_constituents: also write constituent-level outputs (e.g. track origin
            probabilities, vertex indices) with the tasks' truth labels.
    """

    fc: float = 0.2
    jet_fields: list[str] = field(
        default_factory=lambda: ["pt", "eta", "HadronConeExclTruthLabelID", "flavour_label"]
    )
    working_points: list[float] = field(default_factory=lambda: [0.60, 0.70, 0.77, 0.85])
    run_evaluation: bool = True
    write_constituents: bool = False


class SaltCLI(LightningCLI):
    """LightningCLI with derived sizes, a protected run directory and salt's test outputs."""

    s3: S3Session | None = None  # set by parse_arguments when the config involves S3

    def __init__(
        self,
        args: list[str] | None = None,
        run: bool = True,
        build_for: str = "fit",
        instantiate: bool = True,
    ):
        """``run=False`` builds without running (see :func:`build`): the config is read as for
        ``salt <build_for>``, nothing is written, and with ``instantiate=False`` nothing is
        built either (the derived config only)."""
        base = {
            "default_config_files": [str(BASE_CONFIG)],
            "exit_on_error": False,
            "allow_abbrev": False,  # --trainer.max_epoch must not silently mean max_epochs
        }
        self.build_for = build_for
        self.instantiate = instantiate
        given = list(args) if isinstance(args, (list, tuple)) else sys.argv[1:]
        self.requested = given[0] if run and given and given[0] in SUBCOMMANDS else None
        self.building = not run
        try:
            super().__init__(
                model_class=SaltModule,
                datamodule_class=SaltDataModule,
                save_config_callback=SaveRunDirectory,
                auto_configure_optimizers=False,
                # without a subcommand the main parser is the only one: it gets the defaults
                parser_kwargs=(
                    {
                        "exit_on_error": False,
                        "allow_abbrev": False,
                        **{sub: dict(base) for sub in SUBCOMMANDS},
                    }
                    if run
                    else dict(base)
                ),
                args=args,
                run=run,
            )
        finally:
            if run:
                release_claims()  # the run directory is written (or the command failed)

    @property
    def subcommand_name(self) -> str:
        """The subcommand run, or the one a build (``run=False``) reads the config for."""
        return str(self.config.get("subcommand") or self.build_for)

    # -- arguments --------------------------------------------------------------------------
    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        """Only the parser of the subcommand asked for: each one costs about a second to build
        (every class signature of the trainer and the model), paid on every command."""
        if self.requested is None:
            super()._add_subcommands(parser, **kwargs)
            return
        every = type(self).subcommands()
        only = {self.requested: every[self.requested]}
        self.subcommands = lambda: only  # type: ignore[method-assign]
        try:
            super()._add_subcommands(parser, **kwargs)
        finally:
            del self.subcommands

    def _prepare_subcommand_parser(
        self, klass: type, subcommand: str, **kwargs: Any
    ) -> LightningArgumentParser:
        """The subcommand's parser, its help limited to the options that apply to it."""
        from salt.cli.help import focus_help
        from salt.cli.main import LIGHTNING_SUBCOMMANDS

        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        focus_help(parser, subcommand, LIGHTNING_SUBCOMMANDS.get(subcommand))
        return parser

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("-n", "--name", default="salt", help="run and tagger name")
        parser.add_argument("--force", action="store_true", help="reuse an existing run dir")
        parser.add_argument("--overwrite", action="store_true", help="same as --force")
        parser.add_argument("--compile", action="store_true", help="torch.compile the network")
        parser.add_argument(
            "--compile_backend", default="inductor", help="torch.compile backend for --compile"
        )
        parser.add_argument("--log_suffix", default=None, help="run dir suffix (not a timestamp)")
        parser.add_argument("--test_suffix", default=None, help="sample name in output files")
        parser.add_argument(
            "--log_train_memory",
            action="store_true",
            help="log host (and CUDA) memory during training (salt.callbacks.MemoryLogger)",
        )
        # the callbacks every run has, as config sections (shown by --print_config)
        parser.add_lightning_class_args(EpochCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        parser.add_lightning_class_args(NaNLossGuard, "nan_guard")
        parser.add_lightning_class_args(RunPreemptionCheckpoint, "preemption")
        parser.add_class_arguments(EvaluationOptions, "evaluation")
        if self.building:  # the arguments of Trainer.<subcommand> (ckpt_path, ...), as saved
            subcommand = self.build_for if self.build_for in SUBCOMMANDS else "fit"
            skip = set(self.subcommands()[subcommand])
            parser.add_method_arguments(self.trainer_class, subcommand, skip=skip)
        parser.link_arguments("name", "model.name")

    def _parse_ckpt_path(self) -> None:
        """Lightning reads hyperparameters from ``--ckpt_path`` here with a bare ``torch.load``;
        salt's checkpoints carry none (the run's config.yaml does), so the file is only checked,
        by salt's loader: a broken or crafted checkpoint is one line naming it."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and Path(ckpt_path).is_file():
            validate_checkpoint(ckpt_path)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then derive sizes; ``--print_config`` prints the *derived* config."""
        argv = renamed_flags(list(sys.argv[1:] if args is None else args))
        printing = [a for a in argv if a.startswith("--print_config")]
        argv = [a for a in argv if not a.startswith("--print_config")]
        check_command_line(argv)  # class paths: allowed packages, declared kinds, nothing called
        self.argv = argv
        try:
            super().parse_arguments(parser, argv)
        except ArgumentError as err:
            raise ArgumentError(None, self._with_suggestion(str(err), argv)) from None
        subcommand = self.config.get("subcommand")
        if subcommand is not None:
            self._locate_run(self._active_config())
        self.derive(self._active_config(), need_files=not printing)
        if subcommand is None:  # run=False: no subcommand, the config is the whole namespace
            return
        if printing:
            sub_parser = self._parser(subcommand)
            text = sub_parser.dump(self.config[subcommand], skip_none=False)
            print(redact_yaml(text), end="")  # keys given in a config are never shown
            sys.exit(0)

    def derive(self, cfg: Namespace, need_files: bool = True) -> None:
        """Everything that completes the parsed config: S3 first (data downloads, an s3:// run
        directory staged locally), since deriving sizes and class names reads the files."""
        self.s3 = prepare_s3(cfg, self.subcommand_name, download=need_files)
        derive_config(
            cfg, need_files=need_files, evaluating=self.subcommand_name in ("test", "predict")
        )

    def _callbacks(self) -> list[Any]:
        """The trainer's callback list, to add to once the trainer exists."""
        return self.trainer.callbacks  # type: ignore[attr-defined,no-any-return]

    def _active_config(self) -> Namespace:
        subcommand = self.config.get("subcommand")
        return self.config[subcommand] if subcommand else self.config

    def _with_suggestion(self, message: str, argv: list[str]) -> str:
        subcommand = next((a for a in argv if a in SUBCOMMANDS), None)
        if subcommand is None:
            return message
        known = [a.dest for a in self._parser(subcommand)._actions]
        for key in unknown_keys(message):
            match = suggest(key, known)
            if match:
                return f"{one_line(ArgumentError(None, message))} (did you mean '{match}'?)"
        return message

    # -- before building --------------------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        subcommand = self.config.get("subcommand")
        cfg = self._active_config()
        check_trainer_values(cfg.trainer)
        if subcommand == "fit":
            self._prepare_run_dir(cfg)
        else:  # salt test/validate/predict, and builds: no run directory, no loggers
            cfg.trainer.logger = False
            self.save_config_callback = None
        cfg.trainer.plugins = [
            Namespace(
                class_path="salt.callbacks.checkpoint_io.AtomicCheckpointIO",
                init_args=Namespace(),
            )
        ]

    def _locate_run(self, cfg: Namespace) -> None:
        """A run's own ``config.yaml`` finds its run wherever salt is started and wherever the
        run was moved: its directory (the one holding ``metadata.yaml``) is the run, whatever
        ``default_root_dir`` it saved (older runs saved it relative to where they started)."""
        if any(a.startswith("--trainer.default_root_dir") for a in self.argv):
            return
        saved = Path(cfg.trainer.default_root_dir or "")
        for given in reversed(config_files(self.argv)):
            run = given.resolve().parent
            if (
                given.name == "config.yaml"
                and saved.name == run.name  # the config this run saved, not another one
                and (run / "metadata.yaml").is_file()
            ):
                cfg.trainer.default_root_dir = str(run)
                if saved.is_absolute() and saved != run:  # moved: its own files moved with it
                    self._follow_moved_run(cfg, saved, run)
                return

    @staticmethod
    def _follow_moved_run(cfg: Namespace, old: Path, new: Path) -> None:
        """Point the files a run keeps (norm and class dicts, muP shapes) at its new place."""

        def moved(value: Any) -> Any:
            if isinstance(value, str) and Path(value).is_relative_to(old):
                return str(new / Path(value).relative_to(old))
            return value

        for key in ("norm_dict", "class_dict"):
            cfg.data[key] = moved(cfg.data.get(key))
        mup = cfg.model.get("muP_config") if "model" in cfg else None
        if isinstance(mup, dict) and "shape_path" in mup:
            mup["shape_path"] = moved(mup["shape_path"])

    def _prepare_run_dir(self, cfg: Namespace) -> None:
        """Choose the run directory and point the loggers and checkpoints into it."""
        # absolute, so that the saved config finds the run from any working directory
        root = Path(cfg.trainer.default_root_dir or "logs").absolute()
        if cfg.trainer.max_epochs == 0 and not cfg.get("ckpt_path"):
            raise ConfigError(
                "trainer.max_epochs=0: a fit of 0 epochs trains nothing and leaves a run without "
                "checkpoints; give 1 or more (or -1 with trainer.max_steps)"
            )
        check_resumable(root, cfg.get("ckpt_path"))
        if cfg.get("ckpt_path") not in (None, "last", "best", "hpc", "registry"):
            try:  # before the run directory and its loggers
                validate_checkpoint(cfg.ckpt_path)
            except (OSError, UserError) as err:
                raise type(err)(f"--ckpt_path: {err}") from None
        resuming = bool(cfg.get("ckpt_path")) and (root / "metadata.yaml").is_file()
        force = bool(cfg.force or cfg.overwrite)
        run_dir, checked = choose_run_dir(root, cfg.name, cfg.log_suffix, resuming, force)
        if checked and self.s3 is not None:
            self.s3.check_free(run_dir, force)
        os.environ[RUN_DIR_ENV] = str(run_dir)
        self.run_dir = run_dir
        cfg.trainer.default_root_dir = str(run_dir)
        user_loggers = cfg.trainer.logger
        cfg.trainer.logger = run_dir_loggers(user_loggers, run_dir)
        derived = []
        for section, key in RUN_DIR_PATHS:
            if cfg[section][key] is None:  # --ckpt_path last looks there before setup
                cfg[section][key] = str(run_ckpt_dir(run_dir))
                derived.append((section, key))
        if cfg.log_train_memory:
            self._add_memory_logger(cfg)
        self.save_config_kwargs = {
            "run_dir": run_dir,
            "resuming": resuming,
            "user_loggers": user_loggers,
            "derived": tuple(derived),
            "s3": self.s3,
        }

    @staticmethod
    def _add_memory_logger(cfg: Namespace) -> None:
        callbacks = list(cfg.trainer.callbacks or [])
        if not any(str(getattr(c, "class_path", "")).endswith("MemoryLogger") for c in callbacks):
            callbacks.append(
                Namespace(
                    class_path="salt.callbacks.memory.MemoryLogger",
                    init_args=Namespace(every_n_steps=cfg.trainer.log_every_n_steps or 50),
                )
            )
        cfg.trainer.callbacks = callbacks

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Trainer:
        """Lightning's trainer with salt's console: progress bar, model summary, run summary."""
        from salt.callbacks.progress import console_callbacks

        fitting = self.subcommand_name == "fit" and not self.building
        return super()._instantiate_trainer(
            config, [*callbacks, *console_callbacks(config, fitting)]
        )

    def instantiate_classes(self) -> None:
        if not self.instantiate:
            return
        super().instantiate_classes()
        if self.subcommand_name != "predict":  # predict: no losses, no truth labels
            self.datamodule.read_labels_of(self.model)

    # -- fit --------------------------------------------------------------------------------
    def _run_subcommand(self, subcommand: str) -> None:
        """Lightning's subcommand, with the Ctrl-C handling of a fit given back afterwards
        (salt may run in-process, e.g. under pytest)."""
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGINT) if main_thread else None
        try:
            super()._run_subcommand(subcommand)
        finally:
            if main_thread and previous is not None:
                signal.signal(signal.SIGINT, previous)

    def before_fit(self) -> None:
        cfg = self.config["fit"]
        ctrl_c_stops_like_preemption()
        if cfg.compile:
            # compiled in place: parameter names (and so checkpoints) stay those of the eager
            # model, so a compiled run's checkpoints load and evaluate like any other
            self.model.model.compile(backend=cfg.compile_backend)
        self._validate_inputs(cfg)
        if self.s3 is not None and (mirror := self.s3.callback(self.run_dir)) is not None:
            self._callbacks().append(mirror)  # uploads new checkpoints after every epoch

    def _validate_inputs(self, cfg: Namespace) -> None:
        """Check files, fields and label ranges before anything is written or trained, so a
        mistake (even in the test file) costs seconds, not a night."""
        self.model.check_init_weights()
        self.datamodule.setup("fit")
        if cfg.data.test_file is not None:
            self.datamodule.build_dataset("test")
        splits = [s for s in ("train", "val") if self.datamodule.files.get(s) is not None]
        for task in self.model.model.tasks:
            if isinstance(task, ClassificationTask):
                for split in splits:  # a bad validation label fails the first validation
                    values = self.datamodule.label_values(task.input_name, task.label, split=split)
                    task.check_label_values(values, f"data.{split}_file ({task.input_name})")

    def after_fit(self) -> None:
        from salt.callbacks.run_summary import log_fit_summary

        if self.trainer.is_global_zero and self.s3 is not None:
            self.s3.mirror(self.run_dir)
        log_fit_summary(self.trainer)  # last: run directory, best checkpoint, speed

    # -- test -------------------------------------------------------------------------------
    def before_test(self) -> None:
        self._add_prediction_writer("test")

    def before_predict(self) -> None:
        """``salt predict``: the predictions file of ``salt test`` for a file without labels
        (``<ckpt>__predict_<sample>.h5``, jet fields of ``evaluation.jet_fields`` it has)."""
        if not any(a.startswith("--data.num_test") for a in self.argv):
            # a file to predict is predicted whole: the run's num_test cap is for its test file
            self.datamodule.num_rows["test"] = -1
        self._add_prediction_writer("predict")
        self.config_init["predict"]["return_predictions"] = False  # streamed to the file

    def _add_prediction_writer(self, subcommand: str) -> None:
        from salt.callbacks.prediction_writer import PredictionWriter

        cfg = self.config[subcommand]
        run_dir = Path(cfg.trainer.default_root_dir or ".")
        ckpt = Path(cfg.ckpt_path) if cfg.ckpt_path else best_checkpoint(run_dir / "ckpts")
        if not ckpt.is_file():
            raise FileNotFoundError(f"ckpt_path: file '{ckpt}' {not_a_file(ckpt)}")
        self.config_init[subcommand]["ckpt_path"] = str(ckpt)
        if cfg.test_suffix and ("/" in cfg.test_suffix or cfg.test_suffix in (".", "..")):
            raise ConfigError(
                f"--test_suffix '{cfg.test_suffix}': expected a name for the predictions file "
                "(no '/' and not '..')"
            )
        sample = cfg.test_suffix or resolve_files(cfg.data.test_file, "test_file")[0].stem
        out = ckpt.parent / f"{ckpt.stem}__{subcommand}_{sample}.h5"
        if out.exists() and not (cfg.overwrite or cfg.force):
            raise FileExistsError(
                f"predictions file '{out}' exists; pass --overwrite to replace it"
            )
        self.datamodule.setup("test")
        dataset = self.datamodule.datasets["test"]
        global_object = self.datamodule.global_object
        dtypes = {
            name: dataset.source.dtype(self.datamodule.dataset_name(name))
            for name in [global_object, *self.datamodule.constituent_names]
        }
        tasks = self.model.model.tasks if subcommand == "test" else []
        wanted = merge_label_fields(
            {global_object: cfg.evaluation.jet_fields}, *(t.label_fields() for t in tasks)
        )
        carried = {
            name: [f for f in fields if name in dtypes and f in (dtypes[name].names or ())]
            for name, fields in wanted.items()
        }
        self.datamodule.request_labels(carried)
        self.datamodule.datasets.clear()
        self.predictions_path = out
        self._callbacks().append(
            PredictionWriter(
                out,
                self.model.name,
                carried,
                {n: {f: d[f] for f in (d.names or ())} for n, d in dtypes.items()},
                {n: self.datamodule.dataset_name(n) for n in dtypes},
                global_object,
                write_constituents=cfg.evaluation.write_constituents,
            )
        )
        self.ckpt = ckpt
        self.sample = sample

    def after_test(self) -> None:
        self._evaluate()
        if self.s3 is not None and self.trainer.is_global_zero:
            self.s3.mirror(Path(self.config["test"].trainer.default_root_dir or "."))

    def _evaluate(self) -> None:
        cfg = self.config["test"]
        if not self.trainer.is_global_zero or not cfg.evaluation.run_evaluation:
            return
        from salt.evaluation.evaluate import evaluate_predictions
        from salt.tasks.classification import main_task

        task = main_task(list(self.model.model.tasks), self.datamodule.global_object)
        if task is None:
            return
        run_dir = Path(cfg.trainer.default_root_dir or ".")
        out_dir = run_dir / "evaluation" / f"{self.ckpt.stem}__test_{self.sample}"
        evaluate_predictions(
            self.predictions_path,
            out_dir,
            tagger=self.model.name,
            class_names=task.class_names,
            label_field=task.label,
            fc=cfg.evaluation.fc,
            working_points=tuple(cfg.evaluation.working_points),
            test_file=resolve_files(cfg.data.test_file, "test_file")[0],
            overwrite=bool(cfg.overwrite or cfg.force),
        )  # logs the working-point table and the files it wrote


def ctrl_c_stops_like_preemption() -> None:
    """Ctrl-C during a fit stops it as a pre-emption does (``last.ckpt`` at the step it
    reached, ``status: interrupted``, resumable with ``--ckpt_path last``); a second Ctrl-C
    aborts at once. Lightning's own handling writes no checkpoint and leaves ``running``."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return  # ignored (a background job) or handled by the caller

    def stop(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        log.warning("Ctrl-C: stopping after this step (press Ctrl-C again to abort at once)")
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)


# trainer options Lightning accepts but divides by, or silently ignores, when out of range:
# key -> (smallest allowed value, whether the smallest is allowed itself, what is expected)
_TRAINER_BOUNDS = {
    "accumulate_grad_batches": (1, True, "a whole number of batches, 1 or more"),
    "val_check_interval": (0, False, "a positive fraction of an epoch or number of batches"),
    "check_val_every_n_epoch": (1, True, "a whole number of epochs, 1 or more"),
    "log_every_n_steps": (1, True, "a whole number of steps, 1 or more"),
    "gradient_clip_val": (0, True, "0 or more (0 or null: no clipping)"),
    "limit_train_batches": (0, False, "a positive fraction or number of batches"),
    "limit_val_batches": (0, True, "0 or more"),
}


def check_trainer_values(trainer: Namespace) -> None:
    """Name a trainer option whose value Lightning would divide by (a ZeroDivisionError deep
    in its loops) or silently misuse (a negative gradient clip)."""
    for key, (low, inclusive, expected) in _TRAINER_BOUNDS.items():
        value = trainer.get(key)
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if value < low or (value == low and not inclusive):
            raise ConfigError(f"trainer.{key}: expected {expected}, got {value}")


@dataclass
class Built:
    """The objects of a run, as ``salt <subcommand>`` would build them (nothing run or written)."""

    module: SaltModule
    datamodule: SaltDataModule
    config: Namespace
    trainer: Trainer


def config_args(configs: Sequence[str | Path]) -> list[str]:
    """``--config a.yaml --config b.yaml`` for a list of files."""
    return [arg for path in configs for arg in ("--config", str(path))]


def build(
    configs: Sequence[str | Path], subcommand: str = "fit", args: Sequence[str] = ()
) -> Built:
    """Parse ``configs`` (merged in order, then ``args`` such as ``--data.num_train=10``) as
    ``salt <subcommand>`` does, derive the sizes and build module, data module and trainer.

    The one way the tools (``to_onnx``, ``salt profile``, ``setup_muP``, ...) read a config, so
    they see exactly what ``salt fit``/``salt test`` would.
    """
    cli = SaltCLI(args=[*config_args(configs), *args], run=False, build_for=subcommand)
    return Built(cli.model, cli.datamodule, cli.config, cli.trainer)


def read_config(
    configs: Sequence[str | Path], subcommand: str = "fit", args: Sequence[str] = ()
) -> Namespace:
    """The derived config of ``configs`` as ``salt <subcommand>`` reads it, without building
    anything (for tools that need only the data section, such as ``calculate_quantiles``)."""
    cli = SaltCLI(
        args=[*config_args(configs), *args], run=False, build_for=subcommand, instantiate=False
    )
    return cli.config


def read_data_config(configs: Sequence[str | Path]) -> dict[str, Any]:
    """The ``data`` section of ``configs`` merged and validated as ``salt fit`` does (packaged
    defaults first), for tools that read only the data; the other sections are not read."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--config", action="config")
    parser.add_class_arguments(SaltDataModule, "data")
    for action in parser._actions:  # what fit requires beyond the data read here (val_file)
        if action.dest.startswith("data.") and action.required:
            action.required = False
    args: list[str] = []
    for path in [BASE_CONFIG, *configs]:
        if not Path(path).is_file():
            raise FileNotFoundError(f"--config: file '{path}' does not exist")
        content = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(content, dict):
            raise ConfigError(f"--config: '{path}' is not a mapping of config sections")
        if content.get("data") is not None:
            args += ["--config", yaml.safe_dump({"data": content["data"]})]
    return parser.parse_args(args).data.as_dict()
