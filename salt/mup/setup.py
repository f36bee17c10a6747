"""Build the muP base and delta models from a salt config and write their ``storeshapes``.

``mup`` learns which dimensions are widths by comparing two models that differ only in them:
the *base* model (the width at which hyperparameters are tuned; muP equals the standard
parametrisation there) and a *delta* model. Both are built exactly as ``salt fit`` would build
the network (same configs, same derived sizes), with the width parameters of
``model.muP_config`` set to ``parameter_base`` and ``parameter_delta``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace
from torch import nn

from salt.cli.salt_cli import SaltCLI
from salt.models.attention import MultiheadAttention
from salt.models.configs import DenseConfig
from salt.mup.config import (
    ENCODER_MHA_KEYS,
    STORESHAPES,
    MuPConfig,
    Variant,
    WidthParameter,
    encoder_sizes,
    shape_dir,
    width_parameters,
)

log = logging.getLogger(__name__)

# what setup_muP writes into shape_path, besides the storeshapes file
OUTPUTS = (
    STORESHAPES,
    "base_model.pt",
    "delta_model.pt",
    "base_config.yaml",
    "delta_config.yaml",
)
# init-net (Dense) arguments a width parameter may set
INIT_NET_KEYS = ("output_size", "hidden_layers")


def _args(ns: Any) -> Any:
    return ns.init_args if isinstance(ns, Namespace) and "init_args" in ns else ns


def config_args(configs: Sequence[str | Path], extra: Sequence[str] = ()) -> list[str]:
    """``--config`` arguments with paths resolved against the working directory."""
    args: list[str] = []
    for config in configs:
        path = Path(config).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"--config: no such file '{config}' (from '{Path.cwd()}')")
        args += ["--config", str(path.resolve())]
    return [*args, *extra]


def _encoder_defaults(encoder: Any) -> tuple[int, int, int | None]:
    """The encoder's (embed_dim, num_heads, head_dim) as configured, with the defaults."""
    enc = _args(encoder)
    mha = dict(getattr(enc, "mha_config", None) or {})
    default_heads = inspect.signature(MultiheadAttention).parameters["num_heads"].default
    return int(enc.embed_dim), int(mha.get("num_heads") or default_heads), mha.get("head_dim")


def apply_widths(
    cfg: Namespace, params: list[WidthParameter], values: dict[str, int], where: str
) -> None:
    """Set every width parameter of ``params`` to ``values[name]`` on a parsed salt config.

    Runs on the namespace before salt derives the sizes, so everything downstream (the
    encoder's input width, heads' input sizes) follows. ``where`` names the values in errors.
    """
    net = _args(cfg.model.model)
    encoder = getattr(net, "encoder", None)
    if encoder is not None:
        embed_dim, num_heads, head_dim = _encoder_defaults(encoder)
        encoder_sizes(params, values, embed_dim, num_heads, head_dim, where)
    for param in params:
        value = values[param.name]
        for module, argument in param.targets:
            key = f"model.muP_config.{param.name}"
            if module == "init_nets":
                if argument not in INIT_NET_KEYS:
                    raise ValueError(
                        f"{key}.parameter_name: init_nets take {list(INIT_NET_KEYS)} (set in "
                        f"their dense_config), got '{argument}'"
                    )
                for init_net in net.init_nets or []:
                    args = _args(init_net)
                    dense: DenseConfig = dict(args.dense_config or {})  # type: ignore[assignment]
                    if argument == "hidden_layers":
                        dense["hidden_layers"] = [value] * len(dense.get("hidden_layers") or [])
                    else:
                        dense["output_size"] = value
                    args.dense_config = dense
            else:  # encoder
                if encoder is None:
                    raise ValueError(f"{key}.apply_to: the model has no encoder")
                enc = _args(encoder)
                if argument in ENCODER_MHA_KEYS:
                    enc.mha_config = {**dict(enc.mha_config or {}), argument: value}
                elif argument in enc and argument not in ("mha_config", "dense_config"):
                    setattr(enc, argument, value)
                else:
                    names = [k for k in vars(enc) if k not in ("mha_config", "dense_config")]
                    raise ValueError(
                        f"{key}.parameter_name: the encoder has no argument '{argument}', "
                        f"expected one of {[*names, *ENCODER_MHA_KEYS]}"
                    )


