"""Export a trained salt run to ONNX: raw features in, named physical outputs out.

``export_onnx`` rebuilds the network from the run's ``config.yaml`` exactly as ``salt test``
does, loads the checkpoint, traces it with the TorchScript-based exporter (batch and constituent
axes dynamic, normalisation inside the graph), embeds the metadata, checks parity with PyTorch on
real and generated jets, and only then renames the file into place: a failed export never leaves
a file behind, and an existing file is replaced only when asked.

Jets without constituents: ONNX ``Reshape`` cannot resolve a ``-1`` dimension of an empty
tensor, which is what ``flatten`` exports to (e.g. when attention heads are merged with
``flatten(2)``), so such a graph fails in onnxruntime on a jet without tracks although PyTorch
handles it. The exporter tries the graph on such jets; if it fails, it exports again with one
extra padded slot appended to every sequence inside the graph (``pad_sentinel``): salt's blocks
ignore padding, so the results do not change (the parity check proves it), but no operator sees
a sequence of length 0. The slot costs one token per jet; blocks that reshape with explicit
sizes do not need it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
import yaml
from google.protobuf.message import DecodeError
from torch import Tensor, nn

from salt.data.batch import SPECIAL_GROUPS
from salt.export.metadata import FORMAT_VERSION, embed_metadata, versions
from salt.export.parity import (
    OutputInfo,
    ParityCase,
    ParityReport,
    check_parity,
    empty_case,
    onnx_feed,
    random_cases,
)
from salt.export.spec import ExportError, InputDesc, NamedOutput, main_task, task_outputs
from salt.models.saltmodel import SaltModel
from salt.safe_load import check_checkpoint_file, load_checkpoint
from salt.tasks.base import TaskBase

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-5
DEFAULT_PARITY_JETS = 500
DEFAULT_MAX_CONSTITUENTS = 40
"""Largest constituent count checked when no data file tells the padded length."""
PARITY_CHUNK = 100
"""Jets per onnxruntime/PyTorch call in the parity check."""
TRACE_JETS = 8
"""Jets in the example the graph is traced on (the batch axis is dynamic)."""


@dataclass
class ExportResult:
    """Where the file went, what it holds and how well it agrees with PyTorch."""

    path: Path
    metadata: dict[str, Any]
    parity: ParityReport


# -- rebuilding the run ----------------------------------------------------------------------------
def load_run(config: Path, ckpt_path: Path) -> tuple[Any, Any]:
    """Build the SaltModule and SaltDataModule from a run config, as ``salt test`` does, and load
    the checkpoint's weights (which include the normalisation used in training)."""
    from salt.cli.salt_cli import build

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        built = build([config], "test", ["--trainer.enable_progress_bar=false"])
    module = built.module
    state = load_checkpoint(ckpt_path)["state_dict"]
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        text = " ".join(str(err).split())
        clauses = re.findall(
            r"size mismatch for [^:]+: .*?current model is [\w.]+\(\[[^\]]*\]\)", text
        )
        detail = f"{clauses[0]} ({len(clauses)} such)" if clauses else str(err).splitlines()[0]
        raise ValueError(
            f"checkpoint '{ckpt_path}' does not fit the model of '{config}': {detail}"
        ) from None
    if missing or unexpected:
        detail = "; ".join(
            f"{what} {len(keys)} (e.g. {', '.join(keys[:3])})"
            for what, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        )
        raise ValueError(
            f"checkpoint '{ckpt_path}' does not fit the model of '{config}': parameters {detail}"
        )
    return module.eval(), built.datamodule


def input_descs(datamodule: Any) -> list[InputDesc]:
    """The ONNX inputs: what the loader gives the model in training (the jet, GLOBAL and
    PARAMETERS, then every constituent type), in the order of ``data.variables``."""
    variables: dict[str, list[str]] = datamodule.variables
    glob = datamodule.global_object
    descs = []
    for name in (glob, *SPECIAL_GROUPS):
        if variables.get(name):
            descs.append(
                InputDesc(name, datamodule.dataset_name(name), tuple(variables[name]), False)
            )
    for name in datamodule.constituent_names:
        descs.append(InputDesc(name, datamodule.dataset_name(name), tuple(variables[name]), True))
    return descs


