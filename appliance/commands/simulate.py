"""``run.py simulate --out DIR``: the simulated MIRI observation alone (and, with --crds-cache, its CRDS cache)."""

from __future__ import annotations

from pathlib import Path

from appliance.errors import UserError
from appliance.safety import printable


def add_parser(sub) -> None:
    p = sub.add_parser("simulate", help="write the simulated MIRI observation (and its CRDS cache)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--filters", nargs="+", default=None)
    p.add_argument("--dithers", type=int, default=None)
    p.add_argument("--subarray", default=None)
    p.add_argument("--crds-cache", type=Path, default=None, help="also write the synthetic CRDS cache here")
    p.set_defaults(func=cmd_simulate)


def cmd_simulate(args) -> int:
    from dataclasses import replace

    from appliance.resources import refuse_beyond, simulation
    from appliance.simulate import SimParams, build_crds_cache, simulate_observation, validate
    from appliance.simulate.detector import SUBARRAYS

    given = {"seed": args.seed, "filters": tuple(args.filters) if args.filters else None,
             "dithers": args.dithers, "subarray": args.subarray}
    params = replace(SimParams(), **{k: v for k, v in given.items() if v is not None})
    for flag, path in (("--out", args.out), ("--crds-cache", args.crds_cache)):
        if path is not None and path.exists() and not path.is_dir():
            raise UserError(f"{printable(path)}: {flag}: expected a directory, found a file")
    validate(params)
    window = SUBARRAYS[params.subarray]
    refuse_beyond(simulation(params.ngroups, params.nints, window.xsize * window.ysize,
                             len(params.filters) * params.dithers), args.out, "simulate")
    observation = simulate_observation(args.out, params)
    print(f"{len(observation.uncal_files)} uncal files and {observation.truth.name} in {args.out}")
    if args.crds_cache:
        build_crds_cache(args.crds_cache)
        print(f"synthetic CRDS cache in {args.crds_cache}")
    return 0
