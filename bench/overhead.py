"""Overhead of the appliance over plain jwst calls (goal: median ratio ≤ 1.03).

The same simulated observation goes through the same three stages twice per
round, alternating: once with plain jwst calls as the reference notebook makes
them, once with ``run.py run`` on a local-files recipe. Both run in fresh
processes with the same CRDS environment, so imports count on both sides,
and with the same ``maximum_cores`` for jump and ramp_fit (the serial
executor gives its one worker every core).

    .venv/bin/python bench/overhead.py [--rounds 3] [--dithers 4]
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PLAIN = textwrap.dedent(
    """
    import os
    import sys
    from pathlib import Path


    def main():
        # imported here, not at the top: the processes jump and ramp_fit spawn import this script
        # again, and would otherwise import jwst each time (run.py imports nothing heavy at its top)
        from jwst.pipeline import Detector1Pipeline, Image2Pipeline, Image3Pipeline
        from jwst.associations import asn_from_list
        from jwst.associations.lib.rules_level2_base import DMSLevel2bBase
        from jwst.associations.lib.rules_level3_base import DMS_Level3_Base
        from astropy.io import fits

        src, out, cores = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve(), sys.argv[3]
        steps = {"jump": {"maximum_cores": cores}, "ramp_fit": {"maximum_cores": cores}}
        for d in ("stage1", "stage2", "stage3"):
            (out / d).mkdir(parents=True)
        for f in sorted(src.glob("*_uncal.fits")):
            Detector1Pipeline.call(str(f), output_dir=str(out / "stage1"), save_results=True, steps=steps)
        by_filter = {}
        os.chdir(out / "stage1")  # as in the notebook: associations are opened from their directory
        for rate in sorted((out / "stage1").glob("*_rate.fits")):
            name = rate.name.removesuffix("_rate.fits")
            asn = asn_from_list.asn_from_list([rate.name], rule=DMSLevel2bBase, product_name=name)
            path = out / "stage1" / f"{name}_asn.json"
            path.write_text(asn.dump(format="json")[1])
            Image2Pipeline.call(str(path), output_dir=str(out / "stage2"), save_results=True)
            by_filter.setdefault(fits.getval(rate, "FILTER"), []).append(f"{name}_cal.fits")
        os.chdir(out / "stage2")
        for filt, members in sorted(by_filter.items()):
            asn = asn_from_list.asn_from_list(members, rule=DMS_Level3_Base, product_name=f"bench_{filt.lower()}")
            path = out / "stage2" / f"bench_{filt.lower()}_asn.json"
            path.write_text(asn.dump(format="json")[1])
            Image3Pipeline.call(str(path), output_dir=str(out / "stage3"), save_results=True)


    if __name__ == "__main__":  # jump and ramp_fit spawn processes that import this script again
        main()
    """
)


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
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
        ratios = []
        for n in range(args.rounds):
            plain_dir, appliance_dir = scratch / f"plain{n}", scratch / f"appliance{n}"
            plain = timed([sys.executable, str(script), str(scratch / "data"), str(plain_dir), core_share(None, 1)], env)
            ours = timed([sys.executable, str(ROOT / "run.py"), "run", str(recipe), "--workdir", str(appliance_dir),
                          "--executor", "serial"], env)
            ratios.append(ours / plain)
            print(f"round {n + 1}: plain jwst {plain:6.1f} s   run.py {ours:6.1f} s   ratio {ours / plain:.3f}")
            shutil.rmtree(plain_dir)
            shutil.rmtree(appliance_dir)
        print(f"median overhead ratio (run.py / plain jwst) over {args.rounds} rounds: "
              f"{statistics.median(ratios):.3f}   (goal ≤ 1.03)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
