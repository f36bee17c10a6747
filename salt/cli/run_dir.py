"""The run directory: where a training run keeps everything needed to reproduce and evaluate it
(its name, protection against reuse, metadata and the checkpoint ``salt test`` picks)."""

from __future__ import annotations

import atexit
import contextlib
import getpass
import os
import platform
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from salt.callbacks.checkpoint import lowest_val_loss
from salt.safe_load import validate_checkpoint
from salt.utils.claim import OutputClaim
from salt.utils.files import atomic_write_text
from salt.utils.versions import versions

RUN_DIR_ENV = "SALT_RUN_DIR"


def run_dir_name(name: str, suffix: str | None) -> str:
    stamp = suffix or datetime.now().strftime("%Y%m%d-T%H%M%S")
    return f"{name}_{stamp}"


_CLAIMS: dict[Path, OutputClaim] = {}  # held until the command ends
_CREATED: list[Path] = []  # directories made only to hold a claim


def _refuse_reuse(path: Path, force: bool) -> None:
    if path.exists() and any(path.iterdir()) and not force:
        raise FileExistsError(
            f"run directory '{path}' already exists; pass --force (or --overwrite) to reuse it, "
            "or choose another --name/--log_suffix"
        )


def check_free(path: Path, force: bool) -> None:
    """Refuse to reuse a run directory unless the user said so, and claim it: of two fits
    started at once with the same name, one fails here instead of both writing into it."""
    _refuse_reuse(path, force)
    key = path.resolve()
    if key not in _CLAIMS:
        claim = OutputClaim(path, "choose another --name/--log_suffix")
        if not path.parent.exists():
            _CREATED.append(path.parent)
        claim.acquire()
        _CLAIMS[key] = claim
        atexit.register(release_claims)
        _refuse_reuse(path, force)  # the previous holder may have filled it meanwhile


def release_claims() -> None:
    """Give back the run directory claims when the command ends, and remove a directory made
    only to hold one (a fit that failed before writing leaves nothing behind)."""
    for claim in _CLAIMS.values():
        claim.release()
    _CLAIMS.clear()
    for directory in reversed(_CREATED):
        with contextlib.suppress(OSError):
            directory.rmdir()  # only if empty
    _CREATED.clear()


def check_resumable(root: Path, ckpt_path: str | None) -> None:
    """``--ckpt_path last`` needs a run with a ``last.ckpt``: say so instead of silently
    training from scratch (Lightning's behaviour when it finds none)."""
    if ckpt_path != "last":
        return
    if not (root / "metadata.yaml").is_file():
        raise FileNotFoundError(
            f"--ckpt_path last: '{root}' is not a run directory (no metadata.yaml); resume with "
            "--config <run>/config.yaml --ckpt_path last"
        )
    ckpts = root / "ckpts"
    if not any(ckpts.glob("last*.ckpt")):
        others = sorted(p.name for p in ckpts.glob("*.ckpt"))
        hint = f"; pass one of {others[-3:]} as --ckpt_path" if others else ""
        raise FileNotFoundError(f"--ckpt_path last: no last.ckpt in '{ckpts}'{hint}")
    if (ckpts / "last.ckpt").is_file():  # a cut-off last.ckpt is named before loggers start
        validate_checkpoint(ckpts / "last.ckpt")


def git_hash() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def write_metadata(path: Path, extra: dict[str, Any]) -> None:
    meta = {
        "start_time": datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "user": _user(),
        "git_hash": git_hash(),
        "versions": versions(),
        **extra,
    }
    atomic_write_text(path, yaml.safe_dump(meta, sort_keys=False))


def update_metadata(path: Path, **values: Any) -> None:
    meta = yaml.safe_load(path.read_text()) if path.exists() else {}
    meta.update(values)
    atomic_write_text(path, yaml.safe_dump(meta, sort_keys=False))


def copy_into(run_dir: Path, source: str | Path | None) -> Path | None:
    if source is None:
        return None
    target = run_dir / Path(source).name
    shutil.copyfile(source, target)
    return target


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def best_checkpoint(ckpt_dir: Path) -> Path:
    """The checkpoint with the lowest validation loss in its name (``...val_loss=X.ckpt``)."""
    best = lowest_val_loss(str(path) for path in ckpt_dir.glob("*.ckpt"))
    if best is None:
        raise FileNotFoundError(
            f"no checkpoint with a validation loss in '{ckpt_dir}'; pass --ckpt_path"
        )
    return Path(best)


def absolute_spec(spec: Any) -> Any:
    """A file spec with absolute paths (globs kept), group by group for ``{group: files}``."""
    if spec is None:
        return None
    if isinstance(spec, dict):
        return {name: absolute_spec(files) for name, files in spec.items()}
    if isinstance(spec, list | tuple):
        return [str(Path(s).resolve()) for s in spec]
    return str(Path(spec).resolve())


def check_name(name: str, suffix: str | None) -> None:
    """A run name and suffix are one directory name each: a ``/`` or ``..`` would put the run
    outside ``default_root_dir`` (or overwrite another one's files)."""
    for key, value in (("name", name), ("log_suffix", suffix)):
        if value is None and key == "log_suffix":
            continue
        text = str(value)
        if not text.strip() and key == "name":
            raise ValueError("--name: expected a run name, got an empty string")
        if "/" in text or os.sep in text or text in (".", ".."):
            raise ValueError(
                f"--{key} '{text}': expected one directory name (no '/' and not '..'); "
                "use --trainer.default_root_dir to choose where runs go"
            )


def choose_run_dir(
    root: Path, name: str, suffix: str | None, resuming: bool, force: bool
) -> tuple[Path, bool]:
    """The run directory of a fit, and whether this process must check that it is free.

    Processes started by the DDP launcher reuse the directory rank 0 chose (``SALT_RUN_DIR``);
    with srun/torchrun every process starts salt itself and only global rank 0 checks the name.
    A resumed run (``--config <run>/config.yaml --ckpt_path ...``) continues in its directory.
    """
    rank_env = ("RANK", "SLURM_PROCID", "LOCAL_RANK")
    global_rank = next((int(os.environ[k]) for k in rank_env if k in os.environ), 0)
    inherited = os.environ.get(RUN_DIR_ENV) if global_rank > 0 else None
    if inherited:
        return Path(inherited), False
    if resuming:
        return root, False
    check_name(name, suffix)
    if (root / "metadata.yaml").is_file():  # a run's own config: a new run goes beside it
        root = root.parent
    run_dir = root / run_dir_name(name, suffix)
    if global_rank == 0:
        check_free(run_dir, force)
    return run_dir, global_rank == 0
