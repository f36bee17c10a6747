"""Read a salt-ml config as this project's config: the renames, unwraps and checks in one place.

salt-ml and salt share most of their config language (``SaltModel``, ``init_nets``,
``ClassificationTask``, ``data.variables`` ...), but differ in a few forms: tasks wrapped in a
``torch.nn.ModuleList``, ``mup`` spelled in lower case, class weights as lists, salt-ml's own
callbacks and logger, and a handful of data options. :func:`translate_config` rewrites those
forms on the loaded YAML before it is parsed, records every change for the user, and stops with
one line naming the option and what to write instead where there is no equivalent. Configs in
this project's own syntax come back unchanged.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from salt.compat.module_graph import is_module_graph, translate_module_graph

_TORCH_LOSSES = {
    "torch.nn.CrossEntropyLoss": "salt.compat.losses.CrossEntropyLoss",
    "torch.nn.BCEWithLogitsLoss": "salt.compat.losses.BCEWithLogitsLoss",
}
_LIST_WEIGHTS = ("weight", "pos_weight")
# the FTAG track-origin classes (the values 0..7 of ftagTruthOriginLabel), which training files
# do not name in an attribute; salt-ml configs give only their number (output_size: 8)
TRACK_ORIGIN_CLASSES = [
    "Pileup",
    "Fake",
    "Primary",
    "FromB",
    "FromBC",
    "FromC",
    "FromTau",
    "OtherSecondary",
]
_ORIGIN_LABELS = ("ftagTruthOriginLabel", "truthOriginLabel", "GN2_TrackOrigin")
_LIGHTNING_COMET = (
    "lightning.pytorch.loggers.CometLogger",
    "lightning.pytorch.loggers.comet.CometLogger",
    "pytorch_lightning.loggers.CometLogger",
    "CometLogger",
)
_DROPPED_DATA = {
    "prefetch_factor": "salt's loader reads whole chunks in background threads",
    "move_files_temp": "salt streams from the files where they are",
    "multiprocessing_context": "salt's loader reads in threads",
}
_RENAMED_DATA = {
    "parameters": "PARAMETERS",
    "config_s3": "config_S3",
    "num_jets_train": "num_train",
    "num_jets_val": "num_val",
    "num_jets_test": "num_test",
    "nan_to_num": "non_finite_to_num",
}
_REFUSED_DATA = {
    "input_names": "name the variables by their dataset (data.variables: {tracks: [...]}) and "
    "rename with data.input_map",
    "concat_jet_tracks": "jet variables are appended to every constituent by default "
    "(init net attach_global)",
    "train_vds_path": "give the files to data.train_file (globs and lists are accepted)",
    "val_vds_path": "give the files to data.val_file (globs and lists are accepted)",
    "test_vds_path": "give the files to data.test_file (globs and lists are accepted)",
    "test_suff": "pass --test_suffix to salt test",
}
_EDGE_ENCODERS = ("salt.models.Transformer", "salt.models.TransformerV2")
_OUR_EDGE_ENCODERS = (
    "salt.models.EdgeTransformerEncoder",
    "salt.models.edge_updates.EdgeTransformerEncoder",
)


@dataclass
class Translation:
    """A config in this project's syntax and what was changed to get there."""

    config: dict[str, Any]
    changes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def _args(node: Any) -> dict[str, Any] | None:
    """The init_args of a class_path block (or the block itself when it has none)."""
    if not isinstance(node, dict):
        return None
    if "class_path" in node or "init_args" in node:  # init_args alone: a config fragment
        args = node.get("init_args")
        return args if isinstance(args, dict) else None
    return node


def _constituent_width(net_args: dict[str, Any]) -> int | None:
    """The width of the encoded constituents as the config states it, if it does."""
    encoder = _args(net_args.get("encoder")) or {}
    for key in ("out_dim", "embed_dim"):
        if isinstance(encoder.get(key), int):
            return int(encoder[key])
    for init_net in net_args.get("init_nets") or []:
        config = (_args(init_net) or {}).get("dense_config") or {}
        if isinstance(config.get("output_size"), int):
            return int(config["output_size"])
    return None


def _class(node: Any) -> str:
    return str(node.get("class_path", "")) if isinstance(node, dict) else ""


