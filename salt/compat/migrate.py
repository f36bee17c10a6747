"""``salt migrate OLD.yaml [-o NEW.yaml]``: rewrite a salt-ml config in salt's own syntax.

``salt fit`` already reads salt-ml configs as they are; migrating makes the translation
permanent and idiomatic: on top of what :func:`~salt.compat.rewrite.translate_config` does, the
sizes salt derives itself (init-net, pooling and task input sizes) are removed, and the encoder
becomes a plain ``salt.models.TransformerEncoder`` where that can express it. Every change is
printed; an option without an equivalent stops the migration with one line saying what to write
instead.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from salt.compat.rewrite import Translation, translate_config
from salt.models.registers import ATTENTION_TYPES
from salt.models.transformer import TransformerEncoder

log = logging.getLogger(__name__)

_TRANSFORMERS = ("salt.models.Transformer", "salt.models.TransformerV2")


def _transformer_as_encoder(init_args: dict[str, Any]) -> dict[str, Any] | None:
    """TransformerEncoder init_args for a salt-ml Transformer without registers, else None."""
    accepted = inspect.signature(TransformerEncoder).parameters
    registers = int(init_args.get("num_registers", 1))  # salt-ml's default is one
    if registers and ("num_registers" not in accepted or init_args.get("drop_registers")):
        return None
    known = {"num_layers", "embed_dim", "out_dim", "norm", "attn_type", "do_final_norm"}
    known |= {"num_registers", "drop_registers", "mup", "dense_kwargs", "attn_kwargs"}
    if set(init_args) - known or not init_args.get("do_final_norm", True):
        return None  # options only the Transformer class checks: keep it
    attn = dict(init_args.get("attn_kwargs") or {})
    dense = dict(init_args.get("dense_kwargs") or {})
    if set(attn) - {"num_heads", "dropout", "attn_type"} or set(dense) - {
        "hidden_dim",
        "activation",
        "dropout",
        "gated",
    }:
        return None
    if attn.get("attn_type", init_args.get("attn_type", "torch-math")) not in ATTENTION_TYPES:
        return None
    embed_dim = int(init_args["embed_dim"])
    attention: dict[str, Any] = {"class_path": "salt.models.ScaledDotProductAttention"}
    if attn.get("dropout"):
        attention["init_args"] = {"dropout": float(attn["dropout"])}
    encoder: dict[str, Any] = {
        "embed_dim": embed_dim,
        "num_layers": int(init_args["num_layers"]),
        "out_dim": init_args.get("out_dim"),
        "norm_layer": init_args.get("norm", "LayerNorm"),
        "mha_config": {"num_heads": int(attn.get("num_heads", 1)), "attention": attention},
        "dense_config": {
            "hidden_layers": [int(dense.get("hidden_dim") or 2 * embed_dim)],
            "activation": dense.get("activation", "SiLU"),
            "dropout": float(dense.get("dropout", 0.0)),
            "gated": bool(dense.get("gated", False)),
        },
    }
    if registers:
        encoder["num_registers"] = registers
    if "norm_affine" in accepted and encoder["norm_layer"] == "LayerNorm":
        encoder["norm_affine"] = False  # salt-ml's LayerNorm learns no scale and shift
    if init_args.get("mup"):
        encoder["muP"] = True
    return encoder


def _drop_derived(net_args: dict[str, Any], changes: list[str]) -> None:
    """Remove the sizes salt derives from the variables and the encoder."""
    where = "model.model"
    for i, init_net in enumerate(net_args.get("init_nets") or []):
        config = init_net.get("dense_config") if isinstance(init_net, dict) else None
        if isinstance(config, dict) and config.pop("input_size", None) is not None:
            changes.append(f"{where}.init_nets[{i}].dense_config.input_size: removed (derived)")
    pool = net_args.get("pool_net")
    pool_args = pool.get("init_args") if isinstance(pool, dict) else None
    if isinstance(pool_args, dict) and pool_args.pop("input_size", None) is not None:
        changes.append(f"{where}.pool_net.input_size: removed (derived)")
    for i, task in enumerate(net_args.get("tasks") or []):
        args = task.get("init_args") if isinstance(task, dict) else None
        config = args.get("dense_config") if isinstance(args, dict) else None
        if not isinstance(config, dict):
            continue
        for key in ("input_size", "context_size"):
            if config.pop(key, None) is not None:
                changes.append(f"{where}.tasks[{i}].dense_config.{key}: removed (derived)")
        names = args.get("class_names") if isinstance(args, dict) else None
        if names and config.get("output_size") == len(names):
            config.pop("output_size")
            changes.append(f"{where}.tasks[{i}].dense_config.output_size: removed (derived)")


def migrate_config(config: Any, source: str = "config") -> Translation:
    """The salt-syntax form of a salt-ml config, with every change listed."""
    translation = translate_config(config, source)
    out, changes = translation.config, list(translation.changes)
    net = (out.get("model") or {}).get("model") if isinstance(out, dict) else None
    net_args = net.get("init_args") if isinstance(net, dict) else None
    if isinstance(net_args, dict):
        encoder = net_args.get("encoder")
        if isinstance(encoder, dict) and encoder.get("class_path") in _TRANSFORMERS:
            converted = _transformer_as_encoder(encoder.get("init_args") or {})
            if converted is None:
                changes.append(
                    "model.model.encoder: kept as salt.models.Transformer (options that only "
                    "it reads)"
                )
            else:
                net_args["encoder"] = {
                    "class_path": "salt.models.TransformerEncoder",
                    "init_args": converted,
                }
                changes.append(
                    f"model.model.encoder: {encoder['class_path']} -> "
                    "salt.models.TransformerEncoder"
                )
        _drop_derived(net_args, changes)
    return Translation(out, changes)


def migrate_main(argv: list[str] | None = None) -> int:
    """Entry point of ``salt migrate``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="salt migrate", description="Rewrite a salt-ml config in salt's own syntax."
    )
    parser.add_argument("config", type=Path, help="the salt-ml config (YAML)")
    parser.add_argument("-o", "--output", type=Path, help="write here (default: stdout)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)
    try:
        content = yaml.safe_load(args.config.read_text())
        if not isinstance(content, dict):
            raise ValueError(f"{args.config}: expected a YAML mapping")
        migrated = migrate_config(content, str(args.config))
    except (OSError, ValueError, yaml.YAMLError) as err:
        print(f"salt migrate: error: {err}", file=sys.stderr)
        return 2
    text = yaml.safe_dump(migrated.config, sort_keys=False)
    header = f"# migrated from {args.config.name} by salt migrate\n"
    for change in migrated.changes or ["nothing to change: already in salt's syntax"]:
        print(f"  {change}", file=sys.stderr)
    if args.output is None:
        sys.stdout.write(header + text)
        return 0
    if args.output.exists() and not args.overwrite:
        print(
            f"salt migrate: error: '{args.output}' exists; pass --overwrite to replace it",
            file=sys.stderr,
        )
        return 2
    tmp = args.output.with_name(f".{args.output.name}.tmp{os.getpid()}")
    tmp.write_text(header + text)
    tmp.replace(args.output)
    print(f"written {args.output}", file=sys.stderr)
    return 0


__all__ = ["migrate_config", "migrate_main"]
