"""A run directory kept on S3: written locally (a staging copy), mirrored to ``s3://bucket/folder``.

Lightning, the CSV logger and the prediction writer all write ordinary files; rather than teach
each of them S3, salt stages the run directory locally and uploads what changed (after each epoch,
after fit, after test). ``salt test`` goes the other way: the run directory is fetched into the
same staging place (only the checkpoint it needs), evaluated there, and the outputs go back up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from salt.s3.config import S3Settings, parse_s3_url, s3_url
from salt.s3.transfer import (
    ObjectInfo,
    S3Client,
    TransferResult,
    download_many,
    is_bookkeeping,
    upload_many,
)

log = logging.getLogger(__name__)

_SKIPPED_SUFFIXES = (".part", ".tmp")


def _client(client: S3Client | S3Settings) -> S3Client:
    return client if isinstance(client, S3Client) else S3Client(client)


def _join(prefix: str, rel: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{rel}" if prefix else rel


def local_files(local_dir: Path) -> list[Path]:
    """The files of a run directory worth keeping: not hidden bookkeeping, not half-written."""
    out = []
    for path in sorted(Path(local_dir).rglob("*")):
        rel = path.relative_to(local_dir)
        if any(is_bookkeeping(Path(part)) for part in rel.parts):
            continue
        if path.is_file() and not path.name.endswith(_SKIPPED_SUFFIXES):
            out.append(path)
    return out


def mirror_run_dir(
    local_dir: str | Path,
    remote_url: str,
    client: S3Client | S3Settings,
    progress: bool | None = None,
) -> list[TransferResult]:
    """Upload every new or changed file of ``local_dir`` to ``remote_url`` (``s3://b/folder``).

    Files whose size and ETag already match the object are skipped, so calling this after every
    epoch costs a listing plus what changed. Nothing remote is deleted.

    Raises:
        FileNotFoundError: the bucket does not exist.
        PermissionError, ConnectionError: as for any transfer.
    """
    local_dir = Path(local_dir)
    client = _client(client)
    bucket, prefix = parse_s3_url(remote_url)
    client.check_bucket(bucket)
    remote = {o.url: o for o in client.list(bucket, prefix)}
    items = [
        (path, s3_url(bucket, _join(prefix, path.relative_to(local_dir).as_posix())))
        for path in local_files(local_dir)
    ]
    results = upload_many(client, items, remote, progress)
    moved = [r for r in results if r.transferred]
    log.info(
        "%s -> %s: %d file(s) uploaded, %d unchanged",
        local_dir,
        remote_url,
        len(moved),
        len(results) - len(moved),
    )
    return results


def remote_files(remote_url: str, client: S3Client | S3Settings) -> list[ObjectInfo]:
    bucket, prefix = parse_s3_url(remote_url)
    return _client(client).list(bucket, prefix)


def check_remote_free(remote_url: str, client: S3Client | S3Settings, force: bool) -> None:
    """Refuse to write into a run directory that already has files on S3 (unless forced)."""
    if force:
        return
    bucket, _ = parse_s3_url(remote_url)
    client = _client(client)
    client.check_bucket(bucket)
    if remote_files(remote_url, client):
        raise FileExistsError(
            f"run directory '{remote_url}' already exists on S3; pass --force (or --overwrite) "
            "to reuse it, or choose another --name/--log_suffix"
        )


def best_checkpoint_name(names: list[str]) -> str | None:
    """The ``ckpts/*.ckpt`` with the lowest ``val_loss=`` in its name (as ``salt test`` picks)."""
    from salt.callbacks.checkpoint import lowest_val_loss

    return lowest_val_loss(name for name in names if name.startswith("ckpts/"))


def checkpoints_for(ckpt_path: str | None) -> Callable[[list[str]], set[str]]:
    """Which checkpoints a command needs: the named one (``last`` for resuming) or the best."""

    def choose(names: list[str]) -> set[str]:
        if ckpt_path in ("last", "ckpts/last.ckpt"):
            return {"ckpts/last.ckpt"} & set(names)
        if ckpt_path:
            return {n for n in names if ckpt_path.endswith(n)}
        best = best_checkpoint_name(names)
        return {best} if best else set()

    return choose


def fetch_run_dir(
    remote_url: str,
    local_dir: str | Path,
    client: S3Client | S3Settings,
    choose_checkpoints: Callable[[list[str]], set[str]] | None = None,
    progress: bool | None = None,
) -> list[TransferResult]:
    """Download a run directory (every file but the checkpoints not chosen) into ``local_dir``.

    Raises:
        FileNotFoundError: nothing under ``remote_url`` (or no bucket).
    """
    client = _client(client)
    bucket, prefix = parse_s3_url(remote_url)
    objects = client.list(bucket, prefix)
    if not objects:
        client.check_bucket(bucket)
        raise FileNotFoundError(
            f"no run directory at '{remote_url}' ({client.settings.where}): nothing under it"
        )
    base = len(_join(prefix, ""))
    names = [o.key[base:] for o in objects]
    ckpts = [n for n in names if n.endswith(".ckpt")]
    chosen = (choose_checkpoints or checkpoints_for(None))(ckpts)
    items = [
        (o.url, Path(local_dir) / name)
        for o, name in zip(objects, names)
        if not name.endswith(".ckpt") or name in chosen
    ]
    return download_many(client, items, progress)


class S3MirrorCallback(Callback):
    """Uploads the run directory after every training epoch (new checkpoints, metrics), so a
    job that dies loses at most an epoch on S3 too. Failures are logged, not fatal: the upload
    after fit reports them."""

    def __init__(self, local_dir: str | Path, remote_url: str, client: S3Client | S3Settings):
        self.local_dir = Path(local_dir)
        self.remote_url = remote_url
        self.client = _client(client)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        try:
            mirror_run_dir(self.local_dir, self.remote_url, self.client, progress=False)
        except Exception as err:  # keep training; the upload after fit raises
            log.warning("could not upload %s to %s: %s", self.local_dir, self.remote_url, err)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """A failed or preempted run: upload what there is (last.ckpt) so it can resume."""
        self.on_train_epoch_end(trainer, pl_module)


__all__ = [
    "S3MirrorCallback",
    "best_checkpoint_name",
    "check_remote_free",
    "fetch_run_dir",
    "local_files",
    "mirror_run_dir",
]
