"""Start a fit from existing weights (not a resume) and freeze parts of the network.

Resuming (``--ckpt_path``) restores everything: weights, optimizer, scheduler, epoch and data
position. Fine-tuning wants only the weights, often only some of them (the encoder of a
pre-trained tagger, not its heads), and then keeps some modules fixed. Both are set under
``model:`` as ``init_weights`` and ``freeze``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)


@dataclass
class InitWeights:
    """Which weights to take from which file.

    Args:
        path: a salt/Lightning checkpoint or a plain ``state_dict`` file.
        include: patterns (``fnmatch``) of the file's keys to take, e.g.
            ``["model.init_nets.*", "model.encoder.*"]``; default all.
        exclude: patterns of keys to leave out, e.g. ``["model.tasks.*"]`` for new heads, or
            ``["normaliser.*"]`` to normalise with this config's norm dict instead of the
            pre-trained network's.
        rename: ``{old prefix: new prefix}`` applied to the file's keys before matching the
            model, e.g. ``{"model.encoder.": "model.backbone.encoder."}``.
        strict: every selected key must exist in the model with the same shape (otherwise
            those keys are skipped with a warning).
    """

    path: str
    include: list[str] = field(default_factory=lambda: ["*"])
    exclude: list[str] = field(default_factory=list)
    rename: dict[str, str] = field(default_factory=dict)
    strict: bool = True


def read_state_dict(path: str | Path, where: str) -> dict[str, Tensor]:
    """The tensors of a checkpoint (its ``state_dict``) or of a plain state_dict file."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{where}: file '{path}' does not exist")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for unreadable files
        raise ValueError(f"{where}: cannot read '{path}' as a torch file ({err})") from None
    state = content.get("state_dict", content) if isinstance(content, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{where}: '{path}' is not a state_dict or a checkpoint with one")
    return state


def _renamed(key: str, rename: dict[str, str]) -> str:
    for old, new in rename.items():
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def select_weights(
    config: InitWeights, model: nn.Module, where: str = "model.init_weights"
) -> dict[str, Tensor]:
    """The tensors of ``config.path`` to copy into ``model``, checked before anything runs."""
    state = read_state_dict(config.path, where)
    own = model.state_dict()
    chosen: dict[str, Tensor] = {}
    for key, value in state.items():
        if not any(fnmatchcase(key, p) for p in config.include):
            continue
        if any(fnmatchcase(key, p) for p in config.exclude):
            continue
        chosen[_renamed(key, config.rename)] = value
    if not chosen:
        raise ValueError(
            f"{where}: no key of '{config.path}' matches include {config.include} / exclude "
            f"{config.exclude} (the file has e.g. {', '.join(sorted(state)[:3])})"
        )
    unknown = sorted(k for k in chosen if k not in own)
    mismatched = sorted(k for k in chosen if k in own and chosen[k].shape != own[k].shape)
    if config.strict and (unknown or mismatched):
        key = (unknown or mismatched)[0]
        detail = (
            "not in this model"
            if key in unknown
            else f"shape {tuple(chosen[key].shape)} in the file, "
            f"{tuple(own[key].shape)} in this model"
        )
        raise ValueError(
            f"{where}: '{key}' from '{config.path}' is {detail} "
            f"({len(unknown)} unknown, {len(mismatched)} mismatched keys; use exclude/rename, "
            "or strict: false to skip them)"
        )
    for kind, keys in (("not in this model", unknown), ("with another shape", mismatched)):
        if keys:
            log.warning("%s: skipping %d keys %s: %s", where, len(keys), kind, ", ".join(keys))
    return {k: v for k, v in chosen.items() if k in own and k not in mismatched}


def load_selected(model: nn.Module, weights: dict[str, Tensor], source: str) -> None:
    """Copy the selected tensors in; every other tensor keeps its fresh initialisation."""
    model.load_state_dict(weights, strict=False)
    fresh = len(model.state_dict()) - len(weights)
    log.info("loaded %d tensors from %s (%d left at initialisation)", len(weights), source, fresh)


def freeze_modules(model: nn.Module, patterns: list[str], where: str = "model.freeze") -> int:
    """Turn off gradients of the modules whose names match ``patterns`` (``fnmatch``, e.g.
    ``model.encoder`` or ``model.init_nets.*``); returns the number of frozen parameters."""
    names = [n for n, _ in model.named_modules() if n]
    frozen = 0
    for pattern in patterns:
        matches = [n for n in names if fnmatchcase(n, pattern)]
        if not matches:
            top = sorted({".".join(n.split(".")[:2]) for n in names if "." in n})
            raise ValueError(
                f"{where}: no module matches '{pattern}' (modules are e.g. {', '.join(top[:8])})"
            )
        for name in matches:
            for param in model.get_submodule(name).parameters():
                if param.requires_grad:
                    param.requires_grad_(False)
                    frozen += param.numel()
    log.info("%s: %d parameters frozen", where, frozen)
    return frozen
