"""Sample mixing: every chunk of an epoch takes its share of rows from every file of every group.

Training files are often written one physics process (or one flavour) at a time. Permuting
blocks mixes them only as far as a chunk happens to hold blocks of every file; here the mixture
is by construction. An epoch is a fixed number of rows per file (its *quota*): groups share the
epoch by their sampling weights and files share their group's rows by their sizes. The quota
rows of each file are read in its own (per-epoch permuted) block order, and all files are
interleaved into one virtual epoch order in which every stretch of rows holds each file's share
(to within a row or two). Ranks and chunks are contiguous stretches of that order, so the
sharding, batch and chunk rules of :mod:`salt.data.plan` apply unchanged.

Like :mod:`salt.data.plan`, pure functions of (sizes, weights, seed, epoch, rank): no I/O.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from salt.data.plan import Load, rank_loads, shuffled_segments, take_rows


def exact(value: float) -> Fraction:
    """A weight as an exact fraction of what the user wrote (0.3 is 3/10, not the binary float).

    Exact arithmetic makes the quotas reproducible and lets proportional weights such as
    ``{a: 0.6, b: 0.4}`` for 600 and 400 rows use every row.
    """
    return Fraction(value) if isinstance(value, int) else Fraction(repr(float(value)))


def check_sample_weights(
    weights: Mapping[str, float], groups: Sequence[str], key: str = "train_file"
) -> None:
    """Every weight positive and finite, and given for exactly the groups of ``data.<key>``.

    Raises:
        ValueError: one line naming the offending ``data.sample_weights`` key.
    """
    for name, value in weights.items():
        if name not in groups:
            raise ValueError(
                f"data.sample_weights: unknown group '{name}' (groups of data.{key}: "
                f"{', '.join(groups)})"
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"data.sample_weights.{name}={value!r}: expected a positive number")
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"data.sample_weights.{name}={value}: expected a positive number")
    missing = [g for g in groups if g not in weights]
    if missing:
        raise ValueError(
            f"data.sample_weights: no weight for group '{missing[0]}' of data.{key} "
            "(give every group a weight, or none for weights proportional to their rows)"
        )


def apportion(total: int, weights: Sequence[Fraction | int]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainders, exact).

    Each part is the floor or the ceiling of its exact share; ties go to the earlier entry.
    """
    whole = sum(weights)
    if whole <= 0:
        return [0] * len(weights)
    shares = [Fraction(total) * w / whole for w in weights]
    parts = [math.floor(s) for s in shares]
    by_remainder = sorted(range(len(shares)), key=lambda i: (parts[i] - shares[i], i))
    for i in by_remainder[: total - sum(parts)]:
        parts[i] += 1
    return parts


