"""``to_onnx --athena``: the one-jet-per-call graph that Athena's GNN tool runs.

Athena's flavour-tagging GNN tool (``FlavorTagDiscriminants``) calls the network once per jet:
``jet_features`` is ``[1, n_jet_variables]`` and every constituent type is ``[n, n_variables]``
without a batch axis and without padding (``n`` may be 0). It reads the JSON metadata key
``gnn_config`` for the variable lists (``inputs``, ``input_sequences``), the model name and the
output names, and expects the jet probabilities as scalars ``<model>_pb`` ... and the track
auxiliary outputs as int8 vectors ``<model>_TrackOrigin`` and ``<model>_VertexIndex``.

The graph here wraps the same trained network as salt's batched export (normalisation inside,
so every ``offset``/``scale`` in ``gnn_config`` is 0/1) and is checked, before the file is
written, against the batched PyTorch model on one jet of every constituent count from 0 to the
maximum. The batched export (``to_onnx`` without ``--athena``) stays the default.
"""

from __future__ import annotations

import io
import json
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import yaml
from torch import Tensor, nn

from salt.data.batch import SPECIAL_GROUPS
from salt.export.metadata import embed_metadata, versions
from salt.export.onnx_export import (
    DEFAULT_MAX_CONSTITUENTS,
    OnnxWrapper,
    _atomic_save,
    _quiet_stdout,
    _session,
    input_descs,
    is_complete_onnx,
    load_run,
    norm_params,
)
from salt.export.parity import ParityError
from salt.export.spec import ExportError, InputDesc, NamedOutput
from salt.safe_load import check_checkpoint_file
from salt.tasks import ClassificationTask, VertexingTask, main_task
from salt.tasks.base import TaskBase

log = logging.getLogger(__name__)

ATHENA_OPSET = 20
GNN_CONFIG_KEY = "gnn_config"
DEFAULT_TRACK_SELECTION = "r22default"
ORIGIN_LABELS = ("ftagTruthOriginLabel", "truthOriginLabel")
VERTEX_LABELS = ("ftagTruthVertexIndex", "truthVertexIndex")


@dataclass
class AthenaResult:
    """The written file, its ``gnn_config`` and the parity of every constituent count."""

    path: Path
    gnn_config: dict[str, Any]
    max_diff: float
    counts_checked: int


def athena_model_name(name: str) -> str:
    """Athena builds decoration names from the model name: no ``_`` or ``-`` allowed."""
    cleaned = name.replace("_", "").replace("-", "")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", cleaned):
        raise ValueError(
            f"--name '{name}': Athena needs a model name of letters and digits (got '{cleaned}')"
        )
    return cleaned


def athena_input_name(desc: InputDesc, glob: str, track_selection: str) -> str:
    """The name of an input in ``gnn_config`` (which Athena collection feeds it)."""
    if desc.input_name == glob:
        return f"{glob.removesuffix('s')}_var"
    if "tracks" in desc.input_name or "flows" in desc.input_name:
        return f"{desc.input_name.split('_')[0]}_{track_selection}_sd0sort"
    if "electrons" in desc.input_name:
        return f"{desc.input_name}_r22default"
    return f"{desc.input_name}_var"


def _aux_tasks(
    tasks: list[Any], glob: str
) -> tuple[ClassificationTask | None, VertexingTask | None]:
    """The track-origin classification and the track vertexing task, if the model has them."""
    origin = next(
        (
            t
            for t in tasks
            if isinstance(t, ClassificationTask)
            and t.input_name != glob
            and (t.label in ORIGIN_LABELS or t.name.endswith("origin"))
        ),
        None,
    )
    vertexing = next((t for t in tasks if isinstance(t, VertexingTask)), None)
    return origin, vertexing