def select_tasks(model: SaltModel, names: list[str] | None) -> list[TaskBase]:
    """The tasks to export: all of them, or those named (in the model's order)."""
    tasks: list[TaskBase] = list(model.tasks)  # type: ignore[arg-type]
    if not names:
        return tasks
    known = [t.name for t in tasks]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"--tasks: unknown task(s) {unknown}; the model has {known}")
    return [t for t in tasks if t.name in names]


def norm_params(module: Any, descs: list[InputDesc]) -> dict[str, tuple[Tensor, Tensor]]:
    """``{input type: (mean, std)}`` as stored in the model (and so in the graph)."""
    normaliser = module.normaliser
    if normaliser is None:
        return {}
    params = {}
    for d in descs:
        if hasattr(normaliser, f"mean_{d.input_name}"):
            mean = getattr(normaliser, f"mean_{d.input_name}")
            params[d.input_name] = (mean, getattr(normaliser, f"std_{d.input_name}"))
    return params


def real_case(datamodule: Any, num_jets: int) -> ParityCase:
    """The first ``num_jets`` jets of the validation file (else the test file), as the loader
    gives them to the model."""
    errors = []
    for split in ("val", "test"):
        if datamodule.files.get(split) is None:
            continue
        saved = datamodule.batch_size, dict(datamodule.num_rows)
        try:
            datamodule.batch_size = num_jets
            datamodule.num_rows[split] = -1
            dataset = datamodule.build_dataset(split)
            inputs, masks, _ = next(iter(dataset))
        except (FileNotFoundError, OSError, KeyError, ValueError) as err:
            errors.append(str(err).splitlines()[0])
            continue
        finally:
            datamodule.batch_size, datamodule.num_rows = saved
        label = f"{inputs[datamodule.global_object].shape[0]} jets of the {split} file"
        return ParityCase(label, inputs, masks)
    reason = "; ".join(errors) or "no data.val_file or data.test_file in the config"
    raise FileNotFoundError(
        f"no jets for the parity check ({reason}); pass --config with reachable files or "
        "--parity_jets 0 to check on generated jets only"
    )


# -- the exported graph ----------------------------------------------------------------------------
class OnnxWrapper(nn.Module):
    """Positional raw tensors in, a tuple of named outputs out: what the ONNX graph computes.

    Holds the model's normaliser and network (a shallow copy that runs only the exported tasks)
    and runs them with the SaltModule's own ``forward``, so the graph does exactly what salt
    does; the SaltModule itself, with all its tasks, is the parity reference.
    """

    def __init__(
        self,
        module: Any,
        descs: list[InputDesc],
        tasks: list[TaskBase],
        prefix: str,
        pad_sentinel: bool = True,
    ):
        super().__init__()
        model = copy.copy(module.model)
        model._modules = dict(model._modules)
        model._modules["tasks"] = nn.ModuleList(tasks)
        self.normaliser = module.normaliser
        self.model = model
        self._module_forward = type(module).forward  # reads only .normaliser and .model
        self.descs = descs
        self.prefix = prefix
        self.pad_sentinel = pad_sentinel
        self.main = main_task(list(module.model.tasks), module.model.global_object)

    def named(self, raw: dict[str, Tensor], masks: dict[str, Tensor]) -> list[NamedOutput]:
        """The named outputs of the exported tasks from the raw network outputs."""
        return task_outputs(
            list(self.model.tasks), self.main, self.model.global_object, self.prefix, raw, masks
        )

    def predict(self, inputs: dict[str, Tensor], masks: dict[str, Tensor]) -> list[NamedOutput]:
        """Normalise, run the network and name the outputs (dict inputs, no padded slot)."""
        raw, _ = self._module_forward(self, inputs, masks)
        return self.named(raw, masks)

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        inputs: dict[str, Tensor] = {}
        masks: dict[str, Tensor] = {}
        lengths = {}
        position = 0
        for desc in self.descs:
            x = tensors[position]
            position += 1
            if desc.constituent:
                mask = tensors[position]
                position += 1
                lengths[desc.input_name] = x.shape[1]
                if self.pad_sentinel:
                    x = torch.cat([x, x.new_zeros(x.shape[0], 1, x.shape[2])], dim=1)
                    mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
                masks[desc.input_name] = mask
            inputs[desc.input_name] = x
        outputs = []
        for out in self.predict(inputs, masks):
            value = out.value
            if out.per_constituent is not None and self.pad_sentinel:
                value = value[:, : lengths[out.per_constituent]]
            outputs.append(value)
        return tuple(outputs)


