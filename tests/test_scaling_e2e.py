"""Every executor makes the same products: serial, process pool, Dask (local, an external scheduler, SLURM, workers
inside the appliance image), whatever the number of workers or jwst's maximum_cores; a killed worker's task is run
again, never recorded as done."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, assert_same_science, run_cli
from loopback import dask_cluster as dask_cluster_processes
from test_compare import SMALL, small_run_once
from test_container import docker_client, image  # noqa: F401 - fixtures

pytestmark = pytest.mark.e2e


def digests(workdir: Path) -> dict[str, str]:
    return {p["path"]: p["content_digest"] for p in json.loads((workdir / "manifest.json").read_text())["products"]}


def manifest(workdir: Path) -> dict:
    return json.loads((workdir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    """The small reduction, serial (shared with test_compare and test_reproduce)."""
    workdir, _ = small_run_once(tmp_path_factory)
    return workdir


def run_small(tmp_path: Path, *args: str, text: str = SMALL, name: str = "work") -> Path:
    recipe = tmp_path / "small.toml"  # the same file name as the serial run's: the report names it
    recipe.write_text(text)
    workdir = tmp_path / name
    done = run_cli("run", str(recipe), "--workdir", str(workdir), *args)
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


@pytest.mark.parametrize("args", [("--executor", "process", "--jobs", "2"), ("--executor", "process", "--jobs", "1"),
                                  ("--executor", "dask", "--jobs", "2")])
def test_every_executor_makes_the_serial_products(serial, tmp_path, args):
    workdir = run_small(tmp_path, *args)
    assert digests(workdir) == digests(serial)
    execution = manifest(workdir)["execution"]
    assert execution["executor"] == args[1] and execution["workers"] == int(args[3])
    assert execution["maximum_cores"] == str(max(1, (os.cpu_count() or 1) // int(args[3])))
    workers = {t["worker"] for t in manifest(workdir)["tasks"] if t.get("worker")}
    assert workers and all(":" in w for w in workers)


@pytest.mark.parametrize("cores", ["1", "2"])
def test_products_do_not_depend_on_maximum_cores(serial, tmp_path, cores):
    text = SMALL + f'\n[detector1.steps.jump]\nmaximum_cores = "{cores}"\n[detector1.steps.ramp_fit]\nmaximum_cores = "{cores}"\n'
    workdir = run_small(tmp_path, text=text)
    assert digests(workdir) == digests(serial)
    tasks = [t for t in manifest(workdir)["tasks"] if t["kind"] == "detector1"]
    assert all(t["maximum_cores"] == {"jump": cores, "ramp_fit": cores} for t in tasks)


@pytest.fixture
def scheduler(tmp_path):
    """A real `dask scheduler` on 127.0.0.1 (its address), stopped afterwards."""
    proc, address = dask_cluster_processes.start_scheduler(tmp_path / "scheduler.json")
    yield address
    dask_cluster_processes.stop([proc])


@pytest.fixture
def dask_cluster(scheduler):
    """Two `dask worker` processes (each its own session, so a test can kill one) on the scheduler above."""
    procs = dask_cluster_processes.start_workers(scheduler, 2)
    yield scheduler
    dask_cluster_processes.stop(procs)


def run_killing_a_worker(serial, tmp_path: Path, *args: str) -> None:
    """Run the small recipe, SIGKILL the worker process of the first detector1 task once it runs; the task is
    run again (elsewhere), never recorded as done by the killed worker, and the products are the serial ones."""
    recipe = tmp_path / "small.toml"
    recipe.write_text(SMALL)
    workdir = tmp_path / "work"
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "run", str(recipe), "--workdir", str(workdir), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 300
    marker = None
    while marker is None and time.monotonic() < end:
        marker = next((m for m in (workdir / "records").glob("detector1_*.running")), None) if workdir.exists() else None
        time.sleep(0.05)
    assert marker is not None, proc.communicate()
    killed = json.loads(marker.read_text())["worker"]
    os.kill(int(killed.rpartition(":")[2]), signal.SIGKILL)  # the worker process running that task
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert digests(workdir) == digests(serial)
    assert not list((workdir / "records").glob("*.running"))
    task = marker.name.removesuffix(".running").replace("_", ":", 1)
    assert next(t for t in manifest(workdir)["tasks"] if t["id"] == task)["worker"] != killed
    assert run_cli("verify", str(workdir)).returncode == 0


def test_an_existing_dask_cluster_survives_a_worker_killed_mid_task(serial, tmp_path, dask_cluster):
    run_killing_a_worker(serial, tmp_path, "--executor", "dask", "--dask-scheduler", dask_cluster)


def test_the_process_pool_survives_a_worker_killed_mid_task(serial, tmp_path):
    run_killing_a_worker(serial, tmp_path, "--executor", "process", "--jobs", "2")


def test_an_unreachable_scheduler_is_one_line(tmp_path):
    (tmp_path / "small.toml").write_text(SMALL)
    done = run_cli("run", str(tmp_path / "small.toml"), "--workdir", str(tmp_path / "w"), "--executor", "dask",
                   "--dask-scheduler", "tcp://127.0.0.1:9")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: --dask-scheduler tcp://127.0.0.1:9: no Dask scheduler answers there")
    assert not (tmp_path / "w").exists()


def slurm_or_skip():
    if shutil.which("sbatch") and subprocess.run(["sinfo", "-h"], capture_output=True).returncode == 0:
        return
    if os.environ.get("APPLIANCE_REQUIRE_SLURM") == "1":
        pytest.fail("no SLURM cluster answers (sinfo)")
    pytest.skip("no SLURM cluster answers (sinfo): .ci/run starts one")


def test_slurm_workers_through_dask_jobqueue(serial, tmp_path):
    slurm_or_skip()
    cluster = tmp_path / "cluster.toml"
    cluster.write_text(f'[slurm]\ncores = 1\nmemory = "3GB"\nwalltime = "00:20:00"\njobs = 2\n'
                       f'python = "{sys.executable}"\n')
    workdir = run_small(tmp_path, "--executor", "dask", "--dask-cluster", str(cluster))
    assert digests(workdir) == digests(serial)
    assert manifest(workdir)["execution"] == {"executor": "dask", "workers": 2, "maximum_cores": "1"}
    assert list((workdir / "logs" / "slurm").iterdir())  # the jobs' output, in the workdir
    assert not list(ROOT.glob("slurm-*.out"))


@pytest.mark.container
def test_dask_workers_inside_the_appliance_image(serial, tmp_path, scheduler, docker_client, image):
    """Two `dask worker`s in the pinned image (`docker run --network host`), the workdir mounted at its own path."""
    from distributed import Client

    shared = tmp_path / "shared"
    shared.mkdir()
    workers = dask_cluster_processes.start_image_workers(docker_client, image.id, scheduler, shared, 2)
    try:
        with Client(scheduler, timeout="10s") as client:
            client.wait_for_workers(2, timeout=120)
            versions = client.run(lambda: __import__("jwst").__version__)
            assert set(versions.values()) == {"3.0.0"}
        workdir = run_small(shared, "--executor", "dask", "--dask-scheduler", scheduler)
        assert_same_science(serial, workdir)  # host client, workers in the image
        assert manifest(workdir)["execution"]["workers"] == 2
    finally:
        dask_cluster_processes.stop_containers(workers)
