"""``data.config_S3``: where the bucket is, which files to fetch, and whose credentials to use.

The typed dict is the schema jsonargparse validates (a misspelt key is an error, not a silent
default). :func:`resolve_settings` turns it, plus the standard AWS environment variables, into
:class:`S3Settings`, the only object that ever holds the secret key: configs, metadata and logs
only ever see :data:`SECRET_PLACEHOLDER`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import urlparse

#: the ``data`` keys that name files and may be fetched from S3
DATA_KEYS = ("train_file", "val_file", "test_file", "norm_dict", "class_dict")

ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"
ENDPOINT_ENVS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "S3_ENDPOINT_URL")
CACHE_ENV = "SALT_S3_CACHE"

#: what saved configs keep instead of the keys: re-read from the environment when loaded again
ACCESS_PLACEHOLDER = "${" + ACCESS_KEY_ENV + "}"
SECRET_PLACEHOLDER = "${" + SECRET_KEY_ENV + "}"
REDACTED = "<redacted>"

#: seconds before the first retry (doubling up to ``S3Settings.max_backoff``); tests shorten it
DEFAULT_BACKOFF = 0.5

_PLACEHOLDER = re.compile(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$")


class S3Config(TypedDict, total=False):
    """``data.config_S3``.

    Keys:
        use_S3: set up S3 (needed to keep the run directory on S3).
        download_S3: download ``download_files`` before training and train on the copies.
        pubKey: access key id; ``${AWS_ACCESS_KEY_ID}`` or unset to take it from the environment.
        secKey: secret key; ``${AWS_SECRET_ACCESS_KEY}`` or unset to take it from the environment
            (saved configs always keep the placeholder, never the key).
        url: endpoint, e.g. ``https://s3.cern.ch``; unset: ``AWS_ENDPOINT_URL(_S3)`` or AWS.
        bucket: bucket of the keys in ``download_files`` (``s3://bucket/key`` URLs name their own).
        download_path: local folder for the copies (default: the S3 cache, ``$SALT_S3_CACHE``).
        download_files: ``data`` keys to download (train_file, val_file, test_file, norm_dict,
            class_dict); their values are keys in ``bucket`` or ``s3://`` URLs.
        retries: tries per request before giving up (connection errors, 5xx).
        parallel: files transferred at once.
    """

    use_S3: bool
    download_S3: bool
    pubKey: str | None
    secKey: str | None
    url: str | None
    bucket: str | None
    download_path: str | None
    download_files: list[str]
    retries: int
    parallel: int


@dataclass(frozen=True)
class S3Settings:
    """Resolved connection settings; the keys are hidden from ``repr`` so they never get logged."""

    endpoint_url: str | None = None
    bucket: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    download: bool = False
    download_path: str | None = None
    download_files: tuple[str, ...] = ()
    retries: int = 5
    backoff: float = 0.5
    max_backoff: float = 8.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    parallel: int = 4

    @property
    def where(self) -> str:
        """The endpoint as users name it in messages."""
        return self.endpoint_url or "AWS S3"


def _expand(value: Any, env: Mapping[str, str]) -> str | None:
    """A literal, a ``${VAR}`` placeholder (read from ``env``) or nothing."""
    if value is None:
        return None
    text = str(value).strip()
    if not text or text == REDACTED:
        return None
    match = _PLACEHOLDER.match(text)
    if match:
        return env.get(match.group(1)) or None
    return text


def resolve_settings(
    config: Mapping[str, Any] | None, env: Mapping[str, str] | None = None
) -> S3Settings:
    """``data.config_S3`` completed from the environment.

    Keys the config leaves unset (or gives as ``${VAR}``) come from ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY`` and ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``; with neither,
    boto3's own chain (``~/.aws``) applies.

    Raises:
        ValueError: an unknown ``download_files`` entry, or only one of the two keys.
    """
    env = os.environ if env is None else env
    conf = dict(config or {})
    access = _expand(conf.get("pubKey"), env) or env.get(ACCESS_KEY_ENV) or None
    secret = _expand(conf.get("secKey"), env) or env.get(SECRET_KEY_ENV) or None
    if bool(access) != bool(secret):
        missing = "secKey" if access else "pubKey"
        env_name = SECRET_KEY_ENV if access else ACCESS_KEY_ENV
        raise ValueError(
            f"data.config_S3.{missing} is not set (nor {env_name}): both S3 keys are needed"
        )
    endpoint = _expand(conf.get("url"), env) or next(
        (env[name] for name in ENDPOINT_ENVS if env.get(name)), None
    )
    if endpoint is not None:
        parsed = urlparse(endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"data.config_S3.url '{endpoint}' is not an http(s) endpoint "
                "(expected e.g. https://s3.cern.ch)"
            )
    files = tuple(conf.get("download_files") or ())
    for key in files:
        if key not in DATA_KEYS:
            raise ValueError(
                f"data.config_S3.download_files: '{key}' is not a data file key "
                f"(expected some of {', '.join(DATA_KEYS)})"
            )
    retries = int(conf.get("retries") or S3Settings.retries)
    parallel = int(conf.get("parallel") or S3Settings.parallel)
    if retries < 1 or parallel < 1:
        raise ValueError("data.config_S3: retries and parallel must be at least 1")
    return S3Settings(
        endpoint_url=endpoint.rstrip("/") if endpoint else None,
        bucket=_expand(conf.get("bucket"), env),
        access_key=access,
        secret_key=secret,
        download=bool(conf.get("download_S3")),
        download_path=_expand(conf.get("download_path"), env),
        download_files=files,
        retries=retries,
        backoff=DEFAULT_BACKOFF,
        parallel=parallel,
    )


def redacted(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``config`` with the keys replaced by environment placeholders (for saving and printing)."""
    if config is None:
        return None
    out = dict(config)
    if out.get("pubKey") not in (None, ""):
        out["pubKey"] = ACCESS_PLACEHOLDER
    if out.get("secKey") not in (None, ""):
        out["secKey"] = SECRET_PLACEHOLDER
    return out


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    """Where S3 objects without a ``download_path`` (and staged run directories) live locally:
    ``$SALT_S3_CACHE`` or ``~/.cache/salt/s3``; an object ``s3://b/k`` goes to ``<root>/b/k``."""
    env = os.environ if env is None else env
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV]).expanduser()
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "salt" / "s3"


def is_s3_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("s3://")


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)`` (the key may be empty: the whole bucket).

    Raises:
        ValueError: not an ``s3://`` URL or no bucket.
    """
    if not is_s3_url(url):
        raise ValueError(f"'{url}' is not an s3://bucket/key URL")
    bucket, _, key = url[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"'{url}' names no bucket (expected s3://bucket/key)")
    return bucket, key.strip("/")


def s3_url(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}" if key else f"s3://{bucket}"


__all__ = [
    "DATA_KEYS",
    "SECRET_PLACEHOLDER",
    "S3Config",
    "S3Settings",
    "cache_root",
    "is_s3_url",
    "parse_s3_url",
    "redacted",
    "resolve_settings",
    "s3_url",
]
