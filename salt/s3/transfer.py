"""Downloads and uploads with boto3: parallel, resumable, skipping what is already there.

Guarantees a user can rely on:

- a download is written to a hidden ``.<name>.part`` file beside the target and renamed over it
  only when complete (and, for single-part objects, MD5-checked against the ETag), so the target
  is either the previous file or the new one, never half of either;
- a dropped connection is retried (bounded, with backoff) from where it stopped, via a ranged GET
  that only continues if the object still has the same ETag; the ``.part`` file also survives a
  failed run, so running again resumes instead of starting over;
- a local write error (disk full) removes the ``.part`` file and leaves the previous file as it was;
- a file whose size and ETag match the object is not transferred again: the ETag seen at the last
  transfer is kept in a small hidden sidecar ``.<name>.s3.json`` (with the file's size and mtime),
  and without one the local ETag is computed (MD5, or multipart MD5 for the usual part sizes);
- failures are one line naming the bucket, key and endpoint: FileNotFoundError (no bucket or
  key), PermissionError (credentials), ConnectionError (endpoint unreachable after the retries).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from salt.s3.config import S3Settings, parse_s3_url, s3_url

log = logging.getLogger(__name__)

MiB = 1024 * 1024
#: boto3's default multipart threshold and part size; uploads use them, local ETags assume them
MULTIPART_CHUNK = 8 * MiB
READ_CHUNK = 1 * MiB
_PART_SIZES_TRIED = (8 * MiB, 5 * MiB, 16 * MiB, 15 * MiB, 64 * MiB, 100 * MiB)

T = TypeVar("T")
Advance = Callable[[int], None]


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    etag: str

    @property
    def url(self) -> str:
        return s3_url(self.bucket, self.key)


@dataclass(frozen=True)
class TransferResult:
    url: str
    path: Path
    size: int
    transferred: bool
    seconds: float = 0.0


class _ObjectChanged(Exception):
    """The object's ETag changed between the HEAD and a ranged GET: start over."""


# -- local bookkeeping ----------------------------------------------------------------------
def part_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.part")


def _part_meta_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.part.json")


def sidecar_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.s3.json")


def is_bookkeeping(path: Path) -> bool:
    """Hidden files salt (or an atomic writer) keeps beside real ones: never mirrored."""
    return path.name.startswith(".")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_sidecar(path: Path, url: str, etag: str) -> None:
    """Remember which object ``path`` is a copy of (best effort: it only saves work)."""
    st = path.stat()
    record = {"url": url, "etag": etag, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    with contextlib.suppress(OSError):
        sidecar_path(path).write_text(json.dumps(record))


def _sidecar_etag(path: Path) -> str | None:
    """The ETag recorded for ``path`` if the file did not change since it was recorded."""
    record = _read_json(sidecar_path(path))
    if record is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    if record.get("size") == st.st_size and record.get("mtime_ns") == st.st_mtime_ns:
        etag = record.get("etag")
        return etag if isinstance(etag, str) else None
    return None


def _md5_parts(path: Path, part_size: int) -> str:
    digests = []
    with open(path, "rb") as handle:
        while True:
            md5 = hashlib.md5(usedforsecurity=False)
            remaining = part_size
            while remaining:
                block = handle.read(min(READ_CHUNK, remaining))
                if not block:
                    break
                md5.update(block)
                remaining -= len(block)
            if remaining == part_size:
                break
            digests.append(md5.digest())
            if remaining:
                break
    combined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
    return f"{combined}-{len(digests)}"


def local_etag(path: Path, like: str | None = None) -> str:
    """The ETag S3 gives ``path``'s content: plain MD5, or, when ``like`` is a multipart ETag
    (``...-N``), the multipart MD5 for the usual part sizes that give N parts."""
    size = path.stat().st_size
    if like and "-" in like:
        try:
            parts = int(like.rsplit("-", 1)[1])
        except ValueError:
            parts = 0
        guess = math.ceil(size / max(parts, 1) / MiB) * MiB
        for part in dict.fromkeys((*_PART_SIZES_TRIED, guess)):
            if part > 0 and math.ceil(size / part) == parts:
                etag = _md5_parts(path, part)
                if etag == like:
                    return etag
        return _md5_parts(path, MULTIPART_CHUNK)
    if size > MULTIPART_CHUNK and like is None:
        return _md5_parts(path, MULTIPART_CHUNK)  # what an upload with our settings gives
    return _md5(path)


def _md5(path: Path) -> str:
    md5 = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(READ_CHUNK), b""):
            md5.update(block)
    return md5.hexdigest()