def set_mup_flags(cfg: Namespace, enabled: bool) -> None:
    """Switch the muP option of the init nets and the encoder (the standard parametrisation
    of the coordinate check is the same config with ``enabled=False``)."""
    net = _args(cfg.model.model)
    for init_net in net.init_nets or []:
        args = _args(init_net)
        dense = dict(args.dense_config or {})
        if dense.get("muP") or enabled:
            dense["muP"] = enabled
        args.dense_config = dense
    encoder = getattr(net, "encoder", None)
    if encoder is not None and "muP" in _args(encoder):
        _args(encoder).muP = enabled


def mup_config_of(cfg: Namespace) -> dict:
    """``model.muP_config`` of a parsed config, or a ValueError saying how to add it."""
    config = cfg.model.get("muP_config") if "muP_config" in cfg.model else None
    if not config:
        raise ValueError(
            "model.muP_config: missing; add shape_path and a width block (e.g. embed_dim) "
            "under model, see configs/GN2_muP.yaml"
        )
    return dict(config)


def configured_value(cfg: Namespace, param: WidthParameter) -> int:
    """The config's own value of a width parameter (read from its first target)."""
    net = _args(cfg.model.model)
    module, argument = param.targets[0]
    value: Any
    if module == "encoder":
        if argument in ENCODER_MHA_KEYS:
            _, heads, head_dim = _encoder_defaults(net.encoder)
            value = heads if argument == "num_heads" else head_dim
        else:
            value = getattr(_args(net.encoder), argument, None)
    else:
        value = dict(_args(net.init_nets[0]).dense_config or {}).get(argument)
        value = value[0] if isinstance(value, list) and value else value
    if value is None:
        raise ValueError(
            f"model.muP_config.{param.name}: the config sets no {module} {argument} to start from"
        )
    return int(value)


class WidthCLI(SaltCLI):
    """``SaltCLI(run=False)`` that sets the width parameters before salt derives the sizes.

    ``muP_config`` keeps the config's ``model.muP_config``; the built SaltModule gets none (the
    base shapes are what is being made, or the caller applies them). ``resolved_config`` is the
    derived config as ``salt fit`` would save it.
    """

    muP_config: dict
    resolved_config: Namespace

    def __init__(
        self,
        args: list[str],
        values: dict[str, int] | Variant,
        muP: bool = True,
        where: str | None = None,
    ) -> None:
        self._values = values
        self._muP = muP
        self._where = where
        super().__init__(args=args, run=False)

    def derive(self, cfg: Namespace, need_files: bool = True) -> None:
        """Set the width parameters, then derive the sizes as every salt command does."""
        self.muP_config = mup_config_of(cfg)
        params = width_parameters(self.muP_config)
        values = self._values
        if isinstance(values, str):
            chosen = {p.name: p.value(values) for p in params}
            named = ", ".join(f"{p.name}.parameter_{values}={chosen[p.name]}" for p in params)
        else:
            unknown = sorted(set(values) - {p.name for p in params})
            if unknown:
                raise ValueError(
                    f"model.muP_config: no width block {unknown}, expected one of "
                    f"{[p.name for p in params]}"
                )
            chosen = {p.name: values.get(p.name) or configured_value(cfg, p) for p in params}
            named = ", ".join(f"{name}={value}" for name, value in chosen.items())
        apply_widths(cfg, params, chosen, self._where or f"model.muP_config ({named})")
        if not self._muP:
            set_mup_flags(cfg, False)
        cfg.model.muP_config = None
        super().derive(cfg, need_files=need_files)
        # as written to shape_path: before the run directory and plugins are filled in
        self.resolved_config = cfg.clone()


def build_cli(
    args: list[str],
    values: dict[str, int] | Variant,
    muP: bool = True,
    where: str | None = None,
) -> WidthCLI:
    """Build the model and data of ``args`` (salt config arguments) with the width parameters
    at ``values``: ``'base'``, ``'delta'`` or ``{block name: value}`` (other blocks keep the
    config's values). ``muP=False`` builds the same network in the standard parametrisation;
    ``where`` names the values in errors.
    """
    return WidthCLI(args, values, muP, where)


