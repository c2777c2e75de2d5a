"""A real Dask scheduler and workers on 127.0.0.1, started as processes, for tests and benchmarks.

Each process runs in its own session, so :func:`stop` can end a worker's nanny
together with the worker process it forked, and a test can kill one of them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

DASK = Path(sys.executable).parent / "dask"
QUIET = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True}


def start_scheduler(scheduler_file: Path) -> tuple[subprocess.Popen, str]:
    """A ``dask scheduler`` on 127.0.0.1 (a free port) and its address, read from the file it writes."""
    proc = subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                             "--scheduler-file", str(scheduler_file)], **QUIET)
    end = time.monotonic() + 60
    while not scheduler_file.exists() and time.monotonic() < end:
        time.sleep(0.2)
    if not scheduler_file.exists():
        stop([proc])
        raise RuntimeError(f"dask scheduler wrote no {scheduler_file} within 60 s")
    return proc, json.loads(scheduler_file.read_text())["address"]


def start_workers(address: str, count: int, env: dict | None = None) -> list[subprocess.Popen]:
    """``count`` single-threaded ``dask worker`` processes on 127.0.0.1 joined to ``address``."""
    return [subprocess.Popen([str(DASK), "worker", address, "--nthreads", "1", "--host", "127.0.0.1",
                              "--no-dashboard"], env=env, **QUIET) for _ in range(count)]


def wait_for_workers(address: str, count: int, timeout: float = 180) -> None:
    from distributed import Client

    with Client(address, timeout="20s") as client:
        client.wait_for_workers(count, timeout=timeout)


def stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each process group (a worker's nanny and its worker process), then wait; kill what lingers."""
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_image_workers(client, image_id: str, address: str, shared: Path, count: int) -> list:
    """``count`` ``dask worker`` containers of the appliance image (``--network host``, this user), ``shared``
    mounted at its own path so task paths mean the same inside and out; stop them with :func:`stop_containers`."""
    from appliance.backends import worker_environment

    return [client.containers.run(
        image_id, ["worker", address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"],
        entrypoint="dask", network_mode="host", user=f"{os.getuid()}:{os.getgid()}", detach=True,
        environment={"PYTHONPATH": "/opt/appliance", "HOME": "/tmp",
                     **dict(v.split("=", 1) for v in worker_environment())},
        volumes={str(shared): {"bind": str(shared), "mode": "rw"}}) for _ in range(count)]


def stop_containers(containers: list) -> None:
    for container in containers:
        container.stop(timeout=10)
        container.remove(force=True)
