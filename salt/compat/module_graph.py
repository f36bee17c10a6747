"""salt-ml's module-graph configs (``salt.model.SaltModule`` with ``modules:``) as salt's.

Since January 2026 salt-ml writes a network as named modules that read and write named ports
(``normed.jets``, ``encoded.seq``, ``pooled.global``), with the data section split into a
reader, features and labels, plus ``outputs:`` and ``export:`` sections. The GN-family graphs
are the chain salt's :class:`~salt.models.SaltModel` is built from (normalise, embed each
stream, concatenate, encode, split, pool, append the global vector, run the tasks), so they
translate module by module; a module or option outside that chain stops with one line naming
it. :func:`translate_module_graph` rewrites the loaded YAML in place and reports each change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_PREFIX = "salt.model.modules."
_BUILT_IN = {
    "Concat": "concatenates the embedded streams",
    "Split": "splits the encoded sequence into its streams",
    "LossSum": "sums the task losses",
}
_ORIGIN_CLASSES = [
    "Pileup",
    "Fake",
    "Primary",
    "FromB",
    "FromBC",
    "FromC",
    "FromTau",
    "OtherSecondary",
]


def is_module_graph(config: dict[str, Any]) -> bool:
    """Whether a loaded config is in salt-ml's module-graph syntax."""
    model = config.get("model")
    if not isinstance(model, dict):
        return False
    args = model.get("init_args")
    return model.get("class_path") == "salt.model.SaltModule" or (
        isinstance(args, dict) and isinstance(args.get("modules"), dict)
    )