def same_content(path: Path, info: ObjectInfo) -> bool:
    """Whether ``path`` already holds the object (size, then ETag from the sidecar or computed)."""
    try:
        size = path.stat().st_size
    except OSError:
        return False
    if not path.is_file() or size != info.size:
        return False
    if _sidecar_etag(path) == info.etag:
        return True
    if local_etag(path, info.etag) == info.etag:
        write_sidecar(path, info.url, info.etag)
        return True
    return False


def _write_chunk(handle: BinaryIO, chunk: bytes) -> None:
    """One chunk into an unbuffered ``.part`` file, so a full disk shows up here and not at
    close (also the seam tests use to simulate one)."""
    view = memoryview(chunk)
    while view:
        written = handle.write(view)
        view = view[written or 0 :]


# -- errors ---------------------------------------------------------------------------------
def _network_errors() -> tuple[type[BaseException], ...]:
    from botocore import exceptions as bx
    from urllib3.exceptions import HTTPError as Urllib3Error

    return (
        bx.ConnectionError,
        bx.HTTPClientError,
        bx.IncompleteReadError,
        Urllib3Error,
        ConnectionError,
        TimeoutError,
    )


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()


# -- the client -----------------------------------------------------------------------------
class S3Client:
    """boto3's S3 client with salt's retries, error messages and resumable transfers.

    boto3 clients are thread-safe; one instance serves all the transfer threads.
    """

    def __init__(self, settings: S3Settings, sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._sleep = sleep
        self._client: Any = None

    # boto3 is imported lazily so that ``import salt`` stays fast without S3
    @property
    def client(self) -> Any:
        with self._lock:  # transfer threads may ask at the same time
            if self._client is None:
                self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        s = self.settings
        session = boto3.session.Session(
            aws_access_key_id=s.access_key, aws_secret_access_key=s.secret_key
        )
        config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},  # salt retries itself
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            max_pool_connections=max(10, 4 * s.parallel),
            s3={"addressing_style": "path"} if s.endpoint_url else None,
            # S3-compatible stores (Ceph at CERN, MinIO) do not all know the newer checksums
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        return session.client(
            "s3",
            endpoint_url=s.endpoint_url,
            region_name=region or "us-east-1",
            config=config,
        )

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.stats[what] += n

    def _backoff(self, attempt: int) -> None:
        s = self.settings
        self._sleep(min(s.max_backoff, s.backoff * 2 ** (attempt - 1)))

    # -- error translation ----------------------------------------------------------------
    def _translate(self, err: Exception, bucket: str, key: str, op: str) -> Exception:
        from botocore.exceptions import ClientError, NoCredentialsError

        where = self.settings.where
        url = s3_url(bucket, key)
        if isinstance(err, NoCredentialsError):
            return PermissionError(
                f"no S3 credentials for {url} at {where}: set data.config_S3.pubKey/secKey "
                "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
            )
        if not isinstance(err, ClientError):
            return err
        error = err.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code == "NoSuchBucket":
            return FileNotFoundError(f"S3 bucket '{bucket}' does not exist at {where}")
        if code in ("NoSuchKey", "404", "NotFound") or status == 404:
            if code != "NoSuchKey" and not self._bucket_exists(bucket):
                return FileNotFoundError(f"S3 bucket '{bucket}' does not exist at {where}")
            return FileNotFoundError(
                f"{url} does not exist (no key '{key}' in bucket '{bucket}' at {where})"
            )
        if code in (
            "403",
            "Forbidden",
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "InvalidToken",
            "ExpiredToken",
        ) or status in (401, 403):
            reason = code if code not in ("403", "Forbidden") else "access denied"
            return PermissionError(
                f"S3 denied {op} of {url} at {where} ({reason}): check data.config_S3.pubKey/"
                "secKey (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and the bucket permissions"
            )
        message = _squash(error.get("Message", "") or str(err))
        return ValueError(f"S3 {op} of {url} at {where} failed ({code or status}): {message}")

    @staticmethod
    def _retryable(err: Exception) -> bool:
        from botocore.exceptions import ClientError

        if not isinstance(err, ClientError):
            return False
        code = str(err.response.get("Error", {}).get("Code", ""))
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return status >= 500 or code in (
            "SlowDown",
            "RequestTimeout",
            "InternalError",
            "ServiceUnavailable",
            "503",
            "500",
        )

    def _unreachable(self, err: BaseException, bucket: str, key: str, op: str) -> ConnectionError:
        return ConnectionError(
            f"S3 endpoint {self.settings.where} unreachable after {self.settings.retries} "
            f"tries ({op} {s3_url(bucket, key)}): {_squash(str(err))}"
        )

    def call(self, op: str, bucket: str, key: str, fn: Callable[[], T]) -> T:
        """Run one request with bounded retries on connection errors and 5xx answers."""
        from botocore.exceptions import BotoCoreError, ClientError

        network = _network_errors()
        retries = self.settings.retries
        for attempt in range(1, retries + 1):
            try:
                self._count(op)
                return fn()
            except ClientError as err:
                if self._retryable(err) and attempt < retries:
                    log.debug("%s %s: %s, retrying", op, s3_url(bucket, key), err)
                    self._backoff(attempt)
                    continue
                raise self._translate(err, bucket, key, op) from err
            except network as err:
                if attempt < retries:
                    log.debug("%s %s: %s, retrying", op, s3_url(bucket, key), err)
                    self._backoff(attempt)
                    continue
                raise self._unreachable(err, bucket, key, op) from err
            except BotoCoreError as err:
                raise self._translate(err, bucket, key, op) from err
        raise AssertionError("unreachable")  # pragma: no cover

    def _bucket_exists(self, bucket: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._count("HeadBucket")
            self.client.head_bucket(Bucket=bucket)
        except ClientError as err:
            status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            return status != 404
        except Exception:
            return True  # cannot tell: let the caller's message stand
        return True

    # -- metadata -------------------------------------------------------------------------
    def head(self, bucket: str, key: str) -> ObjectInfo:
        """Size and ETag of ``s3://bucket/key``.

        Raises:
            FileNotFoundError, PermissionError, ConnectionError: one line naming the object.
        """
        if not key:
            raise ValueError(f"{s3_url(bucket, key)} names a bucket, not a file")
        answer = self.call(
            "HeadObject", bucket, key, lambda: self.client.head_object(Bucket=bucket, Key=key)
        )
        return ObjectInfo(bucket, key, int(answer["ContentLength"]), answer["ETag"].strip('"'))

    def check_bucket(self, bucket: str) -> None:
        """Raise the one-line error if the bucket is missing or not ours."""
        self.call("HeadBucket", bucket, "", lambda: self.client.head_bucket(Bucket=bucket))

    def list(self, bucket: str, prefix: str) -> list[ObjectInfo]:
        """Every object under ``prefix`` (a folder: ``prefix/...``), sorted by key."""
        folder = prefix.strip("/")
        folder = f"{folder}/" if folder else ""
        out: list[ObjectInfo] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": folder}
            if token:
                kwargs["ContinuationToken"] = token
            page = self.call(
                "ListObjectsV2",
                bucket,
                folder,
                lambda kwargs=kwargs: self.client.list_objects_v2(**kwargs),  # type: ignore[misc]
            )
            for item in page.get("Contents", []):
                out.append(
                    ObjectInfo(bucket, item["Key"], int(item["Size"]), item["ETag"].strip('"'))
                )
            if not page.get("IsTruncated"):
                break
            token = page.get("NextContinuationToken")
        return sorted(out, key=lambda o: o.key)

    # -- download -------------------------------------------------------------------------
    def download(
        self,
        info: ObjectInfo,
        dest: Path,
        progress: Advance | None = None,
    ) -> bool:
        """Make ``dest`` a copy of the object; False if it already was one.

        Raises:
            ConnectionError: the connection kept dropping (the ``.part`` file is kept, so
                running again resumes).
            OSError: writing failed (disk full): the ``.part`` file is removed, ``dest`` unchanged.
        """
        if same_content(dest, info):
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        part, meta = part_path(dest), _part_meta_path(dest)
        restarted = False
        while True:
            try:
                self._download_part(info, dest, part, meta, progress)
                break
            except _ObjectChanged:
                if restarted:
                    raise ValueError(
                        f"{info.url} keeps changing while it is downloaded (at "
                        f"{self.settings.where}); try again later"
                    ) from None
                restarted = True
                self._discard(part, meta)
                info = self.head(info.bucket, info.key)
                if same_content(dest, info):
                    return False
        with open(part, "rb") as handle:  # on disk before it replaces the previous file
            os.fsync(handle.fileno())
        os.replace(part, dest)
        write_sidecar(dest, info.url, info.etag)
        meta.unlink(missing_ok=True)
        return True

    @staticmethod
    def _discard(part: Path, meta: Path) -> None:
        part.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)

    def _resume_offset(self, info: ObjectInfo, part: Path, meta: Path) -> int:
        """Bytes of a previous attempt at the same object (same ETag) that can be kept."""
        record = _read_json(meta)
        if part.is_file() and record and record.get("etag") == info.etag:
            size = part.stat().st_size
            if size <= info.size:
                return size
        self._discard(part, meta)
        meta.write_text(json.dumps({"url": info.url, "etag": info.etag, "size": info.size}))
        return 0

    def _download_part(
        self, info: ObjectInfo, dest: Path, part: Path, meta: Path, progress: Advance | None
    ) -> None:
        from botocore.exceptions import ClientError

        network = _network_errors()
        offset = self._resume_offset(info, part, meta)
        if offset and progress:
            progress(offset)
        check_md5 = "-" not in info.etag and len(info.etag) == 32
        md5 = hashlib.md5(usedforsecurity=False)
        if check_md5 and offset:
            with open(part, "rb") as handle:
                for block in iter(lambda: handle.read(READ_CHUNK), b""):
                    md5.update(block)
        failures = 0
        while offset < info.size or not part.exists():
            kwargs: dict[str, Any] = {"Bucket": info.bucket, "Key": info.key}
            if offset:
                kwargs["Range"] = f"bytes={offset}-"
                kwargs["IfMatch"] = f'"{info.etag}"'
            started = offset
            try:
                self._count("GetObject")
                body = self.client.get_object(**kwargs)["Body"]
                with open(part, "ab", buffering=0) as handle:
                    try:
                        for chunk in body.iter_chunks(READ_CHUNK):
                            try:
                                _write_chunk(handle, chunk)
                            except OSError as err:
                                raise _LocalWriteError(err) from err
                            offset += len(chunk)
                            self._count("bytes_down", len(chunk))
                            if check_md5:
                                md5.update(chunk)
                            if progress:
                                progress(len(chunk))
                    finally:
                        body.close()
                if info.size == 0:
                    break
                if offset < info.size:
                    raise ConnectionError(f"stream ended after {offset} of {info.size} bytes")
            except _LocalWriteError as wrapped:
                self._discard(part, meta)
                cause = wrapped.error
                raise OSError(
                    cause.errno,
                    f"cannot write '{dest}' (downloading {info.url}): "
                    f"{cause.strerror or cause}; removed the partial download, the previous "
                    "file is unchanged",
                ) from cause
            except ClientError as err:
                code = str(err.response.get("Error", {}).get("Code", ""))
                if code in ("PreconditionFailed", "412", "InvalidRange", "416"):
                    raise _ObjectChanged() from err
                if self._retryable(err) and failures + 1 < self.settings.retries:
                    failures += 1
                    self._backoff(failures)
                    continue
                raise self._translate(err, info.bucket, info.key, "GetObject") from err
            except network as err:
                offset = part.stat().st_size if part.exists() else 0
                failures = 0 if offset > started else failures + 1
                if failures >= self.settings.retries:
                    lost = self._unreachable(err, info.bucket, info.key, "GetObject")
                    raise ConnectionError(
                        f"{lost}; kept {offset} of {info.size} bytes in '{part}': "
                        "run again to resume"
                    ) from err
                log.info(
                    "%s: connection dropped at %d/%d bytes, resuming", info.url, offset, info.size
                )
                self._backoff(max(failures, 1))
        if part.stat().st_size != info.size:
            raise _ObjectChanged()
        if check_md5 and md5.hexdigest() != info.etag:
            raise _ObjectChanged()

    # -- upload ---------------------------------------------------------------------------
    def upload(
        self, path: Path, bucket: str, key: str, progress: Advance | None = None
    ) -> ObjectInfo:
        """Upload ``path`` (multipart above 8 MiB); S3 shows the object only once complete."""
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import ClientError

        network = _network_errors()
        config = TransferConfig(
            multipart_threshold=MULTIPART_CHUNK,
            multipart_chunksize=MULTIPART_CHUNK,
            max_concurrency=4,
            use_threads=True,
        )

        def put() -> None:
            try:
                self.client.upload_file(str(path), bucket, key, Config=config, Callback=progress)
            except Exception as err:  # boto3 wraps ClientError in S3UploadFailedError
                cause = err.__context__
                if not isinstance(err, ClientError | network) and isinstance(
                    cause, ClientError | network
                ):
                    raise cause from err
                raise

        self.call("PutObject", bucket, key, put)
        self._count("bytes_up", path.stat().st_size)
        info = self.head(bucket, key)
        write_sidecar(path, info.url, info.etag)
        return info