class _Rewriter:
    def __init__(self, source: str) -> None:
        self.source = source
        self.changes: list[str] = []

    def note(self, where: str, what: str) -> None:
        self.changes.append(f"{where}: {what}")

    def refuse(self, where: str, what: str) -> ValueError:
        return ValueError(f"{self.source}: {where} {what}")

    # -- model ---------------------------------------------------------------------------
    def module(self, model: dict[str, Any]) -> None:
        optimizer = model.get("optimizer")
        if isinstance(optimizer, str):
            if optimizer.lower() != "adamw":
                raise self.refuse(
                    "model.optimizer",
                    f"'{optimizer}' (by name): give the optimizer by class_path with its own "
                    "schedule, e.g. {class_path: pytorch_optimizer.Lion} (see "
                    "configs/toolbox/optimizer_lion.yaml)",
                )
            model.pop("optimizer")
            self.note("model.optimizer", "AdamW removed (salt's default, with lrs_config)")
        if "mup_config" in model:
            model["muP_config"] = model.pop("mup_config")
            self.note("model.mup_config", "renamed to model.muP_config")
        lrs = model.get("lrs_config")
        if isinstance(lrs, dict) and "last_epoch" in lrs:
            last = lrs.pop("last_epoch")
            if last not in (-1, None):
                raise self.refuse(
                    "model.lrs_config.last_epoch",
                    f"={last}: salt resumes the schedule from a checkpoint; remove it and "
                    "pass --ckpt_path",
                )
            self.note("model.lrs_config.last_epoch", "removed (-1: the schedule starts fresh)")
        net = model.get("model")
        if isinstance(net, dict):
            self.network(net)

    def network(self, net: dict[str, Any]) -> None:
        where = "model.model"
        if _class(net) == "salt.models.JetTagger":
            raise self.refuse(
                f"{where}.class_path",
                "salt.models.JetTagger: write salt.models.SaltModel (with encoder: instead of "
                "gnn:, init_nets as a list of {input_name, dense_config})",
            )
        args = _args(net)
        if args is None:
            return
        for i, config in enumerate(args.get("featurewise_nets") or []):
            self.featurewise(config, f"{where}.featurewise_nets[{i}]")
        if "gnn" in args:
            args["encoder"] = args.pop("gnn")
            self.note(f"{where}.gnn", "renamed to encoder")
        for key in ("init_nets", "tasks"):
            if isinstance(args.get(key), dict):
                args[key] = self.unwrap(args[key], f"{where}.{key}")
        for i, init_net in enumerate(args.get("init_nets") or []):
            self.init_net(init_net, f"{where}.init_nets[{i}]")
        encoder = args.get("encoder")
        if isinstance(encoder, dict):
            self.encoder(encoder, f"{where}.encoder")
        width = _constituent_width(args)
        for i, task in enumerate(args.get("tasks") or []):
            self.task(task, f"{where}.tasks[{i}]", width)

    def unwrap(self, node: dict[str, Any], where: str) -> list[Any]:
        if _class(node) not in ("torch.nn.ModuleList", "ModuleList"):
            raise self.refuse(where, "expected a list (or a torch.nn.ModuleList block)")
        modules = (node.get("init_args") or {}).get("modules")
        if not isinstance(modules, list):
            raise self.refuse(f"{where}.init_args.modules", "expected a list")
        self.note(where, "torch.nn.ModuleList unwrapped to a plain list")
        return modules

    def dense(self, config: Any, where: str) -> None:
        if isinstance(config, dict) and "mup" in config:
            config["muP"] = config.pop("mup")
            self.note(f"{where}.mup", "renamed to muP")

    def init_net(self, init_net: Any, where: str) -> None:
        if not isinstance(init_net, dict):
            return
        if "net" in init_net or "net" in (_args(init_net) or {}):
            raise self.refuse(
                where, "write an init net as {input_name: tracks, dense_config: {...}}"
            )
        args = _args(init_net) or {}
        self.dense(args.get("dense_config"), f"{where}.dense_config")

    def featurewise(self, config: Any, where: str) -> None:
        """salt-ml's feature-wise nets are salt's; only the ``mup`` spelling differs."""
        if not isinstance(config, dict):
            raise self.refuse(where, "expected {layer: ..., dense_config_scale: {...}, ...}")
        if config.pop("variables", None) is not None:
            self.note(f"{where}.variables", "removed (salt sets the condition's size)")
        for key in ("dense_config_scale", "dense_config_bias"):
            self.dense(config.get(key), f"{where}.{key}")

    def encoder(self, encoder: dict[str, Any], where: str) -> None:
        args = _args(encoder) or {}
        if _class(encoder) == "salt.models.TransformerEncoder":
            if "mup" in args:
                args["muP"] = args.pop("mup")
                self.note(f"{where}.mup", "renamed to muP")
            self.dense(args.get("dense_config"), f"{where}.dense_config")
            mha = args.get("mha_config")
            out_proj = mha.get("out_proj") if isinstance(mha, dict) else None
            if (
                isinstance(mha, dict)
                and isinstance(out_proj, int)
                and not isinstance(out_proj, bool)
            ):
                mha["out_proj"] = bool(out_proj)
                self.note(
                    f"{where}.mha_config.out_proj",
                    f"{out_proj} read as {bool(out_proj)} (the projection maps back to "
                    "embed_dim for the residual)",
                )
        for key in ("edge_embed_dim", "update_edges"):
            if args.get(key) and _class(encoder) not in (*_EDGE_ENCODERS, *_OUR_EDGE_ENCODERS):
                raise self.refuse(
                    f"{where}.{key}",
                    f"is read only by {' and '.join(_EDGE_ENCODERS)}; use salt.models."
                    "EdgeTransformerEncoder with model.model.init_args.edge_features",
                )

    def task(self, task: Any, where: str, width: int | None = None) -> None:
        args = _args(task)
        if args is None:
            return
        name = args.get("name", "?")
        where = f"{where} ({name})"
        if "input_type" in args or "net" in args:
            raise self.refuse(
                where, "write input_name: (not input_type:) and dense_config: (not net:)"
            )
        config = args.get("dense_config")
        self.dense(config, f"{where}.dense_config")
        if (
            _class(task).endswith("ClassificationTask")
            and not args.get("class_names")
            and args.get("label") in _ORIGIN_LABELS
            and isinstance(config, dict)
            and config.get("output_size") == len(TRACK_ORIGIN_CLASSES)
        ):
            args["class_names"] = list(TRACK_ORIGIN_CLASSES)
            self.note(f"{where}.class_names", "set to the 8 FTAG track-origin classes")
        if _class(task).endswith("VertexingTask") and isinstance(config, dict):
            size = config.get("input_size")
            if isinstance(size, int) and width is not None and size == 2 * width:
                # salt-ml states the pair width (2 x constituent width); salt the constituent's
                config["input_size"] = size // 2
                self.note(
                    f"{where}.dense_config.input_size",
                    f"{size} (pair width) read as {size // 2} (constituent width)",
                )
        loss = args.get("loss")
        loss_args = _args(loss) if isinstance(loss, dict) else None
        if (
            isinstance(loss, dict)
            and _class(loss) not in _TORCH_LOSSES.values()
            and loss_args
            and any(isinstance(loss_args.get(k), list) for k in _LIST_WEIGHTS)
        ):
            target = _TORCH_LOSSES.get(_class(loss))
            if target is None:
                raise self.refuse(
                    f"{where}.loss",
                    f"{_class(loss)} with a list weight: use torch.nn.CrossEntropyLoss or "
                    "torch.nn.BCEWithLogitsLoss (or salt's class dict, use_class_dict: true)",
                )
            loss["class_path"] = target
            self.note(f"{where}.loss", f"class weights as a list: {target}")

    # -- edges ----------------------------------------------------------------------------
    def edges(self, root: dict[str, Any]) -> None:
        """salt-ml's pair features (``data.edge_constructors`` computes them, the model's
        ``edge_init_nets`` embeds them for an encoder with ``edge_embed_dim``) as one
        ``model.model.edge_features`` block (salt.models.EdgeFeatures)."""
        data = root.get("data") if isinstance(root.get("data"), dict) else {}
        net = (
            (root.get("model") or {}).get("model") if isinstance(root.get("model"), dict) else None
        )
        args = _args(net) or {}
        constructors = data.pop("edge_constructors", None) if data else None
        init_nets = args.pop("edge_init_nets", None)
        if isinstance(init_nets, dict):
            init_nets = self.unwrap(init_nets, "model.model.edge_init_nets")
        encoder = _args(args.get("encoder")) or {}
        edge_dim = int(encoder.get("edge_embed_dim") or 0)
        if not constructors and not init_nets:
            if edge_dim:
                raise self.refuse(
                    "model.model.encoder.edge_embed_dim",
                    "needs pair features: give data.edge_constructors and "
                    "model.model.edge_init_nets (or model.model.edge_features)",
                )
            return
        where = "data.edge_constructors"
        constructor = constructors[0] if isinstance(constructors, list) else None
        if (
            len(constructors or []) != 1
            or not isinstance(constructor, dict)
            or not isinstance(constructor.get("input_name"), str)
            or not isinstance(constructor.get("edge_features"), list)
        ):
            raise self.refuse(where, "expected one {input_name, edge_features: [...]} entry")
        if not init_nets:
            self.note(where, "removed (without edge_init_nets salt-ml's model does not use it)")
            return
        if not edge_dim:
            raise self.refuse(
                "model.model.edge_init_nets",
                "needs an encoder with edge_embed_dim (salt.models.Transformer)",
            )
        if len(init_nets) != 1 or not isinstance(init_nets[0], dict):
            raise self.refuse("model.model.edge_init_nets", "expected one init net")
        embed = _args(init_nets[0]) or {}
        dense = embed.get("dense_config") or {}
        name = constructor.get("input_name")
        if embed.get("input_name", name) not in (name, f"_edge_features_{name}"):
            raise self.refuse(
                "model.model.edge_init_nets[0].input_name",
                f"{embed.get('input_name')!r}: expected the constructor's input {name!r}",
            )
        if dense.get("output_size", edge_dim) != edge_dim:
            raise self.refuse(
                "model.model.edge_init_nets[0].dense_config.output_size",
                f"is {dense['output_size']} but the encoder's edge_embed_dim is {edge_dim}",
            )
        edge_args: dict[str, Any] = {
            "features": list(constructor.get("edge_features") or []),
            "input_name": name,
            "num_heads": edge_dim,
            "hidden_layers": [int(h) for h in dense.get("hidden_layers") or []],
        }
        if dense.get("activation"):
            edge_args["activation"] = dense["activation"]
        if "edge_features" in args:
            raise self.refuse("model.model.edge_features", "and data.edge_constructors both given")
        args["edge_features"] = {"class_path": "salt.models.EdgeFeatures", "init_args": edge_args}
        self.note(
            "data.edge_constructors, model.model.edge_init_nets",
            f"-> model.model.edge_features (salt.models.EdgeFeatures, width {edge_dim})",
        )

    # -- data and trainer ------------------------------------------------------------------
    def data(self, data: dict[str, Any]) -> None:
        for key, reason in _DROPPED_DATA.items():
            if key in data:
                data.pop(key)
                self.note(f"data.{key}", f"removed ({reason})")
        for old, new in _RENAMED_DATA.items():
            if old in data:
                if new in data:
                    raise self.refuse(f"data.{old}", f"and data.{new} both given; keep {new}")
                data[new] = data.pop(old)
                self.note(f"data.{old}", f"renamed to data.{new}")
        for key, instead in _REFUSED_DATA.items():
            if key in data and data[key] not in (None, False):
                raise self.refuse(f"data.{key}", f"is not supported; {instead}")
            if key in data:  # off: means what salt does anyway
                data.pop(key)
                self.note(f"data.{key}", "removed (off)")

    def prediction_writer(self, args: dict[str, Any], where: str, root: dict[str, Any]) -> None:
        """salt-ml's writer options as salt's ``evaluation`` options."""
        evaluation = root.setdefault("evaluation", {})
        args = dict(args)
        if args.pop("write_tracks", False):
            evaluation["write_constituents"] = True
            self.note(f"{where}.write_tracks", "-> evaluation.write_constituents: true")
        extra = args.pop("extra_vars", None) or {}
        glob = (root.get("data") or {}).get("global_object", "jets")
        for name, fields in extra.items():
            if name != glob:
                raise self.refuse(
                    f"{where}.extra_vars.{name}",
                    "salt carries only jet fields; list them in evaluation.jet_fields",
                )
            current = evaluation.setdefault("jet_fields", list(_DEFAULT_JET_FIELDS))
            current.extend(f for f in fields if f not in current)
            self.note(f"{where}.extra_vars.{name}", "-> evaluation.jet_fields")
        if args.pop("half_precision", False):
            self.note(f"{where}.half_precision", "removed (predictions are written as float32)")
        unknown = sorted(k for k, v in args.items() if v not in (None, False, [], {}))
        if unknown:
            raise self.refuse(f"{where}.{unknown[0]}", "has no equivalent in salt; remove it")

    def trainer(self, trainer: dict[str, Any], root: dict[str, Any]) -> None:
        callbacks = trainer.get("callbacks")
        if isinstance(callbacks, list):
            kept = []
            for i, callback in enumerate(callbacks):
                cls = _class(callback) or (callback if isinstance(callback, str) else "")
                where = f"trainer.callbacks[{i}] ({cls})"
                if cls == "salt.callbacks.Checkpoint":
                    self.note(where, "removed: salt checkpoints every epoch into <run>/ckpts")
                elif cls == "salt.callbacks.PredictionWriter":
                    self.note(
                        where,
                        "removed: salt test writes the predictions file itself "
                        "(constituent outputs: --evaluation.write_constituents)",
                    )
                    self.prediction_writer(_args(callback) or {}, where, root)
                elif cls == "salt.callbacks.SaveConfigCallback":
                    self.note(where, "removed: salt saves the config in the run directory")
                elif cls.startswith("salt.callbacks.") and cls not in _OUR_CALLBACKS:
                    raise self.refuse(where, "has no equivalent in salt; remove it")
                else:
                    kept.append(callback)
            trainer["callbacks"] = kept
        logger = trainer.get("logger")
        loggers = logger if isinstance(logger, list) else [logger]
        for i, one in enumerate(loggers):
            original = _class(one)
            if original in _LIGHTNING_COMET:
                one["class_path"] = _our_comet_logger()
                args = _args(one) or {}
                if "experiment_name" in args:
                    args["name"] = args.pop("experiment_name")
                self.note(
                    f"trainer.logger[{i}]",
                    f"{original} -> {one['class_path']} (offline without an API key)",
                )