class _Graph:
    """One translation: the config, where to report changes and how to refuse."""

    def __init__(
        self,
        config: dict[str, Any],
        note: Callable[[str, str], None],
        refuse: Callable[[str, str], ValueError],
    ) -> None:
        self.config = config
        self.note = note
        self.refuse = refuse
        self.global_object = "jets"
        self.global_groups: list[str] = []
        self.init_nets: list[dict[str, Any]] = []
        self.tasks: list[dict[str, Any]] = []
        self.net: dict[str, Any] = {}

    # -- data ----------------------------------------------------------------------------------
    def data(self) -> None:
        data = self.config.get("data")
        if not isinstance(data, dict) or "modules" not in data:
            return
        modules = data.pop("modules") or {}
        for key, module in modules.items():
            where = f"data.modules.{key}"
            cls = _class(module)
            args = _args(module)
            if cls == "salt.data.H5StructuredReader":
                groups = args.get("groups") or {}
                tops = [g for g, spec in groups.items() if (spec or {}).get("global_object")]
                self.global_groups = tops
                if "jets" in tops or tops:
                    self.global_object = "jets" if "jets" in tops else tops[0]
                if self.global_object != "jets":
                    data["global_object"] = self.global_object
                unknown = sorted(set(args) - {"groups"})
                if unknown:
                    raise self.refuse(f"{where}.{unknown[0]}", "has no equivalent in salt")
                self.note(where, "read as data.variables' groups (salt reads them itself)")
            elif cls == "salt.data.Features":
                if "variables" in args:
                    data["variables"] = args["variables"]
                if "non_finite_to_num" in args:
                    data["non_finite_to_num"] = bool(args["non_finite_to_num"])
                unknown = sorted(set(args) - {"variables", "non_finite_to_num"})
                if unknown:
                    raise self.refuse(f"{where}.{unknown[0]}", "has no equivalent in salt")
                self.note(where, "-> data.variables")
            elif cls == "salt.data.Labels":
                self.note(where, "removed (salt reads the labels its tasks name)")
            else:
                raise self.refuse(where, f"{cls or '?'} has no equivalent in salt")
        variables = data.get("variables") or {}
        extra = [g for g in self.global_groups if g != self.global_object and g in variables]
        for group in extra:  # a second per-jet vector, appended after pooling: salt's GLOBAL
            if "GLOBAL" in variables:
                raise self.refuse(f"data.variables.{group}", "a second global vector")
            variables["GLOBAL"] = variables.pop(group)
            self.note(f"data.variables.{group}", "-> GLOBAL (appended to the pooled jet)")

    # -- model ---------------------------------------------------------------------------------
    def model(self) -> None:
        model = self.config["model"]
        args = dict(_args(model))
        modules = args.pop("modules", None)
        if not isinstance(modules, dict):
            raise self.refuse("model.init_args.modules", "expected named modules")
        out: dict[str, Any] = {}
        if "lrs" in args:
            out["lrs_config"] = args.pop("lrs")
            self.note("model.init_args.lrs", "-> model.lrs_config")
        if "optimizer" in args:
            out["optimizer"] = args.pop("optimizer")  # by name: handled with the rest
        for key in ("mup_config", "muP_config"):
            if key in args:
                out[key] = args.pop(key)
        if args:
            raise self.refuse(f"model.init_args.{sorted(args)[0]}", "has no equivalent in salt")
        self.net = {}
        for name, module in modules.items():
            self.module(name, module)
        if not self.init_nets or not self.tasks:
            raise self.refuse("model.init_args.modules", "needs a StreamEmbed and a task module")
        self.net["init_nets"] = self.init_nets
        self.net["tasks"] = self.tasks
        out["model"] = {"class_path": "salt.models.SaltModel", "init_args": self.net}
        self.config["model"] = out
        self.note("model", "salt.model.SaltModule modules -> model.model (salt.models.SaltModel)")

    def module(self, name: str, module: Any) -> None:
        where = f"model.init_args.modules.{name}"
        cls = _class(module)
        args = dict(_args(module))
        kind = cls[len(_PREFIX) :] if cls.startswith(_PREFIX) else cls
        if kind == "Normaliser":
            if args.get("norm_dict"):
                self.config.setdefault("data", {})["norm_dict"] = args["norm_dict"]
            self.note(where, "removed (salt normalises inside the model from data.norm_dict)")
        elif kind == "StreamEmbed":
            self.stream_embed(args, where)
        elif kind in _BUILT_IN:
            self.note(where, f"removed (salt's SaltModel {_BUILT_IN[kind]} itself)")
        elif kind == "TransformerEncoder":
            self.encoder(args, where)
        elif kind == "GlobalAttentionPooling":
            self.net["pool_net"] = {"class_path": "salt.models.GlobalAttentionPooling"}
        elif kind == "VectorConcat":
            inputs = list(args.get("inputs") or [])
            extra = [i for i in inputs[1:] if i.split(".")[-1] in self.global_groups]
            if not inputs or not inputs[0].startswith("pooled.") or len(extra) != len(inputs) - 1:
                raise self.refuse(
                    f"{where}.inputs", "salt appends only the global vector after the pooled jet"
                )
            self.note(where, "removed (salt appends GLOBAL to the pooled jet)")
        elif kind in ("tasks.ClassificationTaskModule", "tasks.VertexingTaskModule"):
            self.task(name, kind.split(".")[1], args, where)
        else:
            raise self.refuse(where, f"{cls or '?'} has no equivalent in salt")

    def stream_embed(self, args: dict[str, Any], where: str) -> None:
        stream = args.pop("stream", None)
        context = list(args.pop("context", None) or [])
        out_dim = args.pop("out_dim", None)
        dense = dict(args.pop("dense", None) or {})
        if args:
            raise self.refuse(f"{where}.{sorted(args)[0]}", "has no equivalent in salt")
        if not isinstance(stream, str) or not isinstance(out_dim, int):
            raise self.refuse(where, "expected stream: <name> and out_dim: <int>")
        if context not in ([], [f"normed.{self.global_object}"]):
            raise self.refuse(f"{where}.context", f"salt attaches only normed.{self.global_object}")
        self.init_nets.append(
            {
                "input_name": stream,
                "attach_global": bool(context),
                "dense_config": {**dense, "output_size": out_dim},
            }
        )

    def encoder(self, args: dict[str, Any], where: str) -> None:
        attention = dict(args.pop("attention", None) or {})
        encoder: dict[str, Any] = {
            "embed_dim": args.pop("dim", None),
            "num_layers": args.pop("num_layers", None),
            "attn_type": attention.pop("attn_type", "torch-math"),
            "attn_kwargs": attention,
            "dense_kwargs": dict(args.pop("dense", None) or {}),
        }
        if not isinstance(encoder["embed_dim"], int) or not encoder["num_layers"]:
            raise self.refuse(where, "expected dim: <int> and num_layers: <int>")
        encoder.update(args)  # out_dim, num_registers, norm, ...: salt.models.Transformer's
        self.net["encoder"] = {"class_path": "salt.models.Transformer", "init_args": encoder}

    def task(self, name: str, kind: str, args: dict[str, Any], where: str) -> None:
        stream = args.pop("stream", None)
        args.pop("input", None)  # the pooled jet (or the stream's own tokens): salt's wiring
        args.pop("context", None)  # constituent tasks see the pooled jet as context
        expose = args.pop("expose", None)
        if expose is not None:
            self.note(f"{where}.expose", "removed (salt test writes the outputs it is asked)")
        task: dict[str, Any] = {
            "name": name,
            "input_name": stream,
            "label": args.pop("label", None),
            "dense_config": dict(args.pop("dense", None) or {}),
        }
        for key in ("weight", "loss", "class_names", "label_map", "use_class_dict"):
            if key in args:
                task[key] = args.pop(key)
        if isinstance(task.get("loss"), str):
            task["loss"] = {"class_path": task["loss"]}
        if kind == "VertexingTaskModule":
            origin = args.pop("origin_label", None)
            weighting = args.pop("origin_weighting", None)
            if weighting not in (None, {"heavy": [3, 4, 5], "fake": [1]}):
                raise self.refuse(
                    f"{where}.origin_weighting",
                    "salt weights heavy-flavour pairs (origins 3, 4, 5) and fake pairs (1) "
                    "only; set heavy_flavour_pair_weight and fake_pair_weight",
                )
            if origin:
                task.update(
                    origin_label=origin,
                    normalise_by="linked_pairs",
                    heavy_flavour_pair_weight=2.0,
                    fake_pair_weight=0.0,
                )
            args.pop("prefix_vertex_column", None)
            args.pop("write_targets", None)
            cls = "salt.models.VertexingTask"
        else:
            cls = "salt.models.ClassificationTask"
            if task.get("class_names") is None and task["label"] == "ftagTruthOriginLabel":
                task["class_names"] = list(_ORIGIN_CLASSES)
        if args:
            raise self.refuse(f"{where}.{sorted(args)[0]}", "has no equivalent in salt")
        if not isinstance(stream, str) or not task["label"]:
            raise self.refuse(where, "expected stream: <name> and label: <field>")
        self.tasks.append({"class_path": cls, "init_args": task})

    # -- outputs and export --------------------------------------------------------------------
    def outputs(self) -> None:
        outputs = self.config.pop("outputs", None) or {}
        constituent_tasks = {
            t["init_args"]["name"]
            for t in self.tasks
            if t["init_args"]["input_name"] != self.global_object
        }
        for key, output in outputs.items():
            where = f"outputs.{key}"
            cls = _class(output)
            args = _args(output)
            if cls == "salt.outputs.RunTaskOutput":
                modes = args.get("modes") or ["test"]
                if "test" in modes and constituent_tasks & set(args.get("tasks") or []):
                    evaluation = self.config.setdefault("evaluation", {})
                    evaluation["write_constituents"] = True
                    self.note(where, "-> evaluation.write_constituents: true")
                    continue
            elif cls not in ("salt.outputs.InputCopyWriter", "salt.outputs.PadMaskWriter"):
                raise self.refuse(where, f"{cls or '?'} has no equivalent in salt")
            self.note(where, "removed (salt test writes the predictions file itself)")
        if "export" in self.config:
            self.config.pop("export")
            self.note("export", "removed (write the Athena graph with to_onnx --athena)")


def _class(node: Any) -> str:
    return str(node.get("class_path", "")) if isinstance(node, dict) else ""


def _args(node: Any) -> dict[str, Any]:
    if not isinstance(node, dict):
        return {}
    args = node.get("init_args")
    return args if isinstance(args, dict) else {}


def translate_module_graph(
    config: dict[str, Any],
    note: Callable[[str, str], None],
    refuse: Callable[[str, str], ValueError],
) -> None:
    """Rewrite a module-graph config in place into salt's ``model.model`` form."""
    graph = _Graph(config, note, refuse)
    graph.data()
    graph.model()
    graph.outputs()


__all__ = ["is_module_graph", "translate_module_graph"]