class _LocalWriteError(Exception):
    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


# -- many files at once ---------------------------------------------------------------------
def show_progress_default() -> bool:
    return sys.stderr.isatty()


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[Callable[[str, int], Advance]]:
    """``add(description, total) -> advance`` with one rich progress bar per file."""
    if not enabled:
        yield lambda description, total: lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bars = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )

    def add(description: str, total: int) -> Advance:
        task = bars.add_task(description, total=total)
        return lambda n: bars.update(task, advance=n)

    with bars:
        yield add


def _run_parallel(jobs: Sequence[Callable[[], T]], parallel: int) -> list[T]:
    """Run every job (none is abandoned half way); raise the first failure in job order."""
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(jobs)))) as pool:
        futures = [pool.submit(job) for job in jobs]
    errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error
    return [f.result() for f in futures]


def download_many(
    client: S3Client, items: Sequence[tuple[str, Path]], progress: bool | None = None
) -> list[TransferResult]:
    """Download ``[(s3_url, local_path)]`` in parallel; unchanged files are not transferred.

    Every object is looked up first, so a missing key or bucket fails before anything is
    downloaded.
    """
    unique = list(dict.fromkeys((url, Path(dest)) for url, dest in items))
    parallel = client.settings.parallel

    def head(url: str) -> ObjectInfo:
        return client.head(*parse_s3_url(url))

    infos = _run_parallel(
        [lambda u=url: head(u) for url, _ in unique],  # type: ignore[misc]
        parallel,
    )
    show = show_progress_default() if progress is None else progress
    with progress_bars(show) as add:

        def job(info: ObjectInfo, dest: Path) -> TransferResult:
            started = time.perf_counter()
            advance = add(dest.name, info.size)
            moved = client.download(info, dest, advance)
            seconds = time.perf_counter() - started
            if moved:
                log.info("%s -> %s (%.1f MB in %.1f s)", info.url, dest, info.size / 1e6, seconds)
            else:
                advance(info.size)
                log.info("%s: %s is up to date", info.url, dest)
            return TransferResult(info.url, dest, info.size, moved, seconds)

        return _run_parallel(
            [
                lambda i=info, d=dest: job(i, d)  # type: ignore[misc]
                for info, (_, dest) in zip(infos, unique)
            ],
            parallel,
        )