def dump_config(cli: WidthCLI, muP_config: dict) -> str:
    """The resolved config of a built model, as ``salt fit`` would save it."""
    saved = cli.resolved_config.clone()
    saved.model.muP_config = muP_config
    saved.trainer.default_root_dir = None
    return cli.parser.dump(saved, skip_none=False, skip_link_targets=True)


def check_widths(base: nn.Module, infshapes: dict[str, Any]) -> None:
    """Fail, naming the layer, where mup would: a Linear that maps a width to a fixed size must
    be the readout (``mup.MuReadout``), and at least one dimension must be a width."""
    from mup import MuReadout

    if not any(dim.isinf() for shape in infshapes.values() for dim in shape):
        raise ValueError(
            "model.muP_config: no parameter changes shape between the base and the delta "
            "model, so there is no width for muP to scale; vary embed_dim (and num_heads with "
            "it for a fixed head width)"
        )
    for name, module in base.named_modules():
        if not isinstance(module, nn.Linear) or isinstance(module, MuReadout):
            continue
        fan_out, fan_in = infshapes[f"{name}.weight"][:2]
        if fan_in.isinf() and not fan_out.isinf():
            raise ValueError(
                f"model.muP_config: layer '{name}' maps a width (base {fan_in.base_dim}) to a "
                f"fixed size ({fan_out.dim}) and is not the muP readout: make its output grow "
                "with the width too (e.g. leave the encoder's dense_config.hidden_layers unset: "
                "it defaults to 2 * embed_dim), or let the encoder's out_dim (muP: true) do it"
            )


def setup_mup(
    configs: Sequence[str | Path],
    extra_args: Sequence[str] = (),
    overwrite: bool = False,
) -> Path:
    """Write the base and delta models, their configs and ``storeshapes`` to ``shape_path``.

    ``configs`` are salt config files (merged in order, like ``salt fit --config``), resolved
    against the working directory, as is ``shape_path``. Existing outputs are kept unless
    ``overwrite``. Returns the storeshapes path.
    """
    import mup

    args = config_args(configs, extra_args)
    base_cli = build_cli(args, "base")
    muP_config = base_cli.muP_config
    out_dir = shape_dir(muP_config)
    existing = [out_dir / name for name in OUTPUTS if (out_dir / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"'{existing[0]}' exists; pass --overwrite to replace the muP setup in '{out_dir}'"
        )
    delta_cli = build_cli(args, "delta")
    base, delta = base_cli.model.model, delta_cli.model.model
    from salt.mup import has_mup_layers

    if not has_mup_layers(base):
        log.warning(
            "no layer has muP: true; set it on the encoder (and the init nets' dense_config) "
            "before training with these shapes"
        )
    infshapes = mup.shape.zip_infshapes(base, delta)
    check_widths(base, infshapes)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / STORESHAPES
    mup.make_base_shapes(base, delta, savefile=str(path))
    for name, cli, model in (("base", base_cli, base), ("delta", delta_cli, delta)):
        torch.save(model.state_dict(), out_dir / f"{name}_model.pt")
        (out_dir / f"{name}_config.yaml").write_text(dump_config(cli, muP_config))
    widths = [n for n, shape in infshapes.items() if any(d.isinf() for d in shape)]
    log.info(
        "muP base shapes written to %s (%d of %d parameters scale with the width)",
        path,
        len(widths),
        len(infshapes),
    )
    return path


def config_mup(configs: Sequence[str | Path], extra_args: Sequence[str] = ()) -> MuPConfig:
    """Only the ``model.muP_config`` of the configs (builds the base model to read it)."""
    config: MuPConfig = build_cli(config_args(configs, extra_args), "base").muP_config  # type: ignore[assignment]
    return config


__all__ = [
    "WidthCLI",
    "apply_widths",
    "build_cli",
    "check_widths",
    "config_args",
    "config_mup",
    "setup_mup",
]
