"""A loopback S3 (moto's server mode on 127.0.0.1) holding a public-read ``stpubdata`` bucket.

The real boto3 client talks to it through ``AWS_ENDPOINT_URL``; objects are
written ``public-read`` because MAST's mirror is read anonymously (unsigned
requests get 403 on private objects).  The fixture stops the server it starts.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

BUCKET = "stpubdata"
CREDENTIALS = {"aws_access_key_id": "loopback", "aws_secret_access_key": "loopback", "region_name": "us-east-1"}


class S3Server:
    def __init__(self, process: subprocess.Popen, port: int):
        self.process, self.port = process, port
        self.url = f"http://127.0.0.1:{port}"
        import boto3

        self.client = boto3.client("s3", endpoint_url=self.url, **CREDENTIALS)
        self.client.create_bucket(Bucket=BUCKET)

    def put(self, key: str, path: Path) -> None:
        self.client.put_object(Bucket=BUCKET, Key=key, Body=Path(path).read_bytes(), ACL="public-read")

    def clear(self) -> None:
        for item in self.client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
            self.client.delete_object(Bucket=BUCKET, Key=item["Key"])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    command = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if command is None:
        pytest.fail("moto_server is missing: `./dev.sh test` installs moto[server]")
    port = free_port()
    process = subprocess.Popen([command, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    end = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > end or process.poll() is not None:
                process.kill()
                pytest.fail("moto_server did not start on 127.0.0.1")
            time.sleep(0.1)
    server = S3Server(process, port)
    yield server
    server.stop()
