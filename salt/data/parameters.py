"""Parameter values for parameterised networks (Baldi et al., arXiv 1601.07913).

Signal jets carry the true parameter (e.g. the mass of the particle they come from);
background jets have none, so during training they get a value drawn from the signal values —
otherwise the parameter would give the label away. At test time every jet is evaluated at the
one hypothesis the user asks for.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np


class ParameterSpec(TypedDict, total=False):
    """Values of one parameter: those in the training set, the test value, draw probabilities."""

    train: list[float]
    test: float
    prob: list[float] | None


class ParameterSampler:
    """Assigns parameter values to jets, column by column of the PARAMETERS input.

    Args:
        specs: ``{variable: {train, test, prob}}`` in the order of ``variables``.
        variables: the PARAMETERS variables, in input order.
    """

    def __init__(self, specs: dict[str, ParameterSpec], variables: list[str]):
        if list(specs) != list(variables):
            raise ValueError(
                f"data.PARAMETERS: entries {list(specs)} must match data.variables.PARAMETERS "
                f"{list(variables)} in the same order"
            )
        self.train: list[np.ndarray] = []
        self.prob: list[np.ndarray] = []
        self.test: list[float] = []
        for name in variables:
            spec = specs[name]
            if "train" not in spec or "test" not in spec or not spec["train"]:
                raise ValueError(f"data.PARAMETERS.{name}: needs 'train' values and a 'test' value")
            values = np.asarray(spec["train"], dtype=np.float32)
            prob = spec.get("prob")
            if prob is None:
                p = np.full(len(values), 1.0 / len(values))
            else:
                p = np.asarray(prob, dtype=np.float64)
                if len(p) != len(values) or np.any(p < 0) or not np.isclose(p.sum(), 1.0):
                    raise ValueError(
                        f"data.PARAMETERS.{name}.prob: expected {len(values)} non-negative "
                        f"probabilities summing to 1, got {list(prob)}"
                    )
            self.train.append(values)
            self.prob.append(p / p.sum())
            self.test.append(float(spec["test"]))

    def for_training(self, params: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Background jets (value not among ``train``) get a value drawn with ``prob``."""
        out = params.copy()
        for col, (values, prob) in enumerate(zip(self.train, self.prob)):
            background = ~np.isin(out[:, col], values)
            drawn = rng.choice(values, size=int(background.sum()), p=prob)
            out[background, col] = drawn
        return out

    def for_testing(self, params: np.ndarray) -> np.ndarray:
        """Every jet is evaluated at the test hypothesis."""
        out = np.empty_like(params)
        out[:] = np.asarray(self.test, dtype=params.dtype)
        return out
