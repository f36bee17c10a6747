"""``salt fit|validate|test|predict``: LightningCLI with derived sizes, run directory, outputs."""

from __future__ import annotations

import logging
import os
import sys
from argparse import ArgumentError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from salt.class_paths import check_command_line
from salt.cli.errors import one_line, suggest, unknown_keys
from salt.cli.loggers import run_dir_loggers, without_credentials
from salt.cli.run_dir import (
    RUN_DIR_ENV,
    best_checkpoint,
    check_free,
    check_resumable,
    copy_into,
    run_dir_name,
    update_metadata,
    write_metadata,
)
from salt.cli.wiring import derive_config
from salt.data.datamodule import SaltDataModule
from salt.data.paths import resolve_files
from salt.redact import redact_yaml
from salt.s3.cli import S3Session, prepare_s3
from salt.tasks.classification import ClassificationTask
from salt.training.module import SaltModule
from salt.utils.files import atomic_write_text

log = logging.getLogger(__name__)

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

    def __init__(self, args: list[str] | None = None, run: bool = True):
        base = {
            "default_config_files": [str(BASE_CONFIG)],
            "exit_on_error": False,
            "allow_abbrev": False,  # --trainer.max_epoch must not silently mean max_epochs
        }
        super().__init__(
            model_class=SaltModule,
            datamodule_class=SaltDataModule,
            save_config_callback=None,
            auto_configure_optimizers=False,
            parser_kwargs={
                "exit_on_error": False,
                "allow_abbrev": False,
                **{sub: dict(base) for sub in SUBCOMMANDS},
            },
            args=args,
            run=run,
        )

    # -- arguments --------------------------------------------------------------------------
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
            "--last_ckpt_every_n_steps",
            type=int,
            default=200,
            help="steps between writes of ckpts/last.ckpt (resume with --ckpt_path last)",
        )
        parser.add_argument(
            "--save_top_k",
            type=int,
            default=-1,
            help="keep the k checkpoints with the lowest val/loss (-1: every epoch's)",
        )
        parser.add_argument(
            "--log_train_memory",
            action="store_true",
            help="log host (and CUDA) memory during training (salt.callbacks.MemoryLogger)",
        )
        parser.add_class_arguments(EvaluationOptions, "evaluation")
        parser.link_arguments("name", "model.name")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then derive sizes; ``--print_config`` prints the *derived* config."""
        argv = list(sys.argv[1:] if args is None else args)
        printing = [a for a in argv if a.startswith("--print_config")]
        argv = [a for a in argv if not a.startswith("--print_config")]
        check_command_line(argv)  # class paths: allowed packages, declared kinds, nothing called
        try:
            super().parse_arguments(parser, argv)
        except ArgumentError as err:
            raise ArgumentError(None, self._with_suggestion(str(err), argv)) from None
        subcommand = self.config.get("subcommand")
        # S3 first (data downloads, s3:// run directory staged locally): derive reads the files
        self.s3 = prepare_s3(self._active_config(), subcommand or "fit", download=not printing)
        derive_config(
            self._active_config(),
            need_files=not printing,
            evaluating=subcommand in ("test", "predict"),
        )
        if subcommand is None:  # run=False: no subcommand, the config is the whole namespace
            return
        if printing:
            sub_parser = self._parser(subcommand)
            text = sub_parser.dump(self.config[subcommand], skip_none=False)
            print(redact_yaml(text), end="")  # keys given in a config are never shown
            sys.exit(0)

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
        if subcommand in ("fit", None):
            self._prepare_run_dir(cfg)
        else:
            cfg.trainer.logger = False
        cfg.trainer.plugins = [
            Namespace(
                class_path="salt.callbacks.checkpoint_io.AtomicCheckpointIO",
                init_args=Namespace(),
            )
        ]

    def _prepare_run_dir(self, cfg: Namespace) -> None:
        root = Path(cfg.trainer.default_root_dir or "logs")
        check_resumable(root, cfg.get("ckpt_path"))
        # processes started by the DDP launcher reuse the run directory chosen by rank 0; with
        # srun/torchrun every process starts salt itself and only global rank 0 checks the name
        rank_env = ("RANK", "SLURM_PROCID", "LOCAL_RANK")
        global_rank = next((int(os.environ[k]) for k in rank_env if k in os.environ), 0)
        is_child = global_rank > 0
        inherited = os.environ.get(RUN_DIR_ENV) if is_child else None
        ckpt_path = cfg.get("ckpt_path")
        self.resuming = bool(ckpt_path) and (root / "metadata.yaml").is_file()
        if inherited:
            run_dir = Path(inherited)
        elif self.resuming:  # salt fit --config <run>/config.yaml --ckpt_path last
            run_dir = root
        else:
            run_dir = root / run_dir_name(cfg.name, cfg.log_suffix)
            if not is_child:
                check_free(run_dir, cfg.force or cfg.overwrite)
                if self.s3 is not None:
                    self.s3.check_free(run_dir, cfg.force or cfg.overwrite)
        os.environ[RUN_DIR_ENV] = str(run_dir)
        self.run_dir = run_dir
        cfg.trainer.default_root_dir = str(run_dir)
        self.user_loggers = cfg.trainer.logger
        cfg.trainer.logger = run_dir_loggers(cfg.trainer.logger, run_dir)
        callbacks = [
            c
            for c in (cfg.trainer.callbacks or [])
            if not str(getattr(c, "class_path", "")).endswith(
                ("ModelCheckpoint", "PreemptionCheckpoint", "NaNLossGuard")
            )
        ]
        callbacks.append(
            Namespace(
                class_path="lightning.pytorch.callbacks.ModelCheckpoint",
                init_args=Namespace(
                    dirpath=str(run_dir / "ckpts"),
                    filename="epoch={epoch:03d}-val_loss={val/loss:.5f}",
                    auto_insert_metric_name=False,
                    monitor="val/loss",
                    save_top_k=cfg.save_top_k,
                    save_last=False,
                ),
            )
        )
        callbacks.append(  # periodic last.ckpt, so a killed job loses at most N steps
            Namespace(
                class_path="lightning.pytorch.callbacks.ModelCheckpoint",
                init_args=Namespace(
                    dirpath=str(run_dir / "ckpts"),
                    save_top_k=0,
                    save_last=True,
                    every_n_train_steps=cfg.last_ckpt_every_n_steps,
                ),
            )
        )
        callbacks.append(
            Namespace(
                class_path="salt.callbacks.nan_guard.NaNLossGuard",
                init_args=Namespace(check_every_n_steps=20),
            )
        )
        callbacks.append(
            Namespace(
                class_path="salt.callbacks.preemption.PreemptionCheckpoint",
                init_args=Namespace(path=str(run_dir / "ckpts" / "last.ckpt")),
            )
        )
        if cfg.log_train_memory and not any(
            str(getattr(c, "class_path", "")).endswith("MemoryLogger") for c in callbacks
        ):
            callbacks.append(
                Namespace(
                    class_path="salt.callbacks.memory.MemoryLogger",
                    init_args=Namespace(every_n_steps=cfg.trainer.log_every_n_steps or 50),
                )
            )
        cfg.trainer.callbacks = callbacks

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        cfg = self._active_config()
        if self.config.get("subcommand") != "predict":  # predict: no losses, no truth labels
            self.datamodule.request_labels(self.model.label_fields())
        self._apply_class_dict(cfg)  # the class weights are part of the checkpoint

    def _apply_class_dict(self, cfg: Namespace) -> None:
        tasks = [t for t in self.model.model.tasks if getattr(t, "use_class_dict", False)]
        if not tasks:
            return
        path = cfg.data.class_dict
        if path is None:
            raise ValueError("a task has use_class_dict: true but data.class_dict is not set")
        if not Path(path).is_file():
            raise FileNotFoundError(f"data.class_dict: file '{path}' does not exist")
        try:
            content = yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError:
            raise ValueError(f"data.class_dict: '{path}' is not valid YAML") from None
        for task in tasks:
            dataset = self.datamodule.dataset_name(task.input_name)
            try:
                weights = content[dataset][task.label]
            except (KeyError, TypeError):
                raise KeyError(
                    f"data.class_dict '{path}': no weights for '{dataset}.{task.label}'"
                ) from None
            task.set_class_weights(list(weights))

    # -- fit --------------------------------------------------------------------------------
    def before_fit(self) -> None:
        cfg = self.config["fit"]
        if cfg.compile:
            # compiled in place: parameter names (and so checkpoints) stay those of the eager
            # model, so a compiled run's checkpoints load and evaluate like any other
            self.model.model.compile(backend=cfg.compile_backend)
        self._validate_inputs(cfg)
        if self.s3 is not None and (mirror := self.s3.callback(self.run_dir)) is not None:
            self.trainer.callbacks.append(mirror)  # uploads new checkpoints after every epoch
        if not self.trainer.is_global_zero:
            return
        run_dir = self.run_dir
        if self.resuming:
            update_metadata(run_dir / "metadata.yaml", status="running", resumed=cfg.ckpt_path)
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        saved = cfg.clone()
        norm_copy = copy_into(run_dir, cfg.data.norm_dict)
        class_copy = copy_into(run_dir, cfg.data.class_dict)
        saved.data.norm_dict = str(norm_copy.resolve()) if norm_copy else None
        saved.data.class_dict = str(class_copy.resolve()) if class_copy else None
        for split in ("train", "val", "test"):
            spec = getattr(saved.data, f"{split}_file")
            if spec is not None:
                saved.data[f"{split}_file"] = _absolute(spec)
        muP_config = saved.model.get("muP_config")
        if muP_config:  # the run directory carries its base shapes, by absolute path
            from salt.mup.config import storeshapes_path

            shapes = run_dir / "muP"
            shapes.mkdir(exist_ok=True)
            copy_into(shapes, storeshapes_path(muP_config))
            saved.model.muP_config = {**muP_config, "shape_path": str(shapes.resolve())}
        saved.force = saved.overwrite = False
        saved.ckpt_path = None
        saved.trainer.plugins = None
        saved.trainer.logger = without_credentials(self.user_loggers)
        if self.s3 is not None:  # s3:// URLs instead of local copies, keys as placeholders
            self.s3.restore_saved(saved)
        text = self._parser("fit").dump(saved, skip_none=False, skip_link_targets=True)
        text = redact_yaml(text)
        atomic_write_text(run_dir / "config.yaml", text)
        rows = {s: d.num_rows for s, d in self.datamodule.datasets.items()}
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        write_metadata(
            run_dir / "metadata.yaml",
            {
                "name": cfg.name,
                "run_dir": str(run_dir.resolve()),
                "status": "running",
                "data": {
                    f"{s}_file": _absolute(getattr(cfg.data, f"{s}_file"))
                    for s in ("train", "val", "test")
                },
                "num_rows": rows,
                "trainable_parameters": int(trainable),
            },
        )

    def _validate_inputs(self, cfg: Namespace) -> None:
        """Check files, fields and label ranges before anything is written or trained, so a
        mistake (even in the test file) costs seconds, not a night."""
        self.model.check_init_weights()
        self.datamodule.setup("fit")
        if cfg.data.test_file is not None:
            self.datamodule.build_dataset("test")
        for task in self.model.model.tasks:
            if isinstance(task, ClassificationTask):
                values = self.datamodule.label_values(task.input_name, task.label)
                task.check_label_values(values, f"data.train_file ({task.input_name})")

    def after_fit(self) -> None:
        if self.trainer.is_global_zero:
            status = "interrupted" if self.trainer.interrupted else "finished"
            update_metadata(self.run_dir / "metadata.yaml", status=status)
            if self.s3 is not None:
                self.s3.mirror(self.run_dir)

    # -- test -------------------------------------------------------------------------------
    def before_test(self) -> None:
        self._add_prediction_writer("test")

    def before_predict(self) -> None:
        """``salt predict``: the predictions file of ``salt test`` for a file without labels
        (``<ckpt>__predict_<sample>.h5``, jet fields of ``evaluation.jet_fields`` it has)."""
        self._add_prediction_writer("predict")
        self.config_init["predict"]["return_predictions"] = False  # streamed to the file

    def _add_prediction_writer(self, subcommand: str) -> None:
        from salt.callbacks.prediction_writer import PredictionWriter

        cfg = self.config[subcommand]
        run_dir = Path(cfg.trainer.default_root_dir or ".")
        ckpt = Path(cfg.ckpt_path) if cfg.ckpt_path else best_checkpoint(run_dir / "ckpts")
        if not ckpt.is_file():
            raise FileNotFoundError(f"ckpt_path: file '{ckpt}' does not exist")
        self.config_init[subcommand]["ckpt_path"] = str(ckpt)
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
        wanted = {global_object: list(cfg.evaluation.jet_fields)}
        for task in self.model.model.tasks if subcommand == "test" else []:
            for name, fields in task.label_fields().items():
                current = wanted.setdefault(name, [])
                current.extend(f for f in fields if f not in current)
        carried = {
            name: [f for f in fields if name in dtypes and f in (dtypes[name].names or ())]
            for name, fields in wanted.items()
        }
        self.datamodule.request_labels(carried)
        self.datamodule.datasets.clear()
        self.predictions_path = out
        self.trainer.callbacks.append(
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
        from salt.tasks.classification import ClassificationTask

        global_object = self.datamodule.global_object
        tasks = [
            t
            for t in self.model.model.tasks
            if isinstance(t, ClassificationTask) and t.input_name == global_object
        ]
        if not tasks:
            return
        task = tasks[0]
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
        )
        log.info("evaluation written to %s", out_dir)


def _absolute(spec: Any) -> Any:
    """A file spec with absolute paths (globs kept), group by group for ``{group: files}``."""
    if spec is None:
        return None
    if isinstance(spec, dict):
        return {name: _absolute(files) for name, files in spec.items()}
    if isinstance(spec, list | tuple):
        return [str(Path(s).resolve()) for s in spec]
    return str(Path(spec).resolve())
