"""Speed-up of the cluster executors over serial: an existing Dask cluster, SLURM jobs, workers in the image.

bench/scale.py measures the executors that live on this machine (process pool,
Dask LocalCluster); this one measures the three ways ``--executor dask`` reaches
workers it does not start itself or starts elsewhere, on the same workload
(simulated exposures through detector1 + image2), each with 2 workers:

* ``scheduler``: a ``dask scheduler`` and two ``dask worker`` processes on
  127.0.0.1, started before the rounds (an existing cluster: its start-up is
  not part of a run);
* ``slurm``: ``--dask-cluster`` with two SLURM jobs of one core each, submitted
  by the run itself through dask-jobqueue (their queueing and start-up are);
* ``image``: two ``dask worker`` containers of the appliance image
  (``docker run --network host``), the scratch directory mounted at its own path.

    .venv/bin/python bench/cluster.py [--rounds 2] [--exposures 8] [--only scheduler,slurm,image]

The kinds alternate with ``serial`` within each round; figures are median
ratios of this one run.  A kind whose cluster is not here (no ``sinfo``, no
Docker daemon, no image) is left out with a line saying why.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests")]

from loopback.dask_cluster import (  # noqa: E402
    start_image_workers,
    start_scheduler,
    start_workers,
    stop,
    stop_containers,
    wait_for_workers,
)
from scale import run  # noqa: E402  (bench/scale.py: one timed run.py run with its workers' peak RSS)


def host_workers(address: str, env: dict) -> list[subprocess.Popen]:
    from appliance.backends import worker_environment

    procs = start_workers(address, 2, {**env, **dict(v.split("=", 1) for v in worker_environment())})
    wait_for_workers(address, 2)
    return procs


def image_workers(address: str, scratch: Path) -> list:
    import docker

    from appliance.image import default_tag

    client = docker.from_env()
    containers = start_image_workers(client, client.images.get(default_tag()).id, address, scratch, 2)
    wait_for_workers(address, 2)
    return containers


def available(kind: str) -> str | None:
    """Why the kind cannot run here, or None."""
    if kind == "slurm":
        if not shutil.which("sbatch") or subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
            return "no SLURM cluster answers (sinfo); sudo .ci/slurm.sh start"
    if kind == "image":
        try:
            import docker

            from appliance.image import default_tag

            docker.from_env().images.get(default_tag())
        except Exception as exc:  # no daemon, no image
            return f"no appliance image ({type(exc).__name__}); python run.py docker build"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--exposures", type=int, default=8)
    parser.add_argument("--only", default="scheduler,slurm,image")
    args = parser.parse_args()

    from appliance.simulate import (
        SIM_CONTEXT,
        SimParams,
        build_crds_cache,
        crds_environment,
        simulate_observation,
    )

    kinds = []
    for kind in args.only.split(","):
        why = available(kind)
        if why:
            print(f"{kind}: left out: {why}")
        else:
            kinds.append(kind)
    scratch = Path(tempfile.mkdtemp(prefix="bench-cluster-", dir=os.environ.get("BENCH_DIR")))
    scratch.chmod(0o755)
    started = []
    try:
        simulate_observation(scratch / "data", SimParams(filters=("F770W",), dithers=args.exposures))
        env = {**os.environ, **crds_environment(build_crds_cache(scratch / "crds"))}
        recipe = scratch / "cluster.toml"
        recipe.write_text(
            f'schema = 1\n[recipe]\nname = "cluster"\n[environment]\njwst = "3.0.0"\n'
            f'crds_context = "{SIM_CONTEXT}"\n[inputs]\nlocal = ["data/*_uncal.fits"]\n[image3]\nskip = true\n')
        slurm = scratch / "slurm.toml"
        slurm.write_text(f'[slurm]\ncores = 1\nmemory = "3GB"\nwalltime = "00:30:00"\njobs = 2\n'
                         f'python = "{sys.executable}"\n')
        flags = {"serial": ["--executor", "serial"], "slurm": ["--executor", "dask", "--dask-cluster", str(slurm)]}
        if "scheduler" in kinds:
            proc, address = start_scheduler(scratch / "scheduler.json")
            started.append(proc)
            started += host_workers(address, env)
            flags["scheduler"] = ["--executor", "dask", "--dask-scheduler", address]
        containers = []
        if "image" in kinds:
            proc, address = start_scheduler(scratch / "image-scheduler.json")
            started.append(proc)
            containers = image_workers(address, scratch)
            flags["image"] = ["--executor", "dask", "--dask-scheduler", address]
        print(f"{args.exposures} exposures, SUB256; detector1 + image2; {os.cpu_count()} cores; 2 workers each")
        order = ["serial", *kinds]
        seconds: dict[str, list[float]] = {k: [] for k in order}
        try:
            for n in range(args.rounds):
                line = []
                for kind in order:
                    workdir = scratch / f"{kind}{n}"
                    took, _ = run(recipe, workdir, flags[kind], env)
                    seconds[kind].append(took)
                    line.append(f"{kind} {took:6.1f} s")
                    shutil.rmtree(workdir, ignore_errors=True)
                print(f"round {n + 1}: " + "   ".join(line), flush=True)
        finally:
            stop_containers(containers)
        for kind in kinds:
            ratios = [s / k for s, k in zip(seconds["serial"], seconds[kind])]
            print(f"median speed-up {kind:<9} over serial: {statistics.median(ratios):.2f}   (medians "
                  f"{statistics.median(seconds['serial']):.1f} s → {statistics.median(seconds[kind]):.1f} s)")
    finally:
        stop(started)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
