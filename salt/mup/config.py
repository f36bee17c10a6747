"""``model.muP_config``: where the muP base shapes live and which widths define them.

muTransfer (Tensor Programs V, arXiv 2203.03466) tunes hyperparameters on a small model and
reuses them on a wide one. The ``mup`` library needs to know which dimensions are "widths": it
compares a *base* and a *delta* model that differ only in those, and stores the base sizes in a
``storeshapes`` file. This module describes that choice in YAML::

    model:
      muP_config:
        shape_path: temp_muP            # default ./temp_muP/
        embed_dim:                      # one block per width parameter
          apply_to: [init_nets, encoder]
          parameter_name: [output_size, embed_dim]
          parameter_base: 64
          parameter_delta: 32

and checks it (no ``mup`` import here: the config is read without the library).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict

DEFAULT_SHAPE_PATH = "temp_muP"
STORESHAPES = "storeshapes"
# where each width may be set: an init net's Dense, or the encoder (its own arguments, or its
# attention's num_heads/head_dim)
MODULES = ("init_nets", "encoder")
ENCODER_MHA_KEYS = ("num_heads", "head_dim")
Variant = Literal["base", "delta"]


class MuPParameter(TypedDict, total=False):
    """One width parameter: set ``parameter_name[i]`` of ``apply_to[i]`` to the same value.

    Keys:
        apply_to: the modules it applies to, ``init_nets`` (every init net's ``dense_config``)
            and/or ``encoder`` (its init arguments, or ``num_heads``/``head_dim`` of its
            ``mha_config``).
        parameter_name: the argument set in each module, e.g. ``[output_size, embed_dim]``.
        parameter_base: its value in the base model (where hyperparameters are tuned).
        parameter_delta: its value in the delta model; any value other than the base one (it
            only tells ``mup`` which dimensions scale).
    """

    apply_to: list[str] | str
    parameter_name: list[str] | str
    parameter_base: int
    parameter_delta: int


class MuPConfig(TypedDict, total=False):
    """``model.muP_config``: the base shapes of a muP model (see ``configs/GN2_muP.yaml``).

    Keys:
        shape_path: folder of the ``storeshapes`` file, the base and delta models and their
            configs written by ``setup_muP`` (default ``./temp_muP/``, relative to the working
            directory).
        embed_dim: the embedding width scanned between the base and delta models.
        num_heads: the number of attention heads scanned between them (with ``embed_dim``,
            for a fixed head width).
    """

    shape_path: str | None
    embed_dim: MuPParameter
    num_heads: MuPParameter


@dataclass(frozen=True)
class WidthParameter:
    """A checked width block of ``muP_config``."""

    name: str
    targets: tuple[tuple[str, str], ...]  # (module, argument)
    base: int
    delta: int

    def value(self, variant: Variant) -> int:
        return self.base if variant == "base" else self.delta


def _where(name: str, key: str | None = None) -> str:
    return f"model.muP_config.{name}" + (f".{key}" if key else "")


def _as_list(value: object, where: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise ValueError(f"{where}: expected a name or a non-empty list of names, got {value!r}")
    if not all(isinstance(item, str) and item for item in items):
        raise ValueError(f"{where}: expected names, got {value!r}")
    return list(items)


def _positive_int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{where}: expected a positive int, got {value!r}")
    return value


def width_parameters(config: MuPConfig | dict) -> list[WidthParameter]:
    """The width blocks of ``config``, checked key by key.

    Raises a ValueError naming the key for a missing or malformed entry, an unknown module,
    lists of different lengths, equal base and delta values, or a config without any block.
    """
    if not isinstance(config, dict):
        raise ValueError(f"model.muP_config: expected a mapping, got {type(config).__name__}")
    known = {"shape_path", *MuPConfig.__annotations__}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(
            f"model.muP_config: unknown key(s) {unknown}; expected shape_path and width blocks "
            f"{sorted(known - {'shape_path'})}"
        )
    params: list[WidthParameter] = []
    for name in sorted(known - {"shape_path"}):
        block = config.get(name)
        if block is None:
            continue
        if not isinstance(block, dict):
            raise ValueError(f"{_where(name)}: expected a mapping, got {block!r}")
        for key in MuPParameter.__annotations__:
            if block.get(key) is None:
                raise ValueError(f"{_where(name, key)}: missing")
        extra = sorted(set(block) - set(MuPParameter.__annotations__))
        if extra:
            raise ValueError(f"{_where(name)}: unknown key(s) {extra}")
        modules = _as_list(block["apply_to"], _where(name, "apply_to"))
        names = _as_list(block["parameter_name"], _where(name, "parameter_name"))
        if len(modules) != len(names):
            raise ValueError(
                f"{_where(name)}: apply_to has {len(modules)} entries but parameter_name has "
                f"{len(names)}; give one parameter name per module"
            )
        for module in modules:
            if module not in MODULES:
                raise ValueError(
                    f"{_where(name, 'apply_to')}: unknown module '{module}', expected one of "
                    f"{list(MODULES)}"
                )
        base = _positive_int(block["parameter_base"], _where(name, "parameter_base"))
        delta = _positive_int(block["parameter_delta"], _where(name, "parameter_delta"))
        if base == delta:
            raise ValueError(
                f"{_where(name)}: parameter_base and parameter_delta are both {base}; they must "
                "differ, the difference is what tells mup which dimensions are widths"
            )
        params.append(WidthParameter(name, tuple(zip(modules, names)), base, delta))
    if not params:
        raise ValueError(
            "model.muP_config: no width parameter; add a block such as embed_dim: {apply_to: "
            "[init_nets, encoder], parameter_name: [output_size, embed_dim], parameter_base: "
            "..., parameter_delta: ...}"
        )
    return params


def shape_dir(config: MuPConfig | dict) -> Path:
    """The folder of the base shapes, relative paths taken from the working directory."""
    return Path(config.get("shape_path") or DEFAULT_SHAPE_PATH)


def storeshapes_path(config: MuPConfig | dict) -> Path:
    return shape_dir(config) / STORESHAPES


def encoder_sizes(
    params: list[WidthParameter],
    values: dict[str, int],
    embed_dim: int,
    num_heads: int,
    head_dim: int | None,
    where: str,
) -> tuple[int, int]:
    """The encoder's (embed_dim, num_heads) once the width parameters take ``values``.

    ``values`` maps a block name to the value it takes (its base, delta, or a scanned width);
    ``embed_dim``, ``num_heads`` and ``head_dim`` are the config's own. Without an explicit
    ``head_dim`` the attention splits ``embed_dim`` over the heads, so it must divide: a
    ValueError naming ``where`` (e.g. ``model.muP_config.embed_dim.parameter_base=60``) says
    so. That is checked here, before any model is built.
    """
    for param in params:
        for module, argument in param.targets:
            if module != "encoder":
                continue
            if argument == "embed_dim":
                embed_dim = values[param.name]
            elif argument == "num_heads":
                num_heads = values[param.name]
            elif argument == "head_dim":
                head_dim = values[param.name]
    if head_dim is None and embed_dim % num_heads:
        raise ValueError(
            f"{where}: embed_dim={embed_dim} is not divisible by num_heads={num_heads}; every "
            "base, delta and scanned width must be a multiple of the number of heads"
        )
    return embed_dim, num_heads


def check_divisible(
    params: list[WidthParameter], embed_dim: int, num_heads: int, head_dim: int | None = None
) -> None:
    """Check that the base and the delta encoder both split ``embed_dim`` over the heads."""
    for variant in ("base", "delta"):
        values = {p.name: p.value(variant) for p in params}  # type: ignore[arg-type]
        changed = ", ".join(f"{p.name}.parameter_{variant}={p.value(variant)}" for p in params)  # type: ignore[arg-type]
        encoder_sizes(
            params, values, embed_dim, num_heads, head_dim, f"model.muP_config ({changed})"
        )


__all__ = [
    "DEFAULT_SHAPE_PATH",
    "STORESHAPES",
    "MuPConfig",
    "MuPParameter",
    "WidthParameter",
    "check_divisible",
    "encoder_sizes",
    "shape_dir",
    "storeshapes_path",
    "width_parameters",
]
