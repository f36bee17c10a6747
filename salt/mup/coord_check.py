"""Coordinate check: are activation sizes independent of the width? (Tensor Programs V, D.1)

Train a few steps at several widths and record, for every layer, the mean absolute value of
its output coordinates at each step. In the standard parametrisation (SP) they grow with the
width once training moves the weights (an Adam update changes a hidden activation by
~ lr * width); in a correct muP they stay flat, which is what makes hyperparameters transfer.
Written to the shape folder: ``coord_check.csv`` (one row per parametrisation, width, step and
layer), ``coord_check.md`` (the last step, one row per layer) and ``coord_check.png``.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

OUTPUTS = ("coord_check.csv", "coord_check.md", "coord_check.png")
READOUT = "encoder.out_proj"

# (width, parametrisation) -> (model, optimizer)
ModelFactory = Callable[[int, str], tuple[nn.Module, torch.optim.Optimizer]]
# (model, batch) -> loss
StepLoss = Callable[[nn.Module, Any], Tensor]


@dataclass(frozen=True)
class Record:
    parametrisation: str
    width: int
    step: int
    layer: str
    mean_abs: float


def salt_layers(network: Any) -> dict[str, nn.Module]:
    """The layers of a SaltModel whose outputs are recorded, in the order of the data flow."""
    layers: dict[str, nn.Module] = {}
    for index, net in enumerate(getattr(network, "init_nets", None) or []):
        layers[f"init_nets.{index} ({net.input_name})"] = net
    encoder: Any = getattr(network, "encoder", None)
    if encoder is not None:
        for index, layer in enumerate(getattr(encoder, "layers", None) or []):
            for part in ("attn", "ffn"):
                if hasattr(layer, part):
                    layers[f"encoder.layers.{index}.{part}"] = getattr(layer, part)
            layers[f"encoder.layers.{index}"] = layer
        if isinstance(getattr(encoder, "out_proj", None), nn.Linear):
            layers[READOUT] = encoder.out_proj
    if getattr(network, "pool_net", None) is not None:
        layers["pool_net"] = network.pool_net
    for task in getattr(network, "tasks", None) or []:
        layers[f"tasks.{task.name}"] = task
    return layers


def _first_tensor(output: Any) -> Tensor | None:
    if isinstance(output, Tensor):
        return output
    if isinstance(output, tuple | list) and output and isinstance(output[0], Tensor):
        return output[0]
    return None


def coord_check(
    make: ModelFactory,
    batches: Sequence[Any],
    step_loss: StepLoss,
    widths: Iterable[int],
    parametrisations: Iterable[str] = ("muP", "SP"),
    layers: Callable[[nn.Module], dict[str, nn.Module]] = salt_layers,
    seed: int = 0,
) -> list[Record]:
    """Train ``len(batches)`` steps per width and parametrisation; record mean |output|.

    At step ``t`` (1-based) the layer outputs of the forward pass on ``batches[t-1]`` are
    recorded, before that step's update: step 1 is the initialisation. Every width sees the
    same batches and the same seed. ``make(width, parametrisation)`` returns the model (in
    training mode) and its optimizer; ``layers(model)`` the modules to record.
    """
    records: list[Record] = []
    for parametrisation in parametrisations:
        for width in widths:
            torch.manual_seed(seed)
            model, optimizer = make(width, parametrisation)
            model.train()
            current: dict[str, float] = {}
            handles = []
            for name, module in layers(model).items():

                def hook(
                    _: nn.Module,
                    __: Any,
                    output: Any,
                    name: str = name,
                    current: dict[str, float] = current,
                ) -> None:
                    tensor = _first_tensor(output)
                    if tensor is not None:
                        current[name] = float(tensor.detach().abs().mean())

                handles.append(module.register_forward_hook(hook))
            try:
                for step, batch in enumerate(batches, start=1):
                    current.clear()
                    loss = step_loss(model, batch)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    if not torch.isfinite(loss):
                        log.warning(
                            "%s width %d: non-finite loss at step %d", parametrisation, width, step
                        )
                    records.extend(
                        Record(parametrisation, width, step, name, value)
                        for name, value in current.items()
                    )
            finally:
                for handle in handles:
                    handle.remove()
    return records


def spread(
    records: Sequence[Record], parametrisation: str, layer: str, step: int | None = None
) -> float:
    """max / min of a layer's mean |output| over the widths at ``step`` (default: the last)."""
    rows = [r for r in records if r.parametrisation == parametrisation and r.layer == layer]
    if not rows:
        raise KeyError(f"no record of layer '{layer}' ({parametrisation})")
    step = max(r.step for r in rows) if step is None else step
    values = [r.mean_abs for r in rows if r.step == step]
    low = min(values)
    return math.inf if low == 0 else max(values) / low


