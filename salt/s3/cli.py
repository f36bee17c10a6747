"""Where S3 meets the command line: ``download_S3``, and the hooks ``salt fit|test`` call.

- :func:`download_s3_main` (``download_S3 --config a.yaml [--config b.yaml]``) downloads the data
  files a config names and writes ``<download_path>/config_local.yaml`` pointing at the copies.
- :func:`prepare_s3` runs on the parsed config before anything reads a file: it downloads what
  the config asks for (``download_S3``, ``s3://`` paths), points the config at the local copies,
  stages an ``s3://`` run directory locally, and hides the keys. It returns an
  :class:`S3Session` the CLI uses to mirror the run directory after fit and test.
- :func:`localize_config_args` lets ``salt test --config s3://bucket/run/config.yaml`` work.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, TypeVar

import yaml

from salt.s3.config import (
    DATA_KEYS,
    S3Settings,
    cache_root,
    is_s3_url,
    parse_s3_url,
    redacted,
    resolve_settings,
    s3_url,
)
from salt.s3.transfer import S3Client, TransferResult, download_many
from salt.utils.argv import config_positions
from salt.utils.files import current_umask

log = logging.getLogger(__name__)

T = TypeVar("T")
WAIT_ENV = "SALT_S3_WAIT_S"
LOCAL_CONFIG_HEADER = (
    "# written by download_S3: the config with data paths pointing at local copies\n"
)


# -- helpers on namespaces and dicts --------------------------------------------------------
def _get(obj: Any, key: str, default: Any = None) -> Any:
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _set(obj: Any, key: str, value: Any) -> None:
    if isinstance(obj, dict):
        obj[key] = value
    else:
        setattr(obj, key, value)


def _items(spec: Any) -> list[str]:
    if spec is None:
        return []
    if isinstance(spec, Mapping):  # {group: files} (sample mixing): every group's files
        return [item for files in spec.values() for item in _items(files)]
    return [str(s) for s in spec] if isinstance(spec, list | tuple) else [str(spec)]


def _abs(path: str | Path) -> str:
    return str(Path(path).expanduser().resolve())


def merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: ``override`` wins, nested dicts merge, lists are replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def load_configs(paths: Sequence[str | Path]) -> dict[str, Any]:
    """The YAML files merged in order (later files override earlier ones), for what must be
    read before salt's parser runs (S3 credentials to fetch an ``s3://`` config) and for the
    sections ``download_S3`` carries over unread; the ``data`` section it acts on is read by
    salt's parser (:func:`salt.cli.salt_cli.read_data_config`).

    Raises:
        FileNotFoundError: a file is missing.  ValueError: a file is not a YAML mapping.
    """
    merged: dict[str, Any] = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config '{path}' does not exist")
        content = yaml.safe_load(path.read_text()) or {}
        if not isinstance(content, Mapping):
            raise ValueError(f"config '{path}' is not a YAML mapping")
        merged = merge(merged, content)
    return merged


# -- once per node --------------------------------------------------------------------------
def _job_token() -> str:
    """Something every process of one distributed job shares (and the next job does not)."""
    for name in ("TORCHELASTIC_RUN_ID", "SLURM_JOB_ID", "LSB_JOBID", "PBS_JOBID"):
        if os.environ.get(name):
            step = os.environ.get("SLURM_STEP_ID", "")
            return f"{name}={os.environ[name]}.{step}"
    return ""


def _marker(tag: str) -> Path:
    digest = hashlib.sha256(tag.encode()).hexdigest()[:20]
    uid = os.getuid() if hasattr(os, "getuid") else 0
    # node-local on purpose: every node downloads its own copies
    return Path(tempfile.gettempdir()) / f"salt-s3-{uid}" / f"{digest}.json"


def once_per_node(
    tag: str,
    fn: Callable[[], T],
    timeout: float | None = None,
    local_rank: int | None = None,
) -> T | None:
    """Run ``fn`` on LOCAL_RANK 0; the node's other ranks wait for its marker file.

    Ranks started later by Lightning's launcher find the marker already written; with torchrun
    or SLURM the marker must also carry this job's id, so one left by an earlier job is ignored.
    """
    marker = _marker(tag)
    token = _job_token()
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if local_rank == 0:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.unlink(missing_ok=True)
        try:
            result = fn()
        except BaseException as err:
            _write_marker(marker, {"status": "failed", "job": token, "error": str(err)})
            raise
        _write_marker(marker, {"status": "done", "job": token})
        return result
    limit = float(os.environ.get(WAIT_ENV, "7200")) if timeout is None else timeout
    deadline = time.monotonic() + limit
    while True:
        record = _read_marker(marker)
        if record is not None and (not token or record.get("job") == token):
            if record.get("status") == "failed":
                raise ConnectionError(
                    f"local rank 0 failed to fetch from S3: {record.get('error')}"
                )
            return None
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"waited {limit:.0f} s for local rank 0 to fetch from S3 (marker '{marker}')"
            )
        time.sleep(0.2)


def _write_marker(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- the session ----------------------------------------------------------------------------
class S3Session:
    """What ``prepare_s3`` set up for one command: credentials, the local copies it made and,
    for an ``s3://`` run directory, its local staging copy."""

    def __init__(self, settings: S3Settings):
        self.settings = settings
        self.remote_root: str | None = None
        self.local_root: Path | None = None
        self.local_to_url: dict[str, str] = {}
        self._client: S3Client | None = None

    def __repr__(self) -> str:
        return f"S3Session(endpoint={self.settings.where!r}, remote_root={self.remote_root!r})"

    @property
    def client(self) -> S3Client:
        if self._client is None:
            self._client = S3Client(self.settings)
        return self._client

    # -- where things go ------------------------------------------------------------------
    def set_remote_root(self, url: str) -> Path:
        bucket, prefix = parse_s3_url(url)
        self.remote_root = s3_url(bucket, prefix)
        self.local_root = Path(_abs(cache_root() / bucket / prefix))
        return self.local_root

    def local_for(self, url: str) -> Path:
        """Local copy of ``s3://b/k``: inside the staged run directory, under download_path,
        or in the cache (``<cache>/<bucket>/<key>``)."""
        bucket, key = parse_s3_url(url)
        if self.remote_root and self.local_root and url.startswith(self.remote_root + "/"):
            return self.local_root / url[len(self.remote_root) + 1 :]
        if self.settings.download_path:
            return Path(self.settings.download_path) / key
        return cache_root() / bucket / key

    def remote_url_for(self, local: str | Path) -> str | None:
        """The S3 URL a local path stands for (a downloaded copy or a staged run file)."""
        text = _abs(local)
        if text in self.local_to_url:
            return self.local_to_url[text]
        if self.remote_root and self.local_root:
            root = str(self.local_root)
            if text == root:
                return self.remote_root
            if text.startswith(root + os.sep):
                return f"{self.remote_root}/{Path(text).relative_to(root).as_posix()}"
        return None

    def _url_of(self, key: str, item: str) -> str:
        if is_s3_url(item):
            return item
        if not self.settings.bucket:
            raise ValueError(
                f"data.config_S3.bucket is not set: needed to download data.{key} '{item}' "
                "(or give it as s3://bucket/key)"
            )
        return s3_url(self.settings.bucket, item.lstrip("/"))

    def _expand(self, key: str, url: str) -> list[str]:
        """An ``s3://`` glob (``.../train_*.h5``) as the sorted URLs it matches."""
        bucket, pattern = parse_s3_url(url)
        if not glob.has_magic(pattern):
            return [url]
        prefix = pattern[: min(pattern.find(c) for c in "*?[" if c in pattern)]
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        keys = [o.key for o in self.client.list(bucket, folder) if fnmatchcase(o.key, pattern)]
        if not keys:
            raise FileNotFoundError(f"data.{key}: the glob '{url}' matches no object")
        return [s3_url(bucket, k) for k in sorted(keys)]

    # -- downloads ------------------------------------------------------------------------
    def plan_data(self, data: Any, keys: Sequence[str]) -> tuple[list[tuple[str, Path]], dict]:
        """``[(url, local)]`` to download and ``{key: new value}`` for the config."""
        items: list[tuple[str, Path]] = []
        values: dict[str, Any] = {}
        for key in keys:
            spec = _get(data, key)
            if spec is None:
                continue
            if isinstance(spec, Mapping):  # {group: files}: localised group by group
                values[key] = {
                    name: self._plan_spec(f"{key}.{name}", files, items)
                    for name, files in spec.items()
                }
            else:
                values[key] = self._plan_spec(key, spec, items)
        return items, values

    def _plan_spec(self, key: str, spec: Any, items: list[tuple[str, Path]]) -> Any:
        """The local value of one path/glob/list, adding its downloads to ``items``."""
        locals_: list[str] = []
        for item in _items(spec):
            for url in self._expand(key, self._url_of(key, item)):
                dest = self.local_for(url)
                items.append((url, dest))
                locals_.append(str(dest))
        return locals_ if isinstance(spec, list | tuple) or len(locals_) > 1 else locals_[0]

    def download(
        self, items: Sequence[tuple[str, Path]], progress: bool | None = None
    ) -> list[TransferResult]:
        """Download (LOCAL_RANK 0 only; other ranks wait) and remember the local copies."""
        for url, dest in items:
            self.local_to_url[_abs(dest)] = url
        if not items:
            return []
        tag = json.dumps(sorted((u, _abs(d)) for u, d in items))
        results = once_per_node(tag, lambda: download_many(self.client, items, progress))
        return results or []

    # -- the run directory ----------------------------------------------------------------
    def check_free(self, run_dir: str | Path, force: bool) -> None:
        """The S3 side of ``check_free``: refuse an existing remote run directory."""
        from salt.s3.mirror import check_remote_free

        remote = self.remote_url_for(run_dir)
        if remote is not None:
            check_remote_free(remote, self.client, force)

    def mirror(self, local_dir: str | Path, progress: bool | None = None) -> list[TransferResult]:
        """Upload what changed in a staged run directory (no-op if it is not one)."""
        from salt.s3.mirror import mirror_run_dir

        remote = self.remote_url_for(local_dir)
        if remote is None:
            return []
        return mirror_run_dir(local_dir, remote, self.client, progress)

    def callback(self, run_dir: str | Path) -> Any:
        """A Lightning callback uploading the run directory after every epoch (or None)."""
        from salt.s3.mirror import S3MirrorCallback

        remote = self.remote_url_for(run_dir)
        return None if remote is None else S3MirrorCallback(run_dir, remote, self.client)

    def restore_saved(self, saved: Any) -> None:
        """Make a config about to be saved portable: local copies back to their ``s3://``
        URLs (the data files, the staged run directory) and the keys as placeholders."""
        data = _get(saved, "data")
        for key in DATA_KEYS:
            value = _get(data, key)
            if value is not None:
                _set(data, key, self._to_urls(value))
        model = _get(saved, "model")
        if _get(model, "norm_dict") is not None:
            _set(model, "norm_dict", self._to_urls(_get(model, "norm_dict")))
        trainer = _get(saved, "trainer")
        root = _get(trainer, "default_root_dir")
        if root is not None:
            _set(trainer, "default_root_dir", self._to_urls(root))
        if _get(data, "config_S3") is not None:
            _set(data, "config_S3", redacted(_get(data, "config_S3")))

    def _to_urls(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {name: self._to_urls(v) for name, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._to_urls(v) for v in value]
        if isinstance(value, str | Path) and not is_s3_url(str(value)):
            return self.remote_url_for(value) or value
        return value


def download_keys(settings: S3Settings, data: Any) -> list[str]:
    """The ``data`` keys to download: ``download_files``, or every file key that is set."""
    if settings.download_files:
        return list(settings.download_files)
    return [k for k in DATA_KEYS if _get(data, k) is not None]


def _has_url(spec: Any) -> bool:
    return any(is_s3_url(s) for s in _items(spec))


def prepare_s3(cfg: Any, subcommand: str = "fit", download: bool = True) -> S3Session | None:
    """Get a parsed config (a subcommand's namespace) ready to run on local files.

    - hides ``data.config_S3`` keys (``${AWS_...}`` placeholders) so they reach no file or log;
    - downloads ``data.config_S3.download_files`` (with ``download_S3: true``) and every
      ``s3://`` data path, once per node, and points ``data.*`` at the copies;
    - ``trainer.default_root_dir: s3://bucket/folder`` becomes a local staging folder; for
      commands other than ``fit`` (and for resuming) the run directory is fetched into it;
    - an ``s3://`` ``ckpt_path`` is downloaded.

    With ``download=False`` (``--print_config``) only the keys are hidden. Returns None when the
    config does not involve S3.
    """
    data = _get(cfg, "data")
    conf = _get(data, "config_S3")
    trainer = _get(cfg, "trainer")
    root = _get(trainer, "default_root_dir")
    ckpt = _get(cfg, "ckpt_path")
    url_keys = [k for k in DATA_KEYS if _has_url(_get(data, k))]
    wants = bool(conf and (_get(conf, "download_S3") or _get(conf, "use_S3")))
    if not (wants or url_keys or is_s3_url(root) or is_s3_url(ckpt)):
        if conf is not None:
            _set(data, "config_S3", redacted(conf))
        return None
    settings = resolve_settings(conf)
    if conf is not None:
        _set(data, "config_S3", redacted(conf))
    session = S3Session(settings)
    if not download:
        return session

    progress = None
    if is_s3_url(root):
        local_root = session.set_remote_root(root)
        _set(trainer, "default_root_dir", str(local_root))
        if subcommand != "fit" or ckpt:
            from salt.s3.mirror import checkpoints_for, fetch_run_dir

            remote = session.remote_root or root
            once_per_node(
                f"run:{remote}->{local_root}",
                lambda: fetch_run_dir(remote, local_root, session.client, checkpoints_for(ckpt)),
            )
            session.local_to_url[str(local_root)] = remote

    keys = download_keys(settings, data) if settings.download else []
    keys += [k for k in url_keys if k not in keys]
    items, values = session.plan_data(data, keys)
    session.download(items, progress)
    for key, value in values.items():
        _set(data, key, value)

    if is_s3_url(ckpt):
        dest = session.local_for(ckpt)
        session.download([(ckpt, dest)], progress)
        _set(cfg, "ckpt_path", str(dest))
    return session


# -- salt test --config s3://... --------------------------------------------------------------
def localize_config_args(argv: Sequence[str]) -> list[str]:
    """Replace ``--config s3://bucket/key`` by a downloaded copy (``<cache>/<bucket>/<key>``).

    Credentials come from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_ENDPOINT_URL``) or ``data.config_S3`` in the local ``--config`` files before it.
    """
    argv = list(argv)
    configs = config_positions(argv)
    if not any(is_s3_url(value) for _, _, value in configs):
        return argv
    local: list[str] = []
    for index, form, value in configs:
        if not is_s3_url(value):
            local.append(value)
            continue
        conf = _get(load_configs(local).get("data"), "config_S3") if local else None
        session = S3Session(resolve_settings(conf))
        bucket, key = parse_s3_url(value)
        dest = cache_root() / bucket / key
        _fetch_one(session, value, dest)
        argv[index] = str(dest) if form == "sep" else f"--config={dest}"
        local.append(str(dest))
    return argv


def _fetch_one(session: S3Session, url: str, dest: Path) -> None:
    once_per_node(
        f"config:{url}->{_abs(dest)}", lambda: download_many(session.client, [(url, dest)], False)
    )


# -- download_S3 ------------------------------------------------------------------------------
def download_data(
    config: Mapping[str, Any], progress: bool | None = None
) -> tuple[dict[str, Any], list[TransferResult]]:
    """Download the data files of a merged config; return it rewritten to the local copies
    (keys hidden, ``download_S3`` off since the paths are now local) and what was transferred.
    """
    config = merge({}, config)
    data = config.get("data")
    if not isinstance(data, Mapping):
        raise ValueError("the config has no 'data' section")
    data = dict(data)
    conf = data.get("config_S3")
    settings = resolve_settings(conf)
    keys = download_keys(settings, data)
    keys += [k for k in DATA_KEYS if _has_url(data.get(k)) and k not in keys]
    if not keys:
        raise ValueError(
            "nothing to download: set data.config_S3.download_files (e.g. [train_file, "
            "val_file, norm_dict]) or give s3:// paths"
        )
    session = S3Session(settings)
    items, values = session.plan_data(data, keys)
    results = session.download(items, progress)
    data.update(values)
    if conf is not None:
        conf = redacted(conf) or {}
        conf["download_S3"] = False
        data["config_S3"] = conf
    config["data"] = data
    return config, results


def _write_local_config(path: Path, config: Mapping[str, Any]) -> None:
    if path.exists() and not path.read_text().startswith(LOCAL_CONFIG_HEADER):
        raise FileExistsError(f"'{path}' exists and was not written by download_S3; use --output")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w") as handle:
            handle.write(LOCAL_CONFIG_HEADER)
            yaml.safe_dump(dict(config), handle, sort_keys=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def download_s3_main(argv: Sequence[str] | None = None) -> int:
    """``download_S3 --config a.yaml [--config b.yaml] [--output PATH]``: exit code 0, or 2 with
    one ``salt: error:`` line."""
    from salt.cli.errors import run_cli

    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="download_S3",
        description="Download the data files of a salt config from S3 (data.config_S3) and "
        "write a config pointing at the local copies.",
    )
    parser.add_argument(
        "-c", "--config", action="append", required=True, help="YAML config (repeatable)"
    )
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        help="config to write (default: <download_path>/config_local.yaml)",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars (default: when stderr is a terminal)",
    )
    parser.add_argument("--debug", action="store_true", help="tracebacks instead of one line")
    options = parser.parse_args(args)

    def run() -> None:
        from salt.cli.salt_cli import read_data_config

        # an s3:// config is fetched before parsing; the data section is then read by salt's
        # parser, as salt fit reads it; the other sections are carried over as written
        configs = list(localize_config_args(_as_config_args(options.config))[1::2])
        written = {k: v for k, v in load_configs(configs).items() if k != "data"}
        config = {**written, "data": read_data_config(configs)}
        config, results = download_data(config, options.progress)
        conf = config["data"].get("config_S3") or {}
        base = Path(conf.get("download_path") or cache_root())
        output = Path(options.output) if options.output else base / "config_local.yaml"
        _write_local_config(output, config)
        moved = sum(r.transferred for r in results)
        log.info("%d file(s) downloaded, %d up to date", moved, len(results) - moved)
        print(output)

    return run_cli(run, args)


def _as_config_args(paths: Sequence[str]) -> list[str]:
    out: list[str] = []
    for path in paths:
        out += ["--config", path]
    return out


def main() -> int:
    """Console entry point ``download_S3``."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    salt_log = logging.getLogger("salt")
    if not salt_log.handlers:
        salt_log.addHandler(handler)
        salt_log.setLevel(logging.INFO)
    return download_s3_main()


__all__ = [
    "S3Session",
    "download_data",
    "download_s3_main",
    "load_configs",
    "localize_config_args",
    "once_per_node",
    "prepare_s3",
]
