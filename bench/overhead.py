"""Overhead of the appliance over plain jwst calls (goal: median ratio ≤ 1.03).

The same simulated observation goes through the same three stages in each
round, three ways: with plain jwst calls as the reference notebook makes them;
the same calls with the collector treated as the appliance treats it
(``appliance.stages.freeze_heap`` before each stage, which spares the full
collections stpipe starts before every step); and with ``run.py run`` on a
local-files recipe. All run in fresh processes with the same CRDS environment,
so imports count on every side, and with the same ``maximum_cores`` for jump
and ramp_fit (the serial executor gives its one worker every core).

``run.py`` against the first is the goal; against the second, what the
appliance's own bookkeeping costs (records, digests, parameter files).

This machine's speed drifts by several per cent over minutes, more than the
overhead measured, so the order reverses every other round, and besides the
median of the rounds' ratios the ratio of each side's fastest run is given
(noise only ever adds time), and the CPU time of each side's process tree
(user + system: jump's and ramp_fit's worker processes and the appliance's
digest process included).

    .venv/bin/python bench/overhead.py [--rounds 4] [--dithers 4]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PLAIN = textwrap.dedent(
    """
    import gc
    import os
    import sys
    from pathlib import Path

    FROZEN = False  # "frozen" as the fourth argument: the collector treated as the appliance treats it


    def calling(pipeline, *args, **kwargs):
        if FROZEN:  # what appliance.stages.freeze_heap does before each stage task
            gc.unfreeze()
            gc.collect()
            gc.freeze()
        pipeline.call(*args, **kwargs)


    def main():
        # imported here, not at the top: the processes jump and ramp_fit spawn import this script
        # again, and would otherwise import jwst each time (run.py imports nothing heavy at its top)
        from jwst.pipeline import Detector1Pipeline, Image2Pipeline, Image3Pipeline
        from jwst.associations import asn_from_list
        from jwst.associations.lib.rules_level2_base import DMSLevel2bBase
        from jwst.associations.lib.rules_level3_base import DMS_Level3_Base
        from astropy.io import fits

        global FROZEN
        src, out, cores = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve(), sys.argv[3]
        FROZEN = sys.argv[4:] == ["frozen"]
        steps = {"jump": {"maximum_cores": cores}, "ramp_fit": {"maximum_cores": cores}}
        for d in ("stage1", "stage2", "stage3"):
            (out / d).mkdir(parents=True)
        for f in sorted(src.glob("*_uncal.fits")):
            calling(Detector1Pipeline, str(f), output_dir=str(out / "stage1"), save_results=True, steps=steps)
        by_filter = {}
        os.chdir(out / "stage1")  # as in the notebook: associations are opened from their directory
        for rate in sorted((out / "stage1").glob("*_rate.fits")):
            name = rate.name.removesuffix("_rate.fits")
            asn = asn_from_list.asn_from_list([rate.name], rule=DMSLevel2bBase, product_name=name)
            path = out / "stage1" / f"{name}_asn.json"
            path.write_text(asn.dump(format="json")[1])
            calling(Image2Pipeline, str(path), output_dir=str(out / "stage2"), save_results=True)
            by_filter.setdefault(fits.getval(rate, "FILTER"), []).append(f"{name}_cal.fits")
        os.chdir(out / "stage2")
        for filt, members in sorted(by_filter.items()):
            asn = asn_from_list.asn_from_list(members, rule=DMS_Level3_Base, product_name=f"bench_{filt.lower()}")
            path = out / "stage2" / f"bench_{filt.lower()}_asn.json"
            path.write_text(asn.dump(format="json")[1])
            calling(Image3Pipeline, str(path), output_dir=str(out / "stage3"), save_results=True)


    if __name__ == "__main__":  # jump and ramp_fit spawn processes that import this script again
        main()
    """
)


LABELS = {"plain": "plain jwst", "frozen": "plain jwst, heap frozen", "ours": "run.py"}


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds of the command's whole process tree)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--dithers", type=int, default=4)
    args = parser.parse_args()

    from appliance.resources import core_share
    from appliance.simulate import SIM_CONTEXT, SimParams, build_crds_cache, crds_environment, simulate_observation

    scratch = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    try:
        simulate_observation(scratch / "data", SimParams(dithers=args.dithers))
        cache = build_crds_cache(scratch / "crds")
        env = {**os.environ, **crds_environment(cache)}
        recipe = scratch / "bench.toml"
        recipe.write_text(
            f'schema = 1\n[recipe]\nname = "bench"\n[environment]\njwst = "3.0.0"\n'
            f'crds_context = "{SIM_CONTEXT}"\n[inputs]\nlocal = ["data/*_uncal.fits"]\n'
        )
        script = scratch / "plain.py"
        script.write_text(PLAIN)
        commands = {
            "plain": lambda out: [sys.executable, str(script), str(scratch / "data"), str(out), core_share(None, 1)],
            "frozen": lambda out: [*commands["plain"](out), "frozen"],
            "ours": lambda out: [sys.executable, str(ROOT / "run.py"), "run", str(recipe), "--workdir", str(out),
                                 "--executor", "serial"],
        }
        runs: dict[str, list[tuple[float, float]]] = {side: [] for side in commands}
        for n in range(args.rounds):
            for side in list(commands) if n % 2 == 0 else reversed(list(commands)):
                runs[side].append(timed(commands[side](scratch / f"{side}{n}"), env))
                shutil.rmtree(scratch / f"{side}{n}")
            print(f"round {n + 1}: " + "   ".join(
                f"{LABELS[side]} {runs[side][-1][0]:6.1f} s ({runs[side][-1][1]:6.1f} s CPU)" for side in commands))
        for base, goal in (("plain", "goal ≤ 1.03"), ("frozen", "the appliance's own costs")):
            ratios = [ours[0] / other[0] for ours, other in zip(runs["ours"], runs[base])]
            cpu = [ours[1] / other[1] for ours, other in zip(runs["ours"], runs[base])]
            fastest = min(w for w, _ in runs["ours"]) / min(w for w, _ in runs[base])
            print(f"run.py / {LABELS[base]}: median {statistics.median(ratios):.3f} "
                  f"({', '.join(f'{r:.3f}' for r in ratios)}); fastest / fastest {fastest:.3f}; "
                  f"median CPU-time ratio {statistics.median(cpu):.3f}   ({goal})")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
