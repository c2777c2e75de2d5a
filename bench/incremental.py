"""Incremental runs on the demo: from scratch, the no-op re-run, and an image3-parameter change.

Goals (issue "Incremental, resumable runs"):

* the no-op re-run, as a whole ``run.py run`` command: ≤ 1 s;
* an image3-parameter change: ≤ 1.1 × the time of image3 and the
  post-processing alone -- their tasks' own durations (from the manifest) plus
  what any process running them pays first: starting Python and importing
  ``jwst.pipeline`` (measured here too) -- i.e. deciding what to reuse costs
  next to nothing;
* the overhead over plain jwst: ``bench/overhead.py``, run at the end (≤ 1.03;
  ``--no-overhead`` leaves it out).

    .venv/bin/python bench/incremental.py [--rounds 3] [--no-overhead]

Each figure is a median over the rounds, measured in one run of this script.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = (ROOT / "recipes" / "demo.toml").read_text()
CHANGE = "\n[image3.steps.resample]\npixfrac = {pixfrac}\n"


# A user's Python keeps the appliance's compiled bytecode; with PYTHONDONTWRITEBYTECODE=1 (as some
# shells and CI set it) every command would compile its modules again, some 0.2 s of a no-op re-run.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(recipe: Path, workdir: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), "run", str(recipe), "--workdir", str(workdir)],
                          capture_output=True, text=True, check=True, env=ENV)
    return time.perf_counter() - t0, done.stdout.strip().splitlines()[-1]


def seconds_of(workdir: Path, prefixes: tuple[str, ...]) -> float:
    tasks = json.loads((workdir / "manifest.json").read_text())["tasks"]
    return sum(t["seconds"] for t in tasks if t["id"].startswith(prefixes) and t["status"] == "run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-overhead", action="store_true", help="leave out bench/overhead.py")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-incremental-"))
    recipe = scratch / "demo.toml"
    try:
        recipe.write_text(DEMO)
        work = scratch / "work"
        scratch_seconds, line = timed(recipe, work)
        print(f"from scratch: {scratch_seconds:6.1f} s   ({line})")
        later = seconds_of(work, ("image3:", "postprocess:"))
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import jwst.pipeline"], check=True, env=ENV)
        startup = time.perf_counter() - t0
        print(f"starting Python and importing jwst.pipeline: {startup:.1f} s")
        noop, change = [], []
        for n in range(args.rounds):
            recipe.write_text(DEMO + CHANGE.format(pixfrac=0.7 + 0.05 * n))
            seconds, line = timed(recipe, work)
            image3_alone = seconds_of(work, ("image3:", "postprocess:")) + startup
            change.append(seconds / image3_alone)
            print(f"round {n + 1}: image3 change {seconds:5.1f} s vs its tasks alone {image3_alone:5.1f} s: ratio "
                  f"{seconds / image3_alone:.2f} ({line})", end="")
            seconds, line = timed(recipe, work)  # the same recipe again: nothing to do
            noop.append(seconds)
            print(f";  no-op re-run {seconds:5.2f} s ({line})")
        print(f"median no-op re-run: {statistics.median(noop):.2f} s   (goal ≤ 1 s)")
        print(f"median image3-change ratio: {statistics.median(change):.2f}   (goal ≤ 1.1; "
              f"image3 + post-processing took {later:.1f} s from scratch)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not args.no_overhead:
        print("bench/overhead.py:", flush=True)
        subprocess.run([sys.executable, str(ROOT / "bench" / "overhead.py"), "--rounds", str(args.rounds)], check=True)


if __name__ == "__main__":
    main()
