"""A real S3-compatible server for the tests: moto's standalone server on 127.0.0.1 with
authentication switched on, and a fresh bucket per test (fixtures ``s3_server`` and ``s3``,
made available to every test module by ``conftest.py``)."""

from __future__ import annotations

import json
import logging
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import moto.server as moto_server
import pytest

import salt.s3.config as s3_config
from salt.s3.config import resolve_settings

SECRET_ENVS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "S3_ENDPOINT_URL",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the server -----------------------------------------------------------------------------
@dataclass
class Server:
    url: str
    access_key: str
    secret_key: str

    def boto(self, url: str | None = None) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=url or self.url,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def config(self, bucket: str, **extra: Any) -> dict[str, Any]:
        return {
            "use_S3": True,
            "pubKey": self.access_key,
            "secKey": self.secret_key,
            "url": self.url,
            "bucket": bucket,
            **extra,
        }


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 server on loopback; IAM authentication on, so wrong keys are refused."""
    import requests

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    iam = boto3.client(
        "iam",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",
    )
    # moto's backends are shared by every server of this process: a user name per server
    user = f"salt-{port}"
    iam.create_user(UserName=user)
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }
    iam.put_user_policy(UserName=user, PolicyName="all", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    requests.post(f"{url}/moto-api/reset-auth", data=b"0", timeout=10)  # authenticate from now on
    try:
        yield Server(url, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        requests.post(f"{url}/moto-api/reset-auth", data=b"inf", timeout=10)
        server.stop()


@dataclass
class Env:
    server: Server
    bucket: str
    boto: Any
    tmp: Path

    def put(self, key: str, data: bytes | Path, **kwargs: Any) -> None:
        body = data.read_bytes() if isinstance(data, Path) else data
        self.boto.put_object(Bucket=self.bucket, Key=key, Body=body, **kwargs)

    def settings(self, **extra: Any) -> s3_config.S3Settings:
        return resolve_settings(self.server.config(self.bucket, **extra))


@pytest.fixture
def s3(s3_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """A fresh bucket; no AWS variables from the outside; short backoffs; a private cache."""
    for name in SECRET_ENVS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SALT_S3_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # markers of once_per_node
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr("tempfile.tempdir", None)
    monkeypatch.setattr(s3_config, "DEFAULT_BACKOFF", 0.01)
    bucket = f"salt-{uuid.uuid4().hex[:10]}"
    boto = s3_server.boto()
    boto.create_bucket(Bucket=bucket)
    return Env(s3_server, bucket, boto, tmp_path)