class AthenaWrapper(nn.Module):
    """One jet in (no batch axis on sequences, no padding), Athena's outputs out.

    Every sequence gets one padded slot appended inside the graph, so no operator sees a
    sequence of length 0 (see :mod:`salt.export.onnx_export`); it is removed from the outputs.
    """

    def __init__(
        self, batched: OnnxWrapper, descs: list[InputDesc], prefix: str, aux: dict[str, str]
    ):
        super().__init__()
        self.batched = batched
        self.descs = descs
        self.prefix = prefix
        self.aux = aux  # batched output name -> Athena output name (int8 per constituent)
        self.main_names: list[str] = []

    def outputs(
        self, named: list[NamedOutput], lengths: dict[str, Any] | None = None
    ) -> list[tuple[str, Tensor]]:
        """(Athena name, value) from the batched outputs of one jet; ``lengths`` cut the
        per-constituent outputs to the real constituents."""
        out: list[tuple[str, Tensor]] = []
        main = self.batched.main
        for o in named:
            if o.per_constituent is None and main is not None and o.task == main.name:
                out.append((o.name, o.value[0]))  # scalar
        for o in named:
            if o.name in self.aux:
                value = o.value[0]
                if lengths is not None and o.per_constituent is not None:
                    value = value[: lengths[o.per_constituent]]
                out.append((self.aux[o.name], value.to(torch.int8)))
        return out

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        inputs: dict[str, Tensor] = {}
        masks: dict[str, Tensor] = {}
        lengths: dict[str, Any] = {}
        # the batch size (always 1) is taken from the jet input, whose first axis is exported
        # as dynamic: with a literal 1 the exporter freezes the sequence lengths it derives
        # inside attention to those of the example it traces
        batch = next(x for d, x in zip(self.descs, tensors) if not d.constituent).shape[0]
        for desc, x in zip(self.descs, tensors):
            if not desc.constituent:
                inputs[desc.input_name] = x
                continue
            lengths[desc.input_name] = x.shape[0]
            real = torch.zeros_like(x[:, 0], dtype=torch.bool)
            mask = torch.cat([real, torch.ones(1, dtype=torch.bool)])
            padded = torch.cat([x, x.new_zeros(1, x.shape[1])])
            inputs[desc.input_name] = padded.unsqueeze(0).expand(batch, -1, -1)
            masks[desc.input_name] = mask.unsqueeze(0).expand(batch, -1)
        named = self.batched.predict(inputs, masks)
        return tuple(value for _, value in self.outputs(named, lengths))


def _one_jet(
    descs: list[InputDesc], norm: dict[str, tuple[Tensor, Tensor]], count: int, gen: Any
) -> tuple[Tensor, ...]:
    """Raw features of one jet with ``count`` of every constituent type (Athena's shapes)."""
    args = []
    for d in descs:
        shape = (count,) if d.constituent else (1,)
        x = torch.randn(*shape, len(d.variables), generator=gen)
        if d.input_name in norm:
            mean, std = norm[d.input_name]
            x = mean + std * x
        args.append(x)
    return tuple(args)


def _batched_reference(
    module: Any, wrapper: AthenaWrapper, descs: list[InputDesc], jets: list[tuple[Tensor, ...]]
) -> list[dict[str, np.ndarray]]:
    """The batched PyTorch model on all jets at once (padded to the longest): the reference."""
    longest = max(
        (j[i].shape[0] for j in jets for i, d in enumerate(descs) if d.constituent), default=0
    )
    inputs: dict[str, Tensor] = {}
    masks: dict[str, Tensor] = {}
    for i, d in enumerate(descs):
        if not d.constituent:
            inputs[d.input_name] = torch.cat([j[i] for j in jets])
            continue
        x = torch.full((len(jets), longest, len(d.variables)), 7.0)  # padding holds garbage
        mask = torch.ones(len(jets), longest, dtype=torch.bool)
        for row, jet in enumerate(jets):
            n = jet[i].shape[0]
            x[row, :n] = jet[i]
            mask[row, :n] = False
        inputs[d.input_name], masks[d.input_name] = x, mask
    with torch.no_grad():
        raw, _ = module(inputs, masks)
    named = wrapper.batched.named(raw, masks)
    out = []
    for row, jet in enumerate(jets):
        values: dict[str, np.ndarray] = {}
        for o in named:
            if o.per_constituent is None and wrapper.batched.main is not None:
                if o.task == wrapper.batched.main.name:
                    values[o.name] = o.value[row].numpy()
            elif o.name in wrapper.aux:
                index = next(i for i, d in enumerate(descs) if d.input_name == o.per_constituent)
                n = jet[index].shape[0]
                values[wrapper.aux[o.name]] = o.value[row, :n].to(torch.int8).numpy()
        out.append(values)
    return out


