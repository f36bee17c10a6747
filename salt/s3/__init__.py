"""S3 support: training data and run directories in a bucket (``data.config_S3``).

``salt.s3.config`` holds the schema and credentials, ``salt.s3.transfer`` the transfers,
``salt.s3.mirror`` the run-directory mirror and ``salt.s3.cli`` the command-line hooks. Names
are imported lazily so that ``import salt.s3.config`` (done by the data module for its schema)
pulls in neither boto3 nor lightning.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "S3Config": "salt.s3.config",
    "S3Settings": "salt.s3.config",
    "resolve_settings": "salt.s3.config",
    "S3Client": "salt.s3.transfer",
    "download_many": "salt.s3.transfer",
    "upload_many": "salt.s3.transfer",
    "S3Session": "salt.s3.cli",
    "prepare_s3": "salt.s3.cli",
    "localize_config_args": "salt.s3.cli",
    "download_s3_main": "salt.s3.cli",
    "mirror_run_dir": "salt.s3.mirror",
    "fetch_run_dir": "salt.s3.mirror",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'salt.s3' has no attribute '{name}'")


__all__ = sorted(_EXPORTS)