def write_csv(records: Sequence[Record], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["parametrisation", "width", "step", "layer", "mean_abs"])
        for r in records:
            writer.writerow([r.parametrisation, r.width, r.step, r.layer, f"{r.mean_abs:.6g}"])


def markdown(records: Sequence[Record]) -> str:
    """One table per parametrisation: mean |output| per layer (rows) and width (columns) at the
    last step, and the spread (largest / smallest) over the widths."""
    lines = [
        "# muP coordinate check",
        "",
        "Mean |output coordinate| of each layer after the given number of training steps, per",
        "width. Under muP the rows stay roughly flat; in the standard parametrisation (SP) they",
        "grow with the width. `spread` = largest / smallest value over the widths. (At step 1,",
        "the initialisation, the muP readout shrinks like 1/sqrt(width) by design; training",
        "steps bring it to a width-independent size.)",
    ]
    for parametrisation in dict.fromkeys(r.parametrisation for r in records):
        rows = [r for r in records if r.parametrisation == parametrisation]
        step = max(r.step for r in rows)
        widths = sorted({r.width for r in rows})
        layers = list(dict.fromkeys(r.layer for r in rows))
        table = {(r.layer, r.width): r.mean_abs for r in rows if r.step == step}
        lines += [
            "",
            f"## {parametrisation}, step {step}",
            "",
            "| layer | " + " | ".join(f"width {w}" for w in widths) + " | spread |",
            "|---|" + "---:|" * (len(widths) + 1),
        ]
        for layer in layers:
            values = [table.get((layer, w)) for w in widths]
            cells = " | ".join("" if v is None else f"{v:.4g}" for v in values)
            known = [v for v in values if v is not None]
            ratio = max(known) / min(known) if known and min(known) > 0 else math.inf
            lines.append(f"| {layer} | {cells} | {ratio:.2f} |")
    return "\n".join(lines) + "\n"