# the jet fields ``salt test`` carries by default (salt.cli.salt_cli.EvaluationOptions)
_DEFAULT_JET_FIELDS = ("pt", "eta", "HadronConeExclTruthLabelID", "flavour_label")
_OUR_CALLBACKS = ("salt.callbacks.PerformanceWriter", "salt.callbacks.MemoryLogger")


def _our_comet_logger() -> str:
    """The Comet logger class salt's own base config uses (offline without a key)."""
    base = Path(__file__).resolve().parents[1] / "configs" / "base.yaml"
    content = yaml.safe_load(base.read_text()) or {}
    logger = (content.get("trainer") or {}).get("logger")
    for one in logger if isinstance(logger, list) else [logger]:
        if "CometLogger" in _class(one):
            return _class(one)
    raise RuntimeError(f"{base}: no CometLogger in trainer.logger")


def translate_config(config: Any, source: str = "config") -> Translation:
    """Rewrite salt-ml forms in a loaded config into this project's syntax.

    ``source`` (the file name) prefixes error messages. The input is not modified.
    """
    if not isinstance(config, dict):
        return Translation(config)
    out = copy.deepcopy(config)
    rewriter = _Rewriter(source)
    if is_module_graph(out):
        translate_module_graph(out, rewriter.note, rewriter.refuse)
    if isinstance(out.get("model"), dict):
        rewriter.module(out["model"])
    rewriter.edges(out)
    if isinstance(out.get("data"), dict):
        rewriter.data(out["data"])
    if isinstance(out.get("trainer"), dict):
        rewriter.trainer(out["trainer"], out)
    return Translation(out, rewriter.changes)


__all__ = ["Translation", "translate_config"]