def _arguments(descs: list[InputDesc], case: ParityCase) -> tuple[Tensor, ...]:
    args: list[Tensor] = []
    for desc in descs:
        args.append(case.inputs[desc.input_name].float())
        if desc.constituent:
            args.append(case.masks[desc.input_name].bool())
    return tuple(args)


class _ModuleStack:
    """Names of the modules being called, so a failure during tracing can name its module."""

    def __init__(self, root: nn.Module):
        self.root = root
        self.stack: list[str] = []
        self.handles: list[Any] = []

    def __enter__(self) -> _ModuleStack:
        for name, sub in self.root.named_modules():
            self.handles.append(sub.register_forward_pre_hook(self._push(name)))
            self.handles.append(sub.register_forward_hook(self._pop))
        return self

    def _push(self, name: str):
        def hook(module: nn.Module, args: Any) -> None:
            self.stack.append(name)

        return hook

    def _pop(self, module: nn.Module, args: Any, output: Any) -> None:
        self.stack.pop()

    def __exit__(self, *exc: Any) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def _module_of_op(wrapper: nn.Module, args: tuple[Tensor, ...], op: str) -> str | None:
    """The module whose own traced graph contains ``op`` (e.g. ``aten::special_erfcx``)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(wrapper, args, check_trace=False, strict=False)
    except Exception:
        return None
    for name, sub in traced.named_modules():
        try:
            nodes = list(sub.graph.nodes())
        except (AttributeError, RuntimeError):
            continue
        if any(node.kind() == op for node in nodes):  # a module's own ops, not its children's
            return name
    return None


def _describe(wrapper: nn.Module, name: str) -> str:
    label = name.removeprefix("model.")
    module = wrapper.get_submodule(name) if name else wrapper
    return f"'{label or 'the wrapper'}' ({type(module).__name__})"


def _failure(wrapper: nn.Module, args: tuple[Tensor, ...], err: Exception, stack: list[str]) -> str:
    """One line naming the module that could not be exported, and why."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    reason = lines[0] if lines else type(err).__name__
    if stack:
        where = _describe(wrapper, stack[-1])
        return f"cannot export {where} to ONNX: {type(err).__name__}: {reason}"
    op = re.search(r"aten::\w+", str(err))
    name = _module_of_op(wrapper, args, op.group(0)) if op else None
    if name is not None:
        return f"cannot export {_describe(wrapper, name)} to ONNX: {reason}"
    return f"cannot export the model to ONNX: {type(err).__name__}: {reason}"


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Send what C++ prints to stdout elsewhere: on failure the exporter dumps the whole traced
    graph there (thousands of lines for GN2); it is kept as a DEBUG log message."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no real stdout (e.g. a notebook)
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace").strip()
            if text:
                log.debug("exporter output:\n%s", text)