def upload_many(
    client: S3Client,
    items: Sequence[tuple[Path, str]],
    remote: dict[str, ObjectInfo] | None = None,
    progress: bool | None = None,
) -> list[TransferResult]:
    """Upload ``[(local_path, s3_url)]`` in parallel; objects already equal are skipped.

    ``remote`` (``{url: ObjectInfo}`` from a listing) saves a HEAD per file; without it every
    object is looked up.
    """
    show = show_progress_default() if progress is None else progress
    with progress_bars(show) as add:

        def job(path: Path, url: str) -> TransferResult:
            bucket, key = parse_s3_url(url)
            size = path.stat().st_size
            info = remote.get(url) if remote is not None else _head_or_none(client, bucket, key)
            if info is not None and info.size == size and same_content(path, info):
                return TransferResult(url, path, size, False)
            started = time.perf_counter()
            client.upload(path, bucket, key, add(path.name, size))
            seconds = time.perf_counter() - started
            log.info("%s -> %s (%.1f MB in %.1f s)", path, url, size / 1e6, seconds)
            return TransferResult(url, path, size, True, seconds)

        return _run_parallel(
            [lambda p=path, u=url: job(p, u) for path, url in items],  # type: ignore[misc]
            client.settings.parallel,
        )


def _head_or_none(client: S3Client, bucket: str, key: str) -> ObjectInfo | None:
    try:
        return client.head(bucket, key)
    except FileNotFoundError:
        return None


__all__ = [
    "ObjectInfo",
    "S3Client",
    "TransferResult",
    "download_many",
    "local_etag",
    "part_path",
    "same_content",
    "sidecar_path",
    "upload_many",
]
