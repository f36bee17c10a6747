"""Parity of an exported network with the PyTorch model it came from.

Every export is checked before the file is put in place: onnxruntime and the PyTorch model (in
eval mode) run on the same raw inputs and every output must agree. The inputs are real jets of
the validation file and generated jets that cover what a caller can send: every constituent
count from 0 to the maximum, padding beyond the last constituent (holding garbage rather than
zeros), real constituents not first, and single jets with exactly their constituents and no
padding (how C++ inference calls the network, jet by jet).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor

from salt.export.spec import ExportError, InputDesc

Reference = Callable[[dict[str, Tensor], dict[str, Tensor]], dict[str, np.ndarray]]


class ParityError(ExportError):
    """onnxruntime and PyTorch disagree (or onnxruntime fails) on some input."""


@dataclass
class ParityCase:
    """One batch of raw inputs and pad masks (True = padded) keyed by salt input type."""

    label: str
    inputs: dict[str, Tensor]
    masks: dict[str, Tensor]

    @property
    def num_jets(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    def rows(self, start: int, stop: int, label: str | None = None) -> ParityCase:
        """Jets ``start:stop`` (all constituent slots kept)."""
        return ParityCase(
            label or self.label,
            {k: v[start:stop] for k, v in self.inputs.items()},
            {k: v[start:stop] for k, v in self.masks.items()},
        )

    def split(self, size: int) -> list[ParityCase]:
        """Consecutive pieces of at most ``size`` jets, to bound memory (pairwise heads need
        O(L^2) per jet)."""
        n = self.num_jets
        return [
            self.rows(a, min(a + size, n), f"{self.label}, jets {a}-{min(a + size, n) - 1}")
            for a in range(0, n, size)
        ]


@dataclass
class OutputInfo:
    """What the comparison needs to know of an output."""

    name: str
    integer: bool
    argmax_of: tuple[str, ...] = ()
    task: str = ""


@dataclass
class ParityReport:
    """The largest disagreement over all cases, and where it was."""

    tolerance: float
    max_diff: float = 0.0
    worst: str = ""
    num_cases: int = 0
    num_jets: int = 0
    num_real_jets: int = 0
    ambiguous_argmax: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "tolerance": self.tolerance,
            "max_diff": self.max_diff,
            "worst": self.worst,
            "num_cases": self.num_cases,
            "num_jets": self.num_jets,
            "num_real_jets": self.num_real_jets,
            "ambiguous_argmax_entries_skipped": self.ambiguous_argmax,
        }


# -- inputs --------------------------------------------------------------------------------------
def _features(
    desc: InputDesc, shape: tuple[int, ...], norm: dict[str, tuple[Tensor, Tensor]], gen
) -> Tensor:
    """Values on the scale of the real inputs: mean + std * N(0, 1) per variable."""
    x = torch.randn(*shape, len(desc.variables), generator=gen)
    if desc.input_name in norm:
        mean, std = norm[desc.input_name]
        x = mean + std * x
    return x


def _prefix_mask(counts: Tensor, length: int) -> Tensor:
    return torch.arange(length)[None, :] >= counts[:, None]


def random_cases(
    descs: list[InputDesc],
    norm: dict[str, tuple[Tensor, Tensor]],
    max_lengths: dict[str, int],
    seed: int = 0,
) -> list[ParityCase]:
    """Generated batches covering every constituent count 0..max and unusual padding.

    Args:
        descs: the network inputs.
        norm: ``{input type: (mean, std)}`` so the generated values have realistic scales.
        max_lengths: the largest constituent count per constituent type.
        seed: of the generator (the cases are reproducible).
    """
    gen = torch.Generator().manual_seed(seed)
    jets = [d for d in descs if not d.constituent]
    types = [d for d in descs if d.constituent]
    longest = max([max_lengths[d.input_name] for d in types], default=0)
    rows = longest + 2  # counts 0..longest, plus one jet without any constituent

    def counts(k: int, desc: InputDesc, n_rows: int) -> Tensor:
        length = max_lengths[desc.input_name]
        c = (torch.arange(n_rows) + 3 * k) % (length + 1)
        c[-1] = 0
        return c

    def batch(label: str, n_rows: int, extra: int, garbage: bool, shuffle: bool) -> ParityCase:
        inputs = {d.input_name: _features(d, (n_rows,), norm, gen) for d in jets}
        masks = {}
        for k, d in enumerate(types):
            length = max_lengths[d.input_name] + extra
            x = _features(d, (n_rows, length), norm, gen)
            mask = _prefix_mask(counts(k, d, n_rows), length)
            if shuffle:
                order = torch.argsort(torch.rand(n_rows, length, generator=gen), dim=1)
                mask = mask.gather(1, order)
            fill = 1e3 * torch.randn(x.shape, generator=gen) if garbage else torch.zeros(())
            inputs[d.input_name] = torch.where(mask.unsqueeze(-1), fill, x)
            masks[d.input_name] = mask
        return ParityCase(label, inputs, masks)

    cases = [
        batch("every count 0..max, zero padding", rows, 0, False, False),
        batch("every count, 3 extra padded slots holding garbage", rows, 3, True, False),
        batch("every count, padding not at the end", rows, 1, False, True),
    ]
    for n in range(longest + 1):  # one jet, exactly its constituents, no padding
        inputs = {d.input_name: _features(d, (1,), norm, gen) for d in jets}
        masks = {}
        for d in types:
            length = min(n, max_lengths[d.input_name])
            inputs[d.input_name] = _features(d, (1, length), norm, gen)
            masks[d.input_name] = torch.zeros(1, length, dtype=torch.bool)
        cases.append(ParityCase(f"one jet with {n} constituents, no padding", inputs, masks))
    return cases


def empty_case(descs: list[InputDesc], norm: dict[str, tuple[Tensor, Tensor]]) -> ParityCase:
    """Two jets without any constituent: sequences of length 0, no padding slot."""
    gen = torch.Generator().manual_seed(1)
    inputs, masks = {}, {}
    for d in descs:
        shape = (2, 0) if d.constituent else (2,)
        inputs[d.input_name] = _features(d, shape, norm, gen)
        if d.constituent:
            masks[d.input_name] = torch.zeros(2, 0, dtype=torch.bool)
    return ParityCase("two jets without constituents", inputs, masks)


def onnx_feed(
    descs: list[InputDesc], case: ParityCase, session: ort.InferenceSession | None = None
) -> dict[str, np.ndarray]:
    """The inputs of a case as onnxruntime takes them (float32 features, bool masks); with a
    session, only those it has (the exporter drops inputs the model does not use)."""
    feed = {}
    for d in descs:
        feed[d.name] = case.inputs[d.input_name].float().numpy()
        if d.mask_name is not None:
            feed[d.mask_name] = case.masks[d.input_name].bool().numpy()
    if session is not None:
        accepted = {i.name for i in session.get_inputs()}
        feed = {k: v for k, v in feed.items() if k in accepted}
    return feed


# -- comparison ----------------------------------------------------------------------------------
def _diff(
    info: OutputInfo,
    ref: np.ndarray,
    got: np.ndarray,
    refs: dict[str, np.ndarray],
    tolerance: float,
) -> tuple[float, str, int]:
    """(discrepancy, description, skipped ambiguous entries) of one output on one case.

    Floats: ``max |ref - got| / max(1, |ref|)``, i.e. absolute for probabilities, relative for
    large regression values; NaN (padding) must be where the reference has it. Integers must
    match exactly, except an argmax where the reference's two most probable classes are closer
    than the tolerance (a tie that float rounding may break either way).
    """
    if ref.shape != got.shape:
        return float("inf"), f"shape {got.shape} instead of {ref.shape}", 0
    if info.integer:
        wrong = ref != got
        skipped = 0
        if info.argmax_of and wrong.any():
            probs = np.sort(np.stack([refs[n] for n in info.argmax_of], axis=-1), axis=-1)
            tie = (probs[..., -1] - probs[..., -2]) <= max(10 * tolerance, 1e-6)
            skipped = int((wrong & tie).sum())
            wrong &= ~tie
        n_wrong = int(wrong.sum())
        if n_wrong:
            return float("inf"), f"{n_wrong} of {ref.size} entries differ", skipped
        return 0.0, "", skipped
    nan_ref, nan_got = np.isnan(ref), np.isnan(got)
    if (nan_ref != nan_got).any():
        return float("inf"), "NaN where the reference has a value (or the reverse)", 0
    if not (~nan_ref).any():
        return 0.0, "", 0
    ref64, got64 = ref[~nan_ref].astype(np.float64), got[~nan_ref].astype(np.float64)
    diff = np.abs(ref64 - got64) / np.maximum(1.0, np.abs(ref64))
    worst = int(np.argmax(diff))
    return float(diff[worst]), f"{got64[worst]:.8g} vs {ref64[worst]:.8g}", 0


_NODE = re.compile(r"Name:\s*'([^']+)'")


def _runtime_failure(err: Exception, task_names: list[str]) -> str:
    """One line for an onnxruntime error, naming the task whose node failed when it can."""
    text = " ".join(str(err).split())
    node = _NODE.search(text)
    where = ""
    if node:
        where = f" in node {node.group(1)}"
        index = re.search(r"/tasks\.(\d+)/", node.group(1))
        if index and int(index.group(1)) < len(task_names):
            where += f" (task '{task_names[int(index.group(1))]}')"
    message = text.split("Status Message:")[-1].strip()
    message = re.sub(r"^\S+:\d+ .*?\) ", "", message)[:300]  # drop "<source>:<line> <function>"
    return f"onnxruntime failed{where}: {message}"


def check_parity(
    session: ort.InferenceSession,
    reference: Reference,
    descs: list[InputDesc],
    outputs: list[OutputInfo],
    cases: list[ParityCase],
    tolerance: float,
    num_real_jets: int = 0,
    task_names: list[str] | None = None,
) -> ParityReport:
    """Run every case through onnxruntime and the reference; raise :class:`ParityError` on the
    first case with a discrepancy above ``tolerance`` (the message names output and case)."""
    report = ParityReport(tolerance=tolerance, num_real_jets=num_real_jets)
    names = [o.name for o in outputs]
    for case in cases:
        refs = reference(case.inputs, case.masks)
        try:
            got = dict(zip(names, session.run(names, onnx_feed(descs, case, session))))
        except Exception as err:  # onnxruntime raises its own exception types
            failure = _runtime_failure(err, task_names or [])
            raise ParityError(f"parity check failed on '{case.label}': {failure}") from None
        report.num_cases += 1
        report.num_jets += case.num_jets
        for info in outputs:
            diff, detail, skipped = _diff(info, refs[info.name], got[info.name], refs, tolerance)
            report.ambiguous_argmax += skipped
            if diff >= report.max_diff:
                report.max_diff, report.worst = diff, f"{info.name} on '{case.label}'"
            if not diff <= tolerance:
                task = f" (task '{info.task}')" if info.task else ""
                message = (
                    f"output '{info.name}'{task} differs from PyTorch on '{case.label}': {detail} "
                    f"(discrepancy {diff:.3g} > tolerance {tolerance:g})"
                )
                report.failures.append(message)
                raise ParityError(f"parity check failed: {message}")
    return report


__all__ = [
    "OutputInfo",
    "ParityCase",
    "ParityError",
    "ParityReport",
    "check_parity",
    "empty_case",
    "onnx_feed",
    "random_cases",
]