def export_graph(
    wrapper: OnnxWrapper,
    args: tuple[Tensor, ...],
    descs: list[InputDesc],
    outputs: list[NamedOutput],
    opset: int,
) -> bytes:
    """Trace ``wrapper`` on ``args`` and return the serialised ONNX model."""
    input_names: list[str] = []
    axes: dict[str, dict[int, str]] = {}
    for desc in descs:
        input_names.append(desc.name)
        axes[desc.name] = {0: "batch"}
        if desc.mask_name is not None:
            input_names.append(desc.mask_name)
            axes[desc.name] = {0: "batch", 1: str(desc.length_axis)}
            axes[desc.mask_name] = {0: "batch", 1: str(desc.length_axis)}
    for out in outputs:
        axes[out.name] = {0: "batch"}
        if out.per_constituent is not None:
            axes[out.name][1] = f"n_{out.per_constituent}"
    buffer = io.BytesIO()
    failure: Exception | None = None
    stack: list[str] = []
    with _ModuleStack(wrapper) as modules, warnings.catch_warnings(), _quiet_stdout():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                wrapper,
                args,
                buffer,  # type: ignore[arg-type]  # file-like objects are accepted
                dynamo=False,
                opset_version=opset,
                input_names=input_names,
                output_names=[o.name for o in outputs],
                dynamic_axes=axes,
                do_constant_folding=True,
            )
        except Exception as err:  # the exporter raises many types; all are reported alike
            failure, stack = err, list(modules.stack)
    if failure is not None:
        raise ExportError(_failure(wrapper, args, failure, stack)) from failure
    return buffer.getvalue()


# -- the whole export ------------------------------------------------------------------------------
def is_complete_onnx(path: Path) -> bool:
    """Whether ``path`` holds a whole ONNX model; an empty or cut-off file (left by a writer
    that was not atomic, or a full disk) is not worth an ``--overwrite``."""
    try:
        if path.stat().st_size == 0:
            return False
        model = onnx.load(str(path), load_external_data=False)
    except (OSError, ValueError, DecodeError):
        return False
    return len(model.graph.node) > 0