def prefix_counts(position: int, sizes: Sequence[int]) -> list[int]:
    """How many rows of each stratum are among the first ``position`` rows of the interleaving.

    Row ``j`` of a stratum of ``m`` rows sits at ``(j + 1/2) / m`` of the way through the
    interleaved order (ties: the earlier stratum first). Counts therefore never decrease as the
    position grows, so any stretch ``[a, b)`` of the order holds ``counts(b) - counts(a) >= 0``
    rows of each stratum, close to its share ``(b - a) * m / total``.
    """
    total = sum(sizes)
    if position <= 0 or total == 0:
        return [0] * len(sizes)
    if position >= total:
        return list(sizes)
    # rows at or before position / total: floor(position * m / total + 1/2), in integers
    counts = [min(m, (2 * position * m + total) // (2 * total)) for m in sizes]
    have = sum(counts)
    if have < position:  # take the next rows of the order
        heap = [
            (Fraction(2 * c + 1, 2 * m), s) for s, (c, m) in enumerate(zip(counts, sizes)) if c < m
        ]
        heapq.heapify(heap)
        for _ in range(position - have):
            _, s = heapq.heappop(heap)
            counts[s] += 1
            if counts[s] < sizes[s]:
                heapq.heappush(heap, (Fraction(2 * counts[s] + 1, 2 * sizes[s]), s))
    elif have > position:  # give back the last rows (all ties at the position were counted)
        behind = [
            (-Fraction(2 * c - 1, 2 * m), -s) for s, (c, m) in enumerate(zip(counts, sizes)) if c
        ]
        heapq.heapify(behind)
        for _ in range(have - position):
            _, minus_s = heapq.heappop(behind)
            s = -minus_s
            counts[s] -= 1
            if counts[s]:
                heapq.heappush(behind, (-Fraction(2 * counts[s] - 1, 2 * sizes[s]), -s))
    return counts


def epoch_rows(
    group_rows: Mapping[str, int], weights: Mapping[str, Fraction], wanted: int, key: str
) -> int:
    """Rows per epoch: ``wanted`` (``num_train``/``num_val``), or -1 for as many as possible.

    No row is drawn twice in an epoch, so the epoch ends when the first group runs out: at most
    ``min over groups of rows / weight share`` rows, which is every row of every group when the
    weights are proportional to the group sizes (the default).

    Raises:
        ValueError: ``wanted`` is larger than that, naming the group that runs out.
    """
    whole = sum(weights.values())
    capacity, limiting = min(
        (math.floor(rows * whole / weights[name]), name) for name, rows in group_rows.items()
    )
    if wanted < 0:
        return capacity
    split = key.removesuffix("_file")
    if wanted > capacity:
        if capacity == sum(group_rows.values()):
            raise ValueError(
                f"data.num_{split}={wanted} is larger than the {capacity} rows in data.{key}"
            )
        raise ValueError(
            f"data.num_{split}={wanted} is larger than the {capacity} rows an epoch can draw: "
            f"group '{limiting}' of data.{key} ({group_rows[limiting]} rows) runs out first at "
            "its sample weight"
        )
    return wanted


@dataclass(frozen=True)
class Stratum:
    """One file of a group: its rows in the concatenated source and its rows per epoch."""

    start: int
    rows: int
    quota: int


@dataclass(frozen=True)
class Mixture:
    """The epoch's composition: per group, per file, how many rows it contributes."""

    names: tuple[str, ...]
    groups: tuple[tuple[Stratum, ...], ...]

    @classmethod
    def build(
        cls,
        file_rows: Mapping[str, Sequence[int]],
        weights: Mapping[str, float] | None = None,
        wanted: int = -1,
        key: str = "train_file",
    ) -> Mixture:
        """Quotas for files listed per group in source order (group after group).

        Args:
            file_rows: ``{group: [rows of each file]}``.
            weights: ``{group: sampling weight}``; None = proportional to the group rows.
            wanted: rows per epoch, -1 for the most :func:`epoch_rows` allows.
            key: the config key, for messages.
        """
        names = list(file_rows)
        group_rows = {name: sum(rows) for name, rows in file_rows.items()}
        for name, rows in group_rows.items():
            if rows == 0:
                raise ValueError(f"data.{key}.{name}: the group has no rows")
        if weights is None:
            shares = {name: Fraction(rows) for name, rows in group_rows.items()}
        else:
            check_sample_weights(weights, names, key)
            shares = {name: exact(weights[name]) for name in names}
        total = epoch_rows(group_rows, shares, wanted, key)
        per_group = apportion(total, [shares[n] for n in names])
        start = 0
        groups = []
        for name, quota in zip(names, per_group):
            sizes = list(file_rows[name])
            strata = []
            for size, part in zip(sizes, apportion(quota, sizes)):
                strata.append(Stratum(start, size, part))
                start += size
            groups.append(tuple(strata))
        return cls(tuple(names), tuple(groups))

    @property
    def strata(self) -> list[Stratum]:
        return [s for group in self.groups for s in group]

    @property
    def group_quotas(self) -> dict[str, int]:
        return {n: sum(s.quota for s in g) for n, g in zip(self.names, self.groups)}

    @property
    def num_rows(self) -> int:
        return sum(s.quota for s in self.strata)

    def counts(self, position: int) -> list[int]:
        """Rows of each file among the first ``position`` rows of the epoch order.

        Groups are interleaved by their quotas first, then the files inside each group, so a
        group's share holds however many files it has.
        """
        quotas = list(self.group_quotas.values())
        out: list[int] = []
        for group, taken in zip(self.groups, prefix_counts(position, quotas)):
            out.extend(prefix_counts(taken, [s.quota for s in group]))
        return out

    def loads(
        self,
        batch_size: int,
        chunk_size: int,
        block_size: int,
        world_size: int = 1,
        rank: int = 0,
        rng: np.random.Generator | None = None,
    ) -> list[Load]:
        """One rank's loads for one epoch; each reads a stretch of every file.

        With ``rng`` every file's blocks are permuted (all ranks draw the same permutations
        from the shared (seed, epoch) generator), so each epoch reads a new selection of the
        files whose quota is below their size; without, the first quota rows in file order.
        """
        strata = self.strata
        orders = [shuffled_segments(s.rows, block_size, rng) for s in strata]
        out: list[Load] = []
        plan = rank_loads(self.num_rows, batch_size, chunk_size, world_size, rank)
        after = self.counts(plan[0][0][0]) if plan else []
        for (_, end), sizes in plan:
            before, after = after, self.counts(end)
            segments = [
                (s.start + a, s.start + b)
                for s, order, lo, hi in zip(strata, orders, before, after)
                for a, b in take_rows(order, lo, hi)
            ]
            out.append(Load(tuple(segments), sizes))
        return out

    def describe(self) -> str:
        """``ttbar 700 of 5000, zprime 300 of 300``: rows per epoch of each group."""
        return ", ".join(
            f"{name} {sum(s.quota for s in group)} of {sum(s.rows for s in group)}"
            for name, group in zip(self.names, self.groups)
        )