def plot(records: Sequence[Record], path: Path, max_panels: int = 4) -> None:
    """Mean |output| against width (log-log), one line per layer; rows: parametrisations,
    columns: a few steps from the first to the last."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parametrisations = list(dict.fromkeys(r.parametrisation for r in records))
    steps = sorted({r.step for r in records})
    if len(steps) > max_panels:
        picks = {round(i * (len(steps) - 1) / (max_panels - 1)) for i in range(max_panels)}
        steps = [steps[i] for i in sorted(picks)]
    layers = list(dict.fromkeys(r.layer for r in records))
    colours = plt.get_cmap("viridis")(torch.linspace(0, 0.95, max(len(layers), 1)).tolist())
    fig, axes = plt.subplots(
        len(parametrisations),
        len(steps),
        figsize=(3.2 * len(steps), 2.8 * len(parametrisations)),
        squeeze=False,
        sharex=True,
    )
    for row, parametrisation in enumerate(parametrisations):
        for col, step in enumerate(steps):
            ax = axes[row][col]
            for colour, layer in zip(colours, layers):
                points = sorted(
                    (r.width, r.mean_abs)
                    for r in records
                    if r.parametrisation == parametrisation and r.layer == layer and r.step == step
                )
                if points:
                    xs, ys = zip(*points)
                    style = "-o" if layer == READOUT else "-"
                    ax.plot(xs, ys, style, color=colour, label=layer, lw=1.2, ms=3)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{parametrisation}, step {step}", fontsize=9)
            if row == len(parametrisations) - 1:
                ax.set_xlabel("width")
            if col == 0:
                ax.set_ylabel("mean |output|")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def write_outputs(records: Sequence[Record], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / name for name in OUTPUTS]
    write_csv(records, paths[0])
    paths[1].write_text(markdown(records))
    plot(records, paths[2])
    return paths


# ------------------------------------------------------------------------- from a salt config


def _salt_step_loss(module: Any, batch: Any) -> Tensor:
    inputs, pad_masks, labels = batch
    _, losses = module(inputs, pad_masks, labels)
    weights = {task.name: task.weight for task in module.model.tasks}
    return sum(weights[name] * loss for name, loss in losses.items())  # type: ignore[return-value]


def coord_check_from_config(
    configs: Sequence[str | Path],
    extra_args: Sequence[str] = (),
    widths: Sequence[int] = (32, 64, 128, 256),
    steps: int = 5,
    lr: float | None = None,
    parameter: str | None = None,
    parametrisations: Sequence[str] = ("muP", "SP"),
    overwrite: bool = False,
) -> list[Path]:
    """Run the coordinate check on the config's model and training data; write the outputs.

    ``parameter`` is the width block of ``model.muP_config`` that is scanned (default
    ``embed_dim`` when present); the others keep the config's values. The muP models load the
    ``storeshapes`` of ``shape_path`` (run :func:`salt.mup.setup.setup_mup` first) and train with
    the muP AdamW; the SP models are the same config with ``muP`` off and plain AdamW. ``lr``
    defaults to the config's ``lrs_config.max``. Returns the written paths.
    """
    from salt.mup import mup_optimizer, set_base_shapes
    from salt.mup.config import shape_dir, storeshapes_path, width_parameters
    from salt.mup.setup import build_cli, config_args
    from salt.training.optim import parameter_groups

    args = config_args(configs, ["--data.num_workers=0", *extra_args])
    first = build_cli(args, "base")
    muP_config = first.muP_config
    params = width_parameters(muP_config)
    names = [p.name for p in params]
    scanned = parameter or ("embed_dim" if "embed_dim" in names else names[0])
    if scanned not in names:
        raise ValueError(f"--parameter: '{scanned}' is not a width block of muP_config {names}")
    out_dir = shape_dir(muP_config)
    existing = [out_dir / n for n in OUTPUTS if (out_dir / n).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"'{existing[0]}' exists; pass --overwrite to replace it")
    if "muP" in parametrisations and not storeshapes_path(muP_config).is_file():
        raise FileNotFoundError(
            f"no '{storeshapes_path(muP_config)}': run setup_muP without --check first"
        )
    lrs = first.model.lrs_config
    rate = float(lr if lr is not None else lrs["max"])
    weight_decay = float(lrs.get("weight_decay", 0.0))

    datamodule = first.datamodule
    datamodule.setup("fit")
    loader = iter(datamodule.train_dataloader())
    batches = []
    for _ in range(steps):
        try:
            batches.append(next(loader))
        except StopIteration:
            break
    if len(batches) < steps:
        log.warning("only %d training batches for %d steps", len(batches), steps)

    def make(width: int, parametrisation: str) -> tuple[nn.Module, torch.optim.Optimizer]:
        muP = parametrisation == "muP"
        cli = build_cli(args, {scanned: width}, muP=muP, where=f"--widths {width} ({scanned})")
        module = cli.model
        if muP:
            set_base_shapes(module.model, muP_config)
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(
            parameter_groups(module.model, weight_decay), lr=rate
        )
        if muP:
            optimizer = mup_optimizer(optimizer)
        return module, optimizer

    records = coord_check(
        make,
        batches,
        _salt_step_loss,
        widths,
        parametrisations,
        layers=lambda module: salt_layers(getattr(module, "model", module)),
    )
    paths = write_outputs(records, out_dir)
    for parametrisation in dict.fromkeys(r.parametrisation for r in records):
        if any(r.layer == READOUT for r in records):
            log.info(
                "%s: readout mean |output| spread over widths %s: %.2f",
                parametrisation,
                list(widths),
                spread(records, parametrisation, READOUT),
            )
    log.info("coordinate check written to %s", ", ".join(str(p) for p in paths))
    return paths


__all__ = [
    "Record",
    "coord_check",
    "coord_check_from_config",
    "markdown",
    "plot",
    "salt_layers",
    "spread",
    "write_outputs",
]