def _atomic_save(proto: onnx.ModelProto, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the network is meant to be shared
        with os.fdopen(fd, "wb") as handle:
            handle.write(proto.SerializeToString())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_onnx(
    ckpt_path: str | Path,
    *,
    config: str | Path | None = None,
    output: str | Path | None = None,
    name: str | None = None,
    tasks: list[str] | None = None,
    overwrite: bool = False,
    opset: int = DEFAULT_OPSET,
    tolerance: float | None = None,
    parity_jets: int = DEFAULT_PARITY_JETS,
    pad_sentinel: bool | None = None,
) -> ExportResult:
    """Export the run of ``ckpt_path`` to ``RUN/network.onnx`` (RUN = the checkpoint's
    parent's parent) after checking it against PyTorch.

    Args:
        ckpt_path: the checkpoint, normally ``RUN/ckpts/<name>.ckpt``.
        config: the run config; ``RUN/config.yaml`` by default.
        output: the ONNX file; ``RUN/network.onnx`` by default.
        name: the output name prefix (``<name>_pb``); the run's name by default.
        tasks: the tasks to export (default all).
        overwrite: replace an existing output file.
        opset: the ONNX opset (>= 17 for LayerNormalization).
        tolerance: the largest accepted disagreement with PyTorch (absolute on probabilities).
        parity_jets: validation jets in the parity check (0: generated jets only).
        pad_sentinel: add one padded slot to every sequence (see the module docstring);
            None: only if the graph fails on jets without constituents.

    Raises:
        FileExistsError: the output exists and ``overwrite`` is False.
        ExportError: a component cannot be exported (the message names it).
        ParityError: onnxruntime and PyTorch disagree (no file is written).
    """
    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"--ckpt_path: checkpoint '{ckpt_path}' does not exist")
    check_checkpoint_file(ckpt_path)  # empty, truncated or foreign: refused before building
    run_dir = ckpt_path.resolve().parent.parent
    config = Path(config) if config is not None else run_dir / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"--config: run config '{config}' does not exist")
    output = Path(output) if output is not None else run_dir / "network.onnx"
    if output.exists() and not overwrite:
        if is_complete_onnx(output):
            raise FileExistsError(f"'{output}' exists; pass --overwrite to replace it")
        log.warning(
            "'%s' is not a complete ONNX file (an interrupted write?): replacing it", output
        )
    if opset < 17:
        raise ValueError(f"--opset {opset}: expected 17 or later (LayerNormalization)")
    if parity_jets < 0:
        raise ValueError(f"--parity_jets {parity_jets}: expected a number >= 0")

    module, datamodule = load_run(config, ckpt_path)
    descs = input_descs(datamodule)
    selected = select_tasks(module.model, tasks)
    prefix = name or module.name
    norm = norm_params(module, descs)
    real = real_case(datamodule, parity_jets) if parity_jets else None
    constituents = [d.input_name for d in descs if d.constituent]
    if real is not None:
        max_lengths = {t: int(real.masks[t].shape[1]) for t in constituents}
    else:
        max_lengths = {
            t: int(datamodule.num_inputs.get(t, DEFAULT_MAX_CONSTITUENTS)) for t in constituents
        }
    cases = random_cases(descs, norm, max_lengths)
    if real is not None:
        cases = real.split(PARITY_CHUNK) + cases

    # traced on a few real jets (else every count 0..max) with all constituent slots: the
    # longest sequences, so shape-dependent Python (e.g. loop counts) covers every length
    example = cases[0].rows(0, TRACE_JETS)
    wrapper, named, graph, slot = _trace(
        module, descs, selected, prefix, example, norm, opset, pad_sentinel
    )
    proto = onnx.load_from_string(graph)
    onnx.checker.check_model(proto)
    present = {i.name for i in proto.graph.input}
    unused = [d.name for d in descs if d.name not in present]
    if unused:  # the exporter drops inputs the graph does not read
        log.warning("not used by the model, so not inputs of the ONNX file: %s", unused)
        descs = [d for d in descs if d.name in present]
    metadata = _metadata(
        module,
        datamodule,
        config,
        ckpt_path,
        prefix,
        descs,
        norm,
        selected,
        [_output_meta(o) for o in named],
        max_lengths,
        opset,
        slot,
    )
    embed_metadata(proto, metadata)
    session = _session(proto.SerializeToString())
    infos = [
        OutputInfo(o.name, not o.value.is_floating_point(), o.argmax_of, o.task) for o in named
    ]

    def reference(inputs: dict[str, Tensor], masks: dict[str, Tensor]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            raw, _ = module(inputs, masks)
        return {o.name: o.value.numpy() for o in wrapper.named(raw, masks)}

    report = check_parity(
        session,
        reference,
        descs,
        infos,
        cases,
        tolerance,
        num_real_jets=real.num_jets if real is not None else 0,
        task_names=[t.name for t in selected],
    )
    log.info(
        "parity: max discrepancy %.2g (tolerance %g) over %d jets in %d cases",
        report.max_diff,
        tolerance,
        report.num_jets,
        report.num_cases,
    )
    metadata["parity"] = report.summary()
    embed_metadata(proto, metadata)
    _atomic_save(proto, output)
    log.info("wrote %s", output)
    return ExportResult(output, metadata, report)


def _session(graph: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 4  # failures are reported by salt, in one line
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def _trace(
    module: Any,
    descs: list[InputDesc],
    tasks: list[TaskBase],
    prefix: str,
    example: ParityCase,
    norm: dict[str, tuple[Tensor, Tensor]],
    opset: int,
    pad_sentinel: bool | None,
) -> tuple[OnnxWrapper, list[NamedOutput], bytes, bool]:
    """Export the graph; with ``pad_sentinel=None`` add the padded slot only when the plain
    graph cannot run jets without constituents.

    Returns the wrapper, its outputs on ``example``, the graph and whether the slot is used.
    """
    wrapper = OnnxWrapper(module, descs, tasks, prefix, bool(pad_sentinel)).eval()
    with torch.no_grad():
        named = wrapper.predict(example.inputs, example.masks)
    if not named:
        raise ValueError("the selected tasks give no outputs to export")
    names = [o.name for o in named]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"output names {duplicates} occur twice; choose other task names")
    log.info("exporting %s: outputs %s", prefix, ", ".join(names))
    args = _arguments(descs, example)
    graph = export_graph(wrapper, args, descs, named, opset)
    if pad_sentinel is not None or not any(d.constituent for d in descs):
        return wrapper, named, graph, bool(pad_sentinel)
    empty = empty_case(descs, norm)
    try:
        session = _session(graph)
        session.run(None, onnx_feed(descs, empty, session))
        return wrapper, named, graph, False
    except Exception as err:  # onnxruntime raises its own exception types
        reason = " ".join(str(err).split())[:200]
        log.info("the graph fails on jets without constituents (%s); adding a padded slot", reason)
    wrapper = OnnxWrapper(module, descs, tasks, prefix, pad_sentinel=True).eval()
    return wrapper, named, export_graph(wrapper, args, descs, named, opset), True


def _output_meta(out: NamedOutput) -> dict[str, Any]:
    shape = ["batch"] if out.per_constituent is None else ["batch", f"n_{out.per_constituent}"]
    meta: dict[str, Any] = {
        "name": out.name,
        "task": out.task,
        "key": out.key,
        "dtype": str(out.value.dtype).removeprefix("torch."),
        "shape": shape,
    }
    if out.class_name is not None:
        meta["class_name"] = out.class_name
    if out.argmax_of:
        meta["argmax_of"] = list(out.argmax_of)
    return meta


def _metadata(
    module: Any,
    datamodule: Any,
    config: Path,
    ckpt_path: Path,
    prefix: str,
    descs: list[InputDesc],
    norm: dict[str, tuple[Tensor, Tensor]],
    tasks: list[TaskBase],
    outputs: list[dict[str, Any]],
    max_lengths: dict[str, int],
    opset: int,
    pad_sentinel: bool,
) -> dict[str, Any]:
    inputs = []
    for d in descs:
        shape = ["batch", len(d.variables)]
        if d.constituent:
            shape = ["batch", str(d.length_axis), len(d.variables)]
        entry: dict[str, Any] = {
            "name": d.name,
            "input_type": d.input_name,
            "dataset": d.dataset,
            "variables": list(d.variables),
            "dtype": "float32",
            "shape": shape,
            "norm": None,
        }
        if d.input_name in norm:
            mean, std = norm[d.input_name]
            entry["norm"] = {
                var: {"mean": float(m), "std": float(s)}
                for var, m, s in zip(d.variables, mean.tolist(), std.tolist())
            }
        if d.constituent:
            entry["mask"] = {
                "name": d.mask_name,
                "dtype": "bool",
                "shape": ["batch", str(d.length_axis)],
                "convention": "True = padded (not a real constituent)",
            }
            entry["max_constituents_checked"] = max_lengths[d.input_name]
        inputs.append(entry)
    task_meta = {}
    for task in tasks:
        info: dict[str, Any] = {"class": type(task).__name__, "input_type": task.input_name}
        for attr in ("class_names", "target_names", "label", "threshold"):
            value = getattr(task, attr, None)
            if value is not None:
                info[attr] = list(value) if isinstance(value, list | tuple) else value
        task_meta[task.name] = info
    main = main_task(list(module.model.tasks), module.model.global_object)
    return {
        "format_version": FORMAT_VERSION,
        "model_name": prefix,
        "created": datetime.now().isoformat(timespec="seconds"),
        "checkpoint": str(ckpt_path.resolve()),
        "global_object": datamodule.global_object,
        "inputs": inputs,
        "outputs": outputs,
        "output_names": [o["name"] for o in outputs],
        "class_names": list(main.class_names) if main is not None and main in tasks else None,
        "tasks": task_meta,
        "onnx": {
            "opset": opset,
            "exporter": "torch.onnx.export (TorchScript, dynamo=False)",
            "dynamic_axes": ["batch", *[str(d.length_axis) for d in descs if d.constituent]],
            "pad_sentinel": pad_sentinel,
        },
        "versions": versions(),
        "config": yaml.safe_load(config.read_text()),
    }


__all__ = [
    "DEFAULT_OPSET",
    "DEFAULT_PARITY_JETS",
    "DEFAULT_TOLERANCE",
    "ExportError",
    "ExportResult",
    "OnnxWrapper",
    "export_graph",
    "export_onnx",
    "load_run",
]
