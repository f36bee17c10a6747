"""S3: downloads, uploads, errors and an S3-hosted training run, against a real S3-compatible
server (moto's standalone server on 127.0.0.1) with authentication switched on."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from salt.s3 import transfer  # noqa: E402
from salt.s3.cli import (  # noqa: E402
    download_data,
    download_s3_main,
    localize_config_args,
    once_per_node,
    prepare_s3,
)
from salt.s3.config import resolve_settings  # noqa: E402
from salt.s3.mirror import fetch_run_dir, mirror_run_dir  # noqa: E402
from salt.s3.transfer import S3Client, local_etag, part_path, sidecar_path  # noqa: E402
from tests.helpers import write_norm_dict, write_tiny_file  # noqa: E402
from tests.s3_server import Env, free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class FlakyProxy:
    """A TCP proxy in front of the server that can drop a connection after N response bytes."""

    def __init__(self, upstream: str):
        self.upstream_port = int(upstream.rsplit(":", 1)[1])
        self.cut_after: int | None = None
        self.cuts = 0
        self.stop_after_cut = False  # then refuse new connections: the server "went away"
        self.bytes_down = 0
        self.lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.open += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, down: bool) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self.lock:
                    cut = (
                        down
                        and self.cuts > 0
                        and self.cut_after is not None
                        and sent + len(data) > self.cut_after
                    )
                    if cut:
                        self.cuts -= 1
                        data = data[: self.cut_after - sent]
                        if self.stop_after_cut:
                            with contextlib.suppress(OSError):
                                self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
                            self.sock.close()
                    if down:
                        self.bytes_down += len(data)
                dst.sendall(data)
                sent += len(data)
                if cut:
                    break
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.sock.close()
        for s in self.open:
            s.close()


@pytest.fixture
def proxy(s3: Env):
    p = FlakyProxy(s3.server.url)
    yield p
    p.close()


def secret_free(root: Path, secret: str) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"secret key in {path}"


# -- download_S3 ----------------------------------------------------------------------------
def write_configs(s3: Env, download_path: Path, **data: Any) -> list[str]:
    """Two YAML files, the second overriding (and completing) the first; as in ``salt fit``,
    a later ``config_S3`` replaces an earlier one whole, so the second repeats the server."""
    first = {
        "data": {
            "train_file": "wrong/should_be_overridden.h5",
            "config_S3": {**s3.server.config(s3.bucket), "download_path": "/nonexistent"},
        },
        "trainer": {"max_epochs": 1},
    }
    second = {
        "data": {
            "train_file": "inputs/train.h5",
            "norm_dict": "inputs/norm_dict.yaml",
            "config_S3": {
                **s3.server.config(s3.bucket),
                "download_S3": True,
                "download_path": str(download_path),
                "download_files": ["train_file", "norm_dict"],
                **data.pop("config_S3", {}),
            },
            **data,
        }
    }
    paths = []
    for name, content in (("a.yaml", first), ("b.yaml", second)):
        path = s3.tmp / name
        path.write_text(yaml.safe_dump(content))
        paths.append(str(path))
    return paths


def upload_inputs(s3: Env) -> dict[str, Path]:
    src = s3.tmp / "src"
    src.mkdir()
    files = {
        "train": write_tiny_file(src / "train.h5", 200),
        "norm": write_norm_dict(src / "norm_dict.yaml"),
    }
    s3.put("inputs/train.h5", files["train"])
    s3.put("inputs/norm_dict.yaml", files["norm"])
    return files


@pytest.fixture
def client_stats(monkeypatch: pytest.MonkeyPatch) -> list[S3Client]:
    """Every S3Client created, to count its requests."""
    made: list[S3Client] = []
    original = S3Client.__init__

    def init(self: S3Client, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(S3Client, "__init__", init)
    return made


def total(clients: list[S3Client], what: str) -> int:
    return sum(c.stats[what] for c in clients)


def test_download_s3_copies_files_then_skips_them(
    s3: Env, client_stats: list[S3Client], capsys, caplog
):
    caplog.set_level(logging.DEBUG)
    files = upload_inputs(s3)
    dl = s3.tmp / "dl"
    configs = write_configs(s3, dl)
    assert download_s3_main(["--config", configs[0], "--config", configs[1]]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert Path(printed) == dl / "config_local.yaml"
    train, norm = dl / "inputs" / "train.h5", dl / "inputs" / "norm_dict.yaml"
    assert train.read_bytes() == files["train"].read_bytes()
    assert norm.read_bytes() == files["norm"].read_bytes()
    local = yaml.safe_load(Path(printed).read_text())
    assert local["data"]["train_file"] == str(train)
    assert local["data"]["norm_dict"] == str(norm)
    assert local["data"]["config_S3"]["download_S3"] is False  # the paths are local now
    assert local["data"]["config_S3"]["secKey"] == "${AWS_SECRET_ACCESS_KEY}"
    assert local["trainer"] == {"max_epochs": 1}  # the rest of the merged config is kept
    assert total(client_stats, "GetObject") == 2
    assert not list(dl.rglob("*.part"))

    # again: nothing is transferred, nothing is rewritten
    mtimes = {p: p.stat().st_mtime_ns for p in (train, norm)}
    client_stats.clear()
    assert download_s3_main(["--config", configs[0], "--config", configs[1]]) == 0
    assert total(client_stats, "GetObject") == 0
    assert {p: p.stat().st_mtime_ns for p in (train, norm)} == mtimes

    # without the sidecar the ETag is computed from the file: still nothing transferred
    sidecar_path(train).unlink()
    client_stats.clear()
    assert download_s3_main(["--config", configs[0], "--config", configs[1]]) == 0
    assert total(client_stats, "GetObject") == 0

    # a changed object is downloaded again
    s3.put("inputs/norm_dict.yaml", b"jets: {}\n")
    assert download_s3_main(["--config", configs[0], "--config", configs[1]]) == 0
    assert norm.read_bytes() == b"jets: {}\n"

    secret = s3.server.secret_key
    secret_free(dl, secret)
    out, err = capsys.readouterr()
    assert secret not in out + err
    assert secret not in caplog.text


def test_s3_urls_and_globs_are_accepted(s3: Env):
    s3.put("multi/part_1.h5", b"one")
    s3.put("multi/part_2.h5", b"two")
    s3.put("multi/other.txt", b"x")
    config = {
        "data": {
            "train_file": f"s3://{s3.bucket}/multi/part_*.h5",
            "val_file": f"s3://{s3.bucket}/multi/part_2.h5",
            "config_S3": s3.server.config(None),
        }
    }
    local, results = download_data(config, progress=True)  # progress bars on a non-terminal
    cache = s3.tmp / "cache" / s3.bucket / "multi"
    assert local["data"]["train_file"] == [str(cache / "part_1.h5"), str(cache / "part_2.h5")]
    assert local["data"]["val_file"] == str(cache / "part_2.h5")
    assert (cache / "part_2.h5").read_bytes() == b"two"
    assert sorted(r.url.rsplit("/", 1)[1] for r in results) == ["part_1.h5", "part_2.h5"]


def test_multipart_etag_is_recognised_without_sidecar(s3: Env):
    from boto3.s3.transfer import TransferConfig

    data = os.urandom(6 * 1024 * 1024 + 123)
    src = s3.tmp / "big.bin"
    src.write_bytes(data)
    chunk = 5 * 1024 * 1024
    s3.boto.upload_file(
        str(src),
        s3.bucket,
        "big.bin",
        Config=TransferConfig(multipart_threshold=chunk, multipart_chunksize=chunk),
    )
    etag = s3.boto.head_object(Bucket=s3.bucket, Key="big.bin")["ETag"].strip('"')
    assert etag.endswith("-2")
    assert local_etag(src, etag) == etag
    client = S3Client(s3.settings())
    info = client.head(s3.bucket, "big.bin")
    assert client.download(info, src) is False  # same size and multipart ETag: kept
    assert client.stats["GetObject"] == 0


# -- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "case, error, words",
    [
        ("credentials", PermissionError, ["s3://{bucket}/inputs/train.h5", "secKey"]),
        ("bucket", FileNotFoundError, ["bucket 'no-such-bucket' does not exist"]),
        ("key", FileNotFoundError, ["s3://{bucket}/inputs/missing.h5", "does not exist"]),
        ("endpoint", ConnectionError, ["http://127.0.0.1:{port}", "after 3 tries"]),
    ],
)
def test_errors_are_one_line(s3: Env, capsys, case: str, error: type, words: list[str]):
    upload_inputs(s3)
    port = free_port()
    conf: dict[str, Any] = {"retries": 3}
    data: dict[str, Any] = {}
    if case == "credentials":
        conf["secKey"] = "not-the-secret"
    elif case == "bucket":
        conf["bucket"] = "no-such-bucket"
    elif case == "key":
        data["train_file"] = "inputs/missing.h5"
    else:
        conf["url"] = f"http://127.0.0.1:{port}"
    dl = s3.tmp / "dl"
    configs = write_configs(s3, dl, config_S3=conf, **data)
    started = time.perf_counter()
    assert download_s3_main(["-c", configs[0], "-c", configs[1]]) == 2
    assert time.perf_counter() - started < 15  # bounded retries
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("salt: error:"), err
    for word in words:
        assert word.format(bucket=s3.bucket, port=port) in err[0]
    assert s3.server.secret_key not in err[0]
    assert not (dl / "config_local.yaml").exists()  # nothing half-written
    assert not [p for p in dl.rglob("*") if p.is_file() and not p.name.startswith(".")]
    # the same through the API: the documented exception type
    merged = yaml.safe_load(Path(configs[1]).read_text())
    merged["data"]["config_S3"] = {
        **yaml.safe_load(Path(configs[0]).read_text())["data"]["config_S3"],
        **merged["data"]["config_S3"],
    }
    with pytest.raises(error):
        download_data(merged, progress=False)


def test_unreachable_endpoint_retries_with_bounded_backoff(s3: Env):
    sleeps: list[float] = []
    settings = replace(
        s3.settings(url=f"http://127.0.0.1:{free_port()}", retries=3), backoff=0.5, max_backoff=0.8
    )
    client = S3Client(settings, sleep=sleeps.append)
    with pytest.raises(ConnectionError, match="unreachable after 3 tries"):
        client.head(s3.bucket, "k")
    assert sleeps == [0.5, 0.8]


def test_missing_credentials_and_bad_settings_are_user_errors(s3: Env):
    with pytest.raises(ValueError, match="secKey"):
        resolve_settings({"pubKey": "only-half"})
    with pytest.raises(ValueError, match="download_files"):
        resolve_settings({"download_files": ["train_files"]})
    with pytest.raises(ValueError, match="not an http"):
        resolve_settings({"url": "s3.cern.ch"})
    env = {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_ENDPOINT_URL": "http://h:1"}
    settings = resolve_settings({"secKey": "${AWS_SECRET_ACCESS_KEY}", "pubKey": "<redacted>"}, env)
    assert (settings.access_key, settings.secret_key, settings.endpoint_url) == (
        "a",
        "b",
        "http://h:1",
    )
    assert "b" not in repr(settings).replace("bucket", "").replace("backoff", "")


def test_full_disk_removes_part_and_keeps_previous_file(s3: Env, monkeypatch):
    old, new = b"old" * 1000, os.urandom(3 * 1024 * 1024)
    s3.put("data.bin", old)
    client = S3Client(s3.settings())
    dest = s3.tmp / "dl" / "data.bin"
    assert client.download(client.head(s3.bucket, "data.bin"), dest)
    s3.put("data.bin", new)
    calls = {"n": 0}
    real = transfer._write_chunk

    def full(handle, chunk):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(handle, chunk)

    monkeypatch.setattr(transfer, "_write_chunk", full)
    with pytest.raises(OSError) as info:
        client.download(client.head(s3.bucket, "data.bin"), dest)
    assert info.value.errno == errno.ENOSPC
    assert str(dest) in str(info.value) and f"s3://{s3.bucket}/data.bin" in str(info.value)
    assert "\n" not in str(info.value)
    assert dest.read_bytes() == old
    assert not part_path(dest).exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == [".data.bin.s3.json", "data.bin"]


# -- dropped connections --------------------------------------------------------------------
def test_dropped_connection_is_resumed_within_one_call(s3: Env, proxy: FlakyProxy):
    data = os.urandom(3 * 1024 * 1024)
    s3.put("big.bin", data)
    client = S3Client(s3.settings(url=proxy.url, retries=3))
    info = client.head(s3.bucket, "big.bin")
    proxy.cut_after, proxy.cuts = 1024 * 1024, 1
    dest = s3.tmp / "dl" / "big.bin"
    assert client.download(info, dest)
    assert dest.read_bytes() == data
    assert client.stats["GetObject"] == 2  # the second one a ranged GET from where it stopped
    assert client.stats["bytes_down"] == len(data)


def test_interrupted_download_resumes_when_run_again(s3: Env, proxy: FlakyProxy):
    data = os.urandom(3 * 1024 * 1024)
    s3.put("big.bin", data)
    dest = s3.tmp / "dl" / "big.bin"
    first = S3Client(s3.settings(url=proxy.url, retries=2))
    info = first.head(s3.bucket, "big.bin")
    proxy.cut_after, proxy.cuts, proxy.stop_after_cut = 1024 * 1024, 1, True
    with pytest.raises(ConnectionError, match="run again to resume") as err:
        first.download(info, dest)
    assert "\n" not in str(err.value) and f"s3://{s3.bucket}/big.bin" in str(err.value)
    kept = part_path(dest).stat().st_size
    assert 0 < kept < len(data)
    assert not dest.exists()

    second = S3Client(s3.settings())  # the server is back (without the proxy)
    assert second.download(second.head(s3.bucket, "big.bin"), dest)
    assert dest.read_bytes() == data
    assert second.stats["GetObject"] == 1
    assert second.stats["bytes_down"] == len(data) - kept  # only what was missing
    assert not part_path(dest).exists()


def test_part_of_a_changed_object_is_not_reused(s3: Env, proxy: FlakyProxy):
    s3.put("obj.bin", os.urandom(2 * 1024 * 1024))
    dest = s3.tmp / "dl" / "obj.bin"
    first = S3Client(s3.settings(url=proxy.url, retries=1))
    proxy.cut_after, proxy.cuts, proxy.stop_after_cut = 512 * 1024, 1, True
    with pytest.raises(ConnectionError):
        first.download(first.head(s3.bucket, "obj.bin"), dest)
    assert part_path(dest).exists()
    changed = os.urandom(2 * 1024 * 1024)
    s3.put("obj.bin", changed)
    client = S3Client(s3.settings())
    assert client.download(client.head(s3.bucket, "obj.bin"), dest)
    assert dest.read_bytes() == changed
    assert client.stats["bytes_down"] == len(changed)  # started over


# -- once per node --------------------------------------------------------------------------
def test_other_local_ranks_wait_for_rank_zero(s3: Env):
    done: list[str] = []

    def other_rank() -> None:
        once_per_node("tag", lambda: done.append("wrong"), timeout=10, local_rank=1)
        done.append("rank1")

    waiter = threading.Thread(target=other_rank)
    waiter.start()
    time.sleep(0.2)
    assert done == []  # still waiting for the marker
    once_per_node("tag", lambda: done.append("rank0"), local_rank=0)
    waiter.join(10)
    assert done == ["rank0", "rank1"]
    with pytest.raises(TimeoutError):
        once_per_node("never-written", lambda: None, timeout=0.3, local_rank=1)

    def fails() -> None:
        raise FileNotFoundError("s3://b/k does not exist")

    with pytest.raises(FileNotFoundError):
        once_per_node("failing", fails, local_rank=0)
    with pytest.raises(ConnectionError, match="local rank 0 failed"):
        once_per_node("failing", lambda: None, timeout=5, local_rank=1)


# -- run directories ------------------------------------------------------------------------
def make_run(root: Path) -> Path:
    run = root / "GN2_x"
    (run / "ckpts").mkdir(parents=True)
    (run / "config.yaml").write_text("a: 1\n")
    (run / "metadata.yaml").write_text("status: running\n")
    (run / "ckpts" / "epoch=000-val_loss=0.90000.ckpt").write_bytes(b"ckpt0")
    (run / "ckpts" / "epoch=001-val_loss=0.50000.ckpt").write_bytes(b"ckpt1")
    (run / "ckpts" / "last.ckpt").write_bytes(b"last")
    (run / "preds.h5").write_bytes(os.urandom(9 * 1024 * 1024))  # a multipart upload
    (run / ".config.yaml.abc.tmp").write_text("half")  # an atomic write in progress
    return run


def test_mirror_uploads_what_changed_and_fetch_takes_the_best_checkpoint(s3: Env):
    run = make_run(s3.tmp / "stage")
    remote = f"s3://{s3.bucket}/runs/GN2_x"
    client = S3Client(s3.settings())
    first = mirror_run_dir(run, remote, client, progress=False)
    assert sum(r.transferred for r in first) == 6
    keys = sorted(o["Key"] for o in s3.boto.list_objects_v2(Bucket=s3.bucket)["Contents"])
    assert "runs/GN2_x/.config.yaml.abc.tmp" not in keys and len(keys) == 6
    etag = s3.boto.head_object(Bucket=s3.bucket, Key="runs/GN2_x/preds.h5")["ETag"]
    assert etag.strip('"').endswith("-2")
    assert not any(r.transferred for r in mirror_run_dir(run, remote, client, progress=False))
    for sidecar in run.rglob(".*.s3.json"):  # without sidecars: ETags computed, still equal
        sidecar.unlink()
    assert not any(r.transferred for r in mirror_run_dir(run, remote, client, progress=False))
    (run / "metadata.yaml").write_text("status: finished\n")
    again = mirror_run_dir(run, remote, client, progress=False)
    assert [r.path.name for r in again if r.transferred] == ["metadata.yaml"]

    copy = s3.tmp / "copy"
    fetch_run_dir(remote, copy, client, progress=False)
    assert sorted(
        p.relative_to(copy).as_posix()
        for p in copy.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    ) == [
        "ckpts/epoch=001-val_loss=0.50000.ckpt",
        "config.yaml",
        "metadata.yaml",
        "preds.h5",
    ]
    assert (copy / "preds.h5").read_bytes() == (run / "preds.h5").read_bytes()
    assert (copy / "metadata.yaml").read_text() == "status: finished\n"
    with pytest.raises(FileNotFoundError, match="no run directory"):
        fetch_run_dir(f"s3://{s3.bucket}/runs/nothing", copy, client)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mirror_run_dir(run, "s3://no-such-bucket/x", client)


def test_prepare_s3_points_the_config_at_local_copies(s3: Env):
    from jsonargparse import Namespace

    files = upload_inputs(s3)
    dl = s3.tmp / "dl"
    conf = s3.server.config(
        s3.bucket,
        download_S3=True,
        download_path=str(dl),
        download_files=["train_file", "norm_dict"],
    )
    cfg = Namespace(
        data=Namespace(
            train_file="inputs/train.h5",
            val_file=f"s3://{s3.bucket}/inputs/train.h5",
            test_file=None,
            norm_dict="inputs/norm_dict.yaml",
            class_dict=None,
            config_S3=conf,
        ),
        model=Namespace(norm_dict=None),
        trainer=Namespace(default_root_dir=f"s3://{s3.bucket}/experiments"),
        ckpt_path=None,
    )
    session = prepare_s3(cfg, "fit")
    assert session is not None
    assert cfg.data.train_file == cfg.data.val_file == str(dl / "inputs" / "train.h5")
    assert Path(cfg.data.train_file).read_bytes() == files["train"].read_bytes()
    assert cfg.data.config_S3["secKey"] == "${AWS_SECRET_ACCESS_KEY}"
    assert s3.server.secret_key not in repr(cfg) + repr(session)
    stage = Path(cfg.trainer.default_root_dir)
    assert stage == (s3.tmp / "cache" / s3.bucket / "experiments").resolve()

    run = stage / "tiny_1"
    session.check_free(run, force=False)  # nothing remote yet
    run.mkdir(parents=True)
    (run / "norm_dict.yaml").write_text("copy")
    saved = Namespace(
        data=Namespace(
            train_file=cfg.data.train_file,
            val_file=cfg.data.val_file,
            test_file=None,
            norm_dict=str(run / "norm_dict.yaml"),
            class_dict=None,
            config_S3=dict(conf),
        ),
        model=Namespace(norm_dict=cfg.data.norm_dict),
        trainer=Namespace(default_root_dir=str(run)),
    )
    session.restore_saved(saved)
    assert saved.data.train_file == f"s3://{s3.bucket}/inputs/train.h5"
    assert saved.data.norm_dict == f"s3://{s3.bucket}/experiments/tiny_1/norm_dict.yaml"
    assert saved.model.norm_dict == f"s3://{s3.bucket}/inputs/norm_dict.yaml"
    assert saved.trainer.default_root_dir == f"s3://{s3.bucket}/experiments/tiny_1"
    assert saved.data.config_S3["secKey"] == "${AWS_SECRET_ACCESS_KEY}"
    session.mirror(run)
    with pytest.raises(FileExistsError, match="--force"):
        session.check_free(run, force=False)
    session.check_free(run, force=True)


def test_config_on_s3_is_fetched_for_salt_test(s3: Env, monkeypatch):
    s3.put("runs/r1/config.yaml", b"name: r1\n")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.server.secret_key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.server.url)
    argv = ["test", "--config", f"s3://{s3.bucket}/runs/r1/config.yaml", "--trainer.fast_dev_run=1"]
    out = localize_config_args(argv)
    local = s3.tmp / "cache" / s3.bucket / "runs" / "r1" / "config.yaml"
    assert out == ["test", "--config", str(local), "--trainer.fast_dev_run=1"]
    assert local.read_text() == "name: r1\n"
    assert localize_config_args(["fit", "--config=x.yaml"]) == ["fit", "--config=x.yaml"]


# -- end to end: train from S3, keep the run on S3, test from S3 ------------------------------
def test_fit_and_test_with_data_and_run_directory_on_s3(
    s3: Env, demo_dir: Path, monkeypatch, capsys, caplog
):
    from salt.cli.main import main

    caplog.set_level(logging.INFO)
    for name in ("train.h5", "val.h5", "test.h5", "norm_dict.yaml", "class_dict.yaml"):
        s3.put(f"demo/{name}", demo_dir / name)
    runs = f"salt-runs-{uuid.uuid4().hex[:6]}"
    s3.boto.create_bucket(Bucket=runs)
    dl = s3.tmp / "dl"
    config = s3.tmp / "s3.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "train_file": "demo/train.h5",
                    "val_file": "demo/val.h5",
                    "test_file": "demo/test.h5",
                    "norm_dict": "demo/norm_dict.yaml",
                    "class_dict": "demo/class_dict.yaml",
                    "config_S3": s3.server.config(
                        s3.bucket,
                        download_S3=True,
                        download_path=str(dl),
                        download_files=[
                            "train_file",
                            "val_file",
                            "test_file",
                            "norm_dict",
                            "class_dict",
                        ],
                    ),
                },
                "trainer": {"default_root_dir": f"s3://{runs}/experiments"},
            }
        )
    )
    args = [
        "fit",
        "--config",
        str(ROOT / "configs" / "GN2.yaml"),
        "--config",
        str(ROOT / "configs" / "GN2_demo.yaml"),
        "--config",
        str(config),
        "--data.batch_size=250",
        "--data.num_workers=0",
        "--data.num_train=500",
        "--data.num_val=250",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--log_suffix=s3",
        "-n",
        "tiny",
    ]
    assert main(args) == 0
    remote = f"s3://{runs}/experiments/tiny_s3"
    keys = {o["Key"] for o in s3.boto.list_objects_v2(Bucket=runs)["Contents"]}
    prefix = "experiments/tiny_s3/"
    assert {prefix + "config.yaml", prefix + "metadata.yaml", prefix + "norm_dict.yaml"} <= keys
    assert any(k.startswith(prefix + "ckpts/epoch=000-") for k in keys)
    saved = yaml.safe_load(
        s3.boto.get_object(Bucket=runs, Key=prefix + "config.yaml")["Body"].read()
    )
    assert saved["data"]["train_file"] == f"s3://{s3.bucket}/demo/train.h5"
    assert saved["data"]["norm_dict"] == f"{remote}/norm_dict.yaml"  # the run's own copy
    assert saved["data"]["config_S3"]["secKey"] == "${AWS_SECRET_ACCESS_KEY}"
    assert saved["trainer"]["default_root_dir"] == remote
    meta = yaml.safe_load(
        s3.boto.get_object(Bucket=runs, Key=prefix + "metadata.yaml")["Body"].read()
    )
    assert meta["status"] == "finished"

    # "another machine" (an empty cache): the run directory on S3 is not overwritten
    monkeypatch.setenv("SALT_S3_CACHE", str(s3.tmp / "cache2"))
    capsys.readouterr()
    assert main(args) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("salt: error:") and f"'{remote}' already exists on S3" in message

    # evaluate from S3 there, with the credentials from the environment
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.server.secret_key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.server.url)
    test_args = ["test", "--config", f"{remote}/config.yaml", "--trainer.enable_progress_bar=false"]
    assert main(test_args) == 0
    keys = {o["Key"] for o in s3.boto.list_objects_v2(Bucket=runs)["Contents"]}
    assert any(k.startswith(prefix + "ckpts/") and k.endswith("__test_test.h5") for k in keys)
    assert any(k.startswith(prefix + "evaluation/") and k.endswith("metrics.json") for k in keys)

    secret = s3.server.secret_key
    for root in (dl, s3.tmp / "cache", s3.tmp / "cache2"):
        secret_free(root, secret)
    for key in keys:
        body = s3.boto.get_object(Bucket=runs, Key=key)["Body"].read()
        assert secret.encode() not in body, key
    out, err = capsys.readouterr()
    assert secret not in out + err + caplog.text


def test_print_config_hides_the_keys(s3: Env, capsys):
    from salt.cli.main import main

    config = s3.tmp / "s3.yaml"
    conf = s3.server.config(s3.bucket, download_S3=True, download_files=["train_file"])
    data = {"train_file": "demo/train.h5", "val_file": "demo/val.h5", "config_S3": conf}
    trainer = {"default_root_dir": f"s3://{s3.bucket}/experiments"}
    config.write_text(yaml.safe_dump({"data": data, "trainer": trainer}))
    with pytest.raises(SystemExit) as done:
        main(
            [
                "fit",
                "--config",
                str(ROOT / "configs" / "GN2.yaml"),
                "--config",
                str(config),
                "--data.norm_dict=demo/norm_dict.yaml",
                "--print_config",
            ]
        )
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "${AWS_SECRET_ACCESS_KEY}" in out and s3.server.secret_key not in out
    assert not list(s3.tmp.rglob("train.h5"))  # printing downloads nothing


def test_download_s3_reads_the_data_section_as_salt_fit_does(tmp_path: Path, capsys):
    """The data section is read by salt's parser: a later config_S3 replaces an earlier one
    whole (as in salt fit), instead of being merged key by key into it."""
    first = {"data": {"train_file": "inputs/train.h5", "config_S3": {"bucket": "salt-data"}}}
    second = {"data": {"config_S3": {"download_S3": True, "download_files": ["train_file"]}}}
    paths = []
    for name, content in (("a.yaml", first), ("b.yaml", second)):
        (tmp_path / name).write_text(yaml.safe_dump(content))
        paths += ["--config", str(tmp_path / name)]
    assert download_s3_main(paths) == 2
    assert "data.config_S3.bucket is not set" in capsys.readouterr().err
