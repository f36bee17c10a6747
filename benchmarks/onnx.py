"""Inference speed: the exported ONNX network in onnxruntime vs the PyTorch model (eager).

Measures, in the same run on the same jets and the same number of threads:

- latency at batch 1: each of the first validation jets alone with exactly its tracks and no
  padding (how C++ inference calls the network, jet by jet); the median over jets;
- throughput at batch 1000: jets/s on 1000 validation jets padded to the longest.

Without --ckpt_path it builds its own run in a temporary directory: demo data and one short
epoch of the model in --config, then exports it with ``to_onnx``'s code path (parity check
included). The default is full-size GN2 with the jet tagger alone (GN2.yaml + GN2_noaux.yaml);
``--config configs/GN2.yaml`` adds the track-origin and vertexing heads, whose pairwise head
needs several GB at batch 1000 (use e.g. ``--batch 200``). The runtimes take turns in every
repeat, so load from other processes on the machine hits them alike.

    python benchmarks/onnx.py [--ckpt_path RUN/ckpts/X.ckpt | --config A.yaml [B.yaml ...]]
                              [--threads 2] [--jets 200] [--batch 1000] [--repeats 3]
                              [--num_train 500] [--num_val 1000] [--parity_jets 500]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named onnx.py: run as a script, its folder comes first on sys.path and would
# shadow the onnx package for everything imported below.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import functools
import logging
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import torch

from salt.export.onnx_export import (
    DEFAULT_PARITY_JETS,
    OnnxWrapper,
    _arguments,
    export_graph,
    export_onnx,
    input_descs,
    load_run,
    real_case,
)
from salt.export.parity import ParityCase, onnx_feed

ROOT = Path(__file__).resolve().parents[1]


def train_run(work: Path, configs: list[Path], num_train: int, num_val: int) -> Path:
    """Demo data and one short epoch (``num_train`` jets) of the model in ``configs``, validated
    on ``num_val`` jets (also those timed); returns the checkpoint."""
    from salt.cli.main import main
    from salt.data.demo import generate_demo_data

    data = generate_demo_data(
        work / "data", n_train=max(2000, num_train), n_val=num_val, n_test=100, seed=1
    )
    code = main(
        [
            "fit",
            *[arg for config in configs for arg in ("--config", str(config))],
            f"--data.train_file={data['train']}",
            f"--data.val_file={data['val']}",
            f"--data.test_file={data['test']}",
            f"--data.norm_dict={data['norm_dict']}",
            f"--data.class_dict={data['class_dict']}",
            "--data.num_inputs=null",
            f"--data.num_train={num_train}",
            f"--data.batch_size={min(250, num_train)}",
            "--data.num_workers=0",
            "--trainer.max_epochs=1",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            f"--trainer.default_root_dir={work / 'logs'}",
            "--log_suffix=bench",
            "-n",
            "GN2",
        ]
    )
    if code:
        raise SystemExit(f"training the benchmark model failed (exit code {code})")
    return sorted((work / "logs" / "GN2_bench" / "ckpts").glob("epoch=*.ckpt"))[-1]


def one_jet(case: ParityCase, row: int) -> ParityCase:
    """Jet ``row`` alone, with only its real constituents (no padding)."""
    inputs, masks = {}, {}
    for name, x in case.inputs.items():
        if name in case.masks:
            keep = ~case.masks[name][row]
            inputs[name] = x[row][keep].unsqueeze(0).contiguous()
            masks[name] = torch.zeros(1, int(keep.sum()), dtype=torch.bool)
        else:
            inputs[name] = x[row : row + 1].contiguous()
    return ParityCase(f"jet {row}", inputs, masks)


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` (after none: warm up by hand where it matters)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", type=Path, default=None, help="benchmark this run")
    parser.add_argument(
        "--config",
        type=Path,
        nargs="+",
        default=[ROOT / "configs" / "GN2.yaml", ROOT / "configs" / "GN2_noaux.yaml"],
        help="model configs to train when no --ckpt_path is given",
    )
    parser.add_argument("--threads", type=int, default=2, help="threads for both runtimes")
    parser.add_argument("--jets", type=int, default=200, help="jets timed one by one")
    parser.add_argument("--batch", type=int, default=1000, help="jets in the throughput batch")
    parser.add_argument("--repeats", type=int, default=3, help="timings of the large batch")
    parser.add_argument(
        "--num_train",
        type=int,
        default=500,
        help="training jets of the run built without --ckpt_path",
    )
    parser.add_argument(
        "--num_val", type=int, default=1000, help="validation jets of that run (the timed ones)"
    )
    parser.add_argument(
        "--parity_jets",
        type=int,
        default=DEFAULT_PARITY_JETS,
        help="validation jets of the export's parity check (0: generated jets only)",
    )
    args = parser.parse_args()
    for name in ("salt", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ckpt = args.ckpt_path or train_run(work, args.config, args.num_train, args.num_val)
        onnx_path = work / "network.onnx"
        exported = export_onnx(ckpt, output=onnx_path, parity_jets=args.parity_jets)
        slot = exported.metadata["onnx"]["pad_sentinel"]
        module, datamodule = load_run(ckpt.resolve().parent.parent / "config.yaml", ckpt)
        batch = real_case(datamodule, args.batch)
        descs = input_descs(datamodule)
        wrapper = OnnxWrapper(module, descs, list(module.model.tasks), module.name, False)

        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        label = "onnxruntime" + (" (padded slot)" if slot else "")
        sessions = {label: ort.InferenceSession(str(onnx_path), options)}
        if slot:
            # the graph fails on jets without constituents unless every sequence gets a padded
            # slot; the plain graph is timed too, to show what the slot costs
            example = batch.rows(0, 8)
            with torch.no_grad():
                named = wrapper.predict(example.inputs, example.masks)
            plain = export_graph(wrapper.eval(), _arguments(descs, example), descs, named, 17)
            sessions["onnxruntime, no slot*"] = ort.InferenceSession(plain, options)

        def torch_run(case: ParityCase) -> Callable[[], object]:
            def run() -> object:
                with torch.inference_mode():
                    return [o.value for o in wrapper.predict(case.inputs, case.masks)]

            return run

        def onnx_run(session: ort.InferenceSession, case: ParityCase) -> Callable[[], object]:
            feed = onnx_feed(descs, case, session)
            return lambda: session.run(None, feed)

        jets = [one_jet(batch, row) for row in range(min(args.jets, batch.num_jets))]
        runs = {"pytorch eager": torch_run}
        for label, session in sessions.items():
            runs[label] = functools.partial(onnx_run, session)
        # batch 1: every jet once per runtime, the runtimes in turn (in blocks: thread pools
        # that spin-wait after a call would slow the next runtime), three rounds; each jet's
        # best time, then the median over jets
        latency = {label: [float("inf")] * len(jets) for label in runs}
        for _ in range(3):
            for label, run in runs.items():
                calls = [run(jet) for jet in jets]
                calls[0]()
                for i, call in enumerate(calls):
                    latency[label][i] = min(latency[label][i], timed(call, 1)[0])
        # the full batch: one warm-up each, then the runtimes in turn in every repeat
        batch_runs = {label: run(batch) for label, run in runs.items()}
        for fn in batch_runs.values():
            fn()
        seconds: dict[str, list[float]] = {label: [] for label in runs}
        for _ in range(args.repeats):
            for label, fn in batch_runs.items():
                seconds[label].append(timed(fn, 1)[0])
        rows = {
            label: (statistics.median(latency[label]), batch.num_jets / statistics.median(t))
            for label, t in seconds.items()
        }

    n_tracks = [int((~j.masks["tracks"]).sum()) for j in jets] if "tracks" in batch.masks else [0]
    params = sum(p.numel() for p in module.model.parameters())
    print(
        f"\nmodel: {module.name} ({params:,} parameters), threads: {args.threads}, "
        f"torch {torch.__version__}, onnxruntime {ort.__version__}"
    )
    print(
        f"batch 1: {len(jets)} jets alone, {np.median(n_tracks):.0f} tracks median "
        f"(max {max(n_tracks)}); batch {batch.num_jets}: padded to "
        f"{batch.masks['tracks'].shape[1] if 'tracks' in batch.masks else 0}\n"
    )
    base_latency, base_rate = rows["pytorch eager"]
    header = f"{'runtime':<26}{'batch 1 latency':>17}{'vs eager':>10}"
    header += f"{f'batch {batch.num_jets} jets/s':>20}{'vs eager':>10}"
    print(header)
    print("-" * len(header))
    for label, (lat, rate) in rows.items():
        print(
            f"{label:<26}{lat * 1e3:>14.3f} ms{base_latency / lat:>9.2f}x"
            f"{rate:>20,.0f}{rate / base_rate:>9.2f}x"
        )
    if len(rows) > 2:
        print("* not shippable: fails on jets without constituents (see salt.export.onnx_export)")


if __name__ == "__main__":
    main()