def export_athena(
    ckpt_path: str | Path,
    *,
    config: str | Path | None = None,
    output: str | Path | None = None,
    name: str | None = None,
    overwrite: bool = False,
    opset: int = ATHENA_OPSET,
    tolerance: float = 1e-5,
    track_selection: str = DEFAULT_TRACK_SELECTION,
    max_constituents: int | None = None,
) -> AthenaResult:
    """Write ``RUN/network_athena.onnx`` for Athena after checking every constituent count."""
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"--ckpt_path: checkpoint '{ckpt_path}' does not exist")
    check_checkpoint_file(ckpt_path)
    run_dir = ckpt_path.resolve().parent.parent
    config = Path(config) if config is not None else run_dir / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"--config: run config '{config}' does not exist")
    output = Path(output) if output is not None else run_dir / "network_athena.onnx"
    if output.exists() and not overwrite and is_complete_onnx(output):
        raise FileExistsError(f"'{output}' exists; pass --overwrite to replace it")

    module, datamodule = load_run(config, ckpt_path)
    descs = input_descs(datamodule)
    special = [d.input_name for d in descs if d.input_name in SPECIAL_GROUPS]
    if special:
        raise ValueError(
            f"--athena: inputs {special} have no place in Athena's GNN interface (jet features "
            "and constituent sequences only); export without --athena"
        )
    glob = datamodule.global_object
    prefix = athena_model_name(name or module.name)
    tasks = list(module.model.tasks)
    main = main_task(tasks, glob)
    if main is None:
        raise ValueError(
            "--athena: the model has no jet classification task (the <model>_p* outputs)"
        )
    origin, vertexing = _aux_tasks(tasks, glob)
    selected: list[TaskBase] = [t for t in (main, origin, vertexing) if t is not None]
    batched = OnnxWrapper(module, descs, selected, prefix, pad_sentinel=False).eval()
    aux: dict[str, str] = {}
    if origin is not None:
        aux[f"{prefix}_{origin.name}"] = f"{prefix}_TrackOrigin"
    if vertexing is not None:
        aux[f"{prefix}_{vertexing.name}_vertex_index"] = f"{prefix}_VertexIndex"
    wrapper = AthenaWrapper(batched, descs, prefix, aux).eval()
    norm = norm_params(module, descs)
    gen = torch.Generator().manual_seed(0)
    example = _one_jet(descs, norm, 5, gen)
    with torch.no_grad():
        names = [n for n, _ in wrapper.outputs(batched.predict(*_batched_inputs(descs, example)))]

    graph = _export(wrapper, example, descs, names, glob, opset)
    proto = onnx.load_from_string(graph)
    onnx.checker.check_model(proto)
    longest = max_constituents
    if longest is None:
        lengths = [datamodule.num_inputs.get(d.input_name) for d in descs if d.constituent]
        longest = max((n for n in lengths if n), default=DEFAULT_MAX_CONSTITUENTS)
    max_diff = _check_every_count(proto, module, wrapper, descs, norm, names, longest, tolerance)

    gnn_config = _gnn_config(module, descs, glob, prefix, names, config, ckpt_path, track_selection)
    proto.metadata_props.add(key=GNN_CONFIG_KEY, value=json.dumps(gnn_config))
    embed_metadata(
        proto,
        {
            "interface": "athena",
            "model_name": prefix,
            "output_names": names,
            "max_constituents_checked": longest,
            "parity_max_diff": max_diff,
            "versions": versions(),
        },
    )
    proto.doc_string = prefix
    _atomic_save(proto, output)
    log.info("wrote %s (Athena interface, %s)", output, ", ".join(names))
    return AthenaResult(output, gnn_config, max_diff, longest + 1)


def _batched_inputs(
    descs: list[InputDesc], jet: tuple[Tensor, ...]
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    inputs, masks = {}, {}
    for d, x in zip(descs, jet):
        if d.constituent:
            inputs[d.input_name] = x.unsqueeze(0)
            masks[d.input_name] = torch.zeros(1, x.shape[0], dtype=torch.bool)
        else:
            inputs[d.input_name] = x
    return inputs, masks


def _export(
    wrapper: AthenaWrapper,
    example: tuple[Tensor, ...],
    descs: list[InputDesc],
    names: list[str],
    glob: str,
    opset: int,
) -> bytes:
    axes = {d.name: {0: f"n_{d.input_name}" if d.constituent else "batch"} for d in descs}
    for out in names:
        if out.endswith(("_TrackOrigin", "_VertexIndex")):
            axes[out] = {0: "n_tracks"}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), _quiet_stdout():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                wrapper,
                example,
                buffer,  # type: ignore[arg-type]
                dynamo=False,
                opset_version=opset,
                input_names=[d.name for d in descs],
                output_names=names,
                dynamic_axes=axes,
                do_constant_folding=True,
            )
        except Exception as err:  # the exporter raises many types; reported in one line
            reason = " ".join(str(err).split())[:300]
            raise ExportError(f"--athena: export failed: {reason}") from err
    return buffer.getvalue()


