"""Speed-up of the process-pool and Dask executors over serial, the workers' memory, and their start-up cost.

Goals (issue "Use every core, then a cluster"):

* 8 simulated exposures through detector1 + image2: ``process --jobs 2`` and
  ``dask`` with 2 workers against ``serial``, median speed-up ≥ 1.8 on
  2 cores (the physical limit is 2.0);
* peak RSS of a worker ≤ 1.1 × the peak RSS of a plain jwst process that
  reduces one of the same exposures through the same two stages;
* worker start-up: how long a spawned process-pool worker and a Dask
  LocalCluster worker take until they can run a task (jwst imported).

    .venv/bin/python bench/scale.py [--rounds 3] [--exposures 8] [--subarray SUB256|FULL] [--groups 10]

The three executors alternate within each round (serial, process, dask), so
the machine's noise falls on all of them alike; figures are medians over the
rounds of this one run.  Worker memory is sampled (psutil, every 50 ms) over
the descendants of the ``run.py`` process; the plain side's peak is its
``ru_maxrss``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXECUTORS = {"serial": ["--executor", "serial"], "process": ["--executor", "process", "--jobs", "2"],
             "dask": ["--executor", "dask", "--jobs", "2"]}

PLAIN = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from jwst.pipeline import Detector1Pipeline, Image2Pipeline
    uncal, out, cores = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve(), sys.argv[3]
    out.mkdir(parents=True)
    steps = {"jump": {"maximum_cores": cores}, "ramp_fit": {"maximum_cores": cores}}
    Detector1Pipeline.call(str(uncal), output_dir=str(out), save_results=True, steps=steps)
    os.chdir(out)
    Image2Pipeline.call(uncal.name.replace("_uncal", "_rate"), output_dir=str(out), save_results=True)
    """
)

STARTUP = textwrap.dedent(
    """
    import multiprocessing, sys, time
    from concurrent.futures import ProcessPoolExecutor

    def ready():
        import jwst.pipeline  # what a worker imports before its first task
        return 1

    if __name__ == "__main__":
        kind = sys.argv[1]
        t0 = time.perf_counter()
        if kind == "process":
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                pool.submit(ready).result()
                print(time.perf_counter() - t0)
        else:
            from distributed import Client, LocalCluster
            with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as c, \\
                    Client(c) as client:
                client.submit(ready).result()
                print(time.perf_counter() - t0)
    """
)


class PeakRSS:
    """The largest RSS any descendant of ``pid`` reached, per descendant, sampled every 50 ms."""

    def __init__(self, pid: int):
        import psutil

        self._root = psutil.Process(pid)
        self._psutil = psutil
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                children = self._root.children(recursive=True)
            except self._psutil.Error:
                break
            for child in children:
                try:
                    rss = child.memory_info().rss
                except self._psutil.Error:
                    continue
                self.peaks[child.pid] = max(self.peaks.get(child.pid, 0), rss)
            self._stop.wait(0.05)

    def stop(self) -> dict[int, int]:
        self._stop.set()
        self._thread.join()
        return self.peaks


def run(recipe: Path, workdir: Path, args: list[str], env: dict) -> tuple[float, list[int]]:
    """Seconds of one ``run.py run``, and the peak RSS of each worker process it had (the big ones)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "run", str(recipe), "--workdir", str(workdir),
                             *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sampler = PeakRSS(proc.pid)
    _, err = proc.communicate()
    seconds = time.perf_counter() - t0
    peaks = sampler.stop()
    if proc.returncode != 0:
        raise SystemExit(f"run.py {' '.join(args)} failed:\n{err[-2000:]}")
    workers = sorted((p for p in peaks.values() if p > 150e6), reverse=True)  # jwst-importing processes
    return seconds, workers


def plain_peak(uncal: Path, out: Path, script: Path, cores: str, env: dict) -> int:
    """ru_maxrss (bytes) of a fresh plain-jwst process reducing one exposure through detector1 + image2."""
    proc = subprocess.Popen([sys.executable, str(script), str(uncal), str(out), cores], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("the plain jwst reduction failed")
    return usage.ru_maxrss * 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--exposures", type=int, default=8)
    parser.add_argument("--subarray", default="SUB256", choices=("SUB256", "FULL"))
    parser.add_argument("--groups", type=int, default=10)
    args = parser.parse_args()

    from appliance.resources import core_share
    from appliance.simulate import SIM_CONTEXT, SimParams, build_crds_cache, crds_environment, simulate_observation

    scratch = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        params = SimParams(filters=("F770W",), dithers=args.exposures, subarray=args.subarray, ngroups=args.groups)
        simulate_observation(scratch / "data", params)
        cache = build_crds_cache(scratch / "crds")
        env = {**os.environ, **crds_environment(cache)}
        recipe = scratch / "scale.toml"
        recipe.write_text(
            f'schema = 1\n[recipe]\nname = "scale"\n[environment]\njwst = "3.0.0"\n'
            f'crds_context = "{SIM_CONTEXT}"\n[inputs]\nlocal = ["data/*_uncal.fits"]\n[image3]\nskip = true\n')
        print(f"{args.exposures} exposures, {args.subarray}, {args.groups} groups; detector1 + image2; "
              f"{os.cpu_count()} cores")

        seconds: dict[str, list[float]] = {name: [] for name in EXECUTORS}
        worker_peaks: dict[str, list[int]] = {name: [] for name in EXECUTORS}
        for n in range(args.rounds):
            line = []
            for name, flags in EXECUTORS.items():
                workdir = scratch / f"{name}{n}"
                took, peaks = run(recipe, workdir, flags, env)
                seconds[name].append(took)
                worker_peaks[name].extend(peaks[:2] if name != "serial" else [])
                line.append(f"{name} {took:6.1f} s")
                shutil.rmtree(workdir)
            print(f"round {n + 1}: " + "   ".join(line))
        serial = statistics.median(seconds["serial"])
        for name in ("process", "dask"):
            ratios = [s / p for s, p in zip(seconds["serial"], seconds[name])]
            print(f"median speed-up {name:<7} (2 workers) over serial: {statistics.median(ratios):.2f}   "
                  f"(goal ≥ 1.8; medians {serial:.1f} s → {statistics.median(seconds[name]):.1f} s)")

        script = scratch / "plain.py"
        script.write_text(PLAIN)
        uncal = sorted((scratch / "data").glob("*_uncal.fits"))[0]
        plain = [plain_peak(uncal, scratch / f"plain{n}", script, core_share(None, 2), env) for n in range(2)]
        reference = statistics.median(plain)
        print(f"plain jwst, one exposure through detector1 + image2: peak RSS {reference / 1e9:.2f} GB")
        for name in ("process", "dask"):
            peaks = worker_peaks[name]
            if peaks:
                print(f"peak RSS of a {name} worker: median {statistics.median(peaks) / 1e9:.2f} GB, "
                      f"max {max(peaks) / 1e9:.2f} GB; ratio to plain jwst {max(peaks) / reference:.2f}   (goal ≤ 1.1)")

        startup = scratch / "startup.py"
        startup.write_text(STARTUP)
        for kind in ("process", "dask"):
            took = [float(subprocess.run([sys.executable, str(startup), kind], env=env, capture_output=True,
                                         text=True, check=True).stdout.split()[-1]) for _ in range(args.rounds)]
            print(f"worker start-up ({kind}): median {statistics.median(took):.1f} s until jwst is imported")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