def _check_every_count(
    proto: onnx.ModelProto,
    module: Any,
    wrapper: AthenaWrapper,
    descs: list[InputDesc],
    norm: dict[str, tuple[Tensor, Tensor]],
    names: list[str],
    longest: int,
    tolerance: float,
) -> float:
    """ONNX one jet at a time vs the batched PyTorch model, for 0..longest constituents."""
    session = _session(proto.SerializeToString())
    gen = torch.Generator().manual_seed(1)
    jets = [_one_jet(descs, norm, n, gen) for n in range(longest + 1)]
    reference = _batched_reference(module, wrapper, descs, jets)
    worst = 0.0
    for count, (jet, expected) in enumerate(zip(jets, reference)):
        feed = {d.name: x.numpy() for d, x in zip(descs, jet)}
        try:
            got = dict(zip(names, session.run(names, feed)))
        except Exception as err:  # onnxruntime's own exception types
            raise ParityError(
                f"--athena: onnxruntime fails on a jet with {count} constituents: "
                f"{' '.join(str(err).split())[:200]}"
            ) from None
        for out in names:
            a, b = np.asarray(got[out]), np.asarray(expected[out])
            if a.shape != b.shape:
                raise ParityError(
                    f"--athena: {out} has shape {a.shape}, expected {b.shape} "
                    f"({count} constituents)"
                )
            if a.dtype == np.int8:
                if not np.array_equal(a, b):
                    raise ParityError(f"--athena: {out} differs with {count} constituents")
                continue
            diff = float(np.max(np.abs(a - b))) if a.size else 0.0
            worst = max(worst, diff)
            if not diff <= tolerance:
                raise ParityError(
                    f"--athena: {out} differs by {diff:.2g} (> {tolerance:g}) with {count} "
                    "constituents"
                )
    log.info("athena parity: max discrepancy %.2g over 0..%d constituents", worst, longest)
    return worst


def _gnn_config(
    module: Any,
    descs: list[InputDesc],
    glob: str,
    prefix: str,
    names: list[str],
    config: Path,
    ckpt_path: Path,
    track_selection: str,
) -> dict[str, Any]:
    """Athena's metadata: variable lists (normalised inside the graph: offset 0, scale 1)."""

    def variables(desc: InputDesc) -> list[dict[str, Any]]:
        strip = desc.input_name == glob  # Athena names the jet variables without the suffix
        return [
            {"name": v.removesuffix("_btagJes") if strip else v, "offset": 0.0, "scale": 1.0}
            for v in desc.variables
        ]

    metadata_file = config.parent / "metadata.yaml"
    return {
        "onnx_model_version": "v1",
        "model_name": prefix,
        "output_names": names,
        "inputs": [
            {"name": athena_input_name(d, glob, track_selection), "variables": variables(d)}
            for d in descs
            if not d.constituent
        ],
        "input_sequences": [
            {"name": athena_input_name(d, glob, track_selection), "variables": variables(d)}
            for d in descs
            if d.constituent
        ],
        "ckpt_path": str(ckpt_path.resolve()),
        "config.yaml": yaml.safe_load(config.read_text()),
        "metadata.yaml": (
            yaml.safe_load(metadata_file.read_text()) if metadata_file.is_file() else None
        ),
    }


__all__ = [
    "ATHENA_OPSET",
    "GNN_CONFIG_KEY",
    "AthenaResult",
    "AthenaWrapper",
    "athena_main",
    "athena_model_name",
    "export_athena",
]


def athena_main(args: Any) -> None:
    """``to_onnx --athena``: export with the parsed ``to_onnx`` arguments and say what was
    written; errors are reported by ``to_onnx`` (:func:`salt.cli.errors.run_cli`)."""
    result = export_athena(
        args.ckpt_path,
        config=args.config,
        output=args.output,
        name=args.name,
        overwrite=args.overwrite,
        opset=max(args.opset, ATHENA_OPSET),
        tolerance=args.tolerance,
        track_selection=args.track_selection,
    )
    print(
        f"{result.path}: Athena interface, outputs {', '.join(result.gnn_config['output_names'])}"
        f"; parity max discrepancy {result.max_diff:.2g} for 0..{result.counts_checked - 1} "
        "constituents"
    )
