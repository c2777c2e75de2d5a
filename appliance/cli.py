"""Command-line interface: argument parsing and exit codes only.

Exit codes: 0 success; 1 the work ran but failed or differed; 2 the request was
wrong.  Errors print one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import os
import sys
from pathlib import Path

from appliance import __version__
from appliance.errors import UserError, WorkFailed, short_reason
from appliance.safety import printable
from appliance.workdir import LOGS_DIR

# Modules that add their own sub-command with ``add_parser(subparsers)``; each keeps
# its imports light so building the parser stays fast.
PLUGGED_COMMANDS = ("appliance.container", "appliance.compare", "appliance.reproduce", "appliance.export")


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is a UserError (exit 2, one line) like any bad request."""

    def error(self, message):
        raise UserError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="run.py", description="Reproducible JWST imaging reductions from TOML recipes.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("run", help="reduce a recipe into a workdir and write its manifest")
    p.add_argument("recipe", type=Path)
    p.add_argument("--workdir", type=Path, default=None, help="default: work/<recipe name>")
    p.add_argument("--allow-env-mismatch", action="store_true",
                   help="run even if the installed jwst/CRDS context differ from the recipe's (recorded)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", help="validate a recipe and print its plan without running it")
    p.add_argument("recipe", type=Path)
    p.add_argument("--workdir", type=Path, default=None,
                   help="where the run would go (its free disk is checked; default work/<recipe name>)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("fetch", help="download the recipe's inputs and CRDS references, so `run` can follow offline")
    p.add_argument("recipe", type=Path)
    p.add_argument("--workdir", type=Path, default=None, help="default: work/<recipe name>")
    p.add_argument("--allow-env-mismatch", action="store_true")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("verify", help="re-hash every input and product of a manifest")
    p.add_argument("manifest", type=Path, help="manifest.json or the workdir holding it")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("simulate", help="write the simulated MIRI observation (and its CRDS cache)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--filters", nargs="+", default=None)
    p.add_argument("--dithers", type=int, default=None)
    p.add_argument("--subarray", default=None)
    p.add_argument("--crds-cache", type=Path, default=None, help="also write the synthetic CRDS cache here")
    p.set_defaults(func=cmd_simulate)

    for name in PLUGGED_COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


APPLIANCE_ROOT = Path(__file__).resolve().parents[1]


def recipe_path(path: Path) -> Path:
    """A relative recipe path not found here is looked up in the appliance's own tree,
    so ``docker run IMAGE recipes/demo.toml`` finds the recipes shipped in the image."""
    if not path.is_absolute() and not path.exists() and (APPLIANCE_ROOT / path).exists():
        return APPLIANCE_ROOT / path
    return path


def default_workdir(args) -> Path:
    """``--workdir``, else ``<root>/<recipe name>`` with root ``$APPLIANCE_WORKDIR_ROOT`` (``/work`` in the image) or ``work``."""
    return args.workdir or Path(os.environ.get("APPLIANCE_WORKDIR_ROOT", "work")) / args.recipe.stem


def cmd_run(args) -> int:
    from appliance import reduction

    path = reduction.run(recipe_path(args.recipe), default_workdir(args), allow_env_mismatch=args.allow_env_mismatch)
    print(f"manifest: {path}")
    return 0


def cmd_fetch(args) -> int:
    from appliance import fetch

    report = fetch.fetch(recipe_path(args.recipe), default_workdir(args), allow_env_mismatch=args.allow_env_mismatch)
    print(report)
    return 0


def cmd_check(args) -> int:
    from appliance import session

    prepared, plan, cost = session.check(recipe_path(args.recipe), default_workdir(args))
    recipe = prepared.recipe
    if args.json:
        print(json.dumps({"recipe": recipe.name, "crds": prepared.settings.as_dict(),
                          "plan": plan.as_dict() if plan else None,
                          "estimate": None if cost is None else {"memory_bytes": round(cost.memory),
                                                                 "memory_task": cost.memory_task,
                                                                 "disk_bytes": round(cost.disk)}},
                         indent=2, default=str))
        return 0
    _say(f"recipe   {recipe.name}  ({recipe.path})")
    _say(f"jwst     {recipe.environment.jwst}   CRDS context {recipe.environment.crds_context}"
          f"   step-parameter references {'on' if recipe.environment.use_step_pars else 'off'}")
    for mismatch in prepared.mismatches:
        _say(f"warning  environment differs: {mismatch}")
    _say(f"inputs   {recipe.input_kind}")
    if plan is None:
        _say("plan     exposures are resolved by the MAST query at fetch time; stages: "
              + ", ".join(s for s in ("detector1", "image2", "image3") if not recipe.stages[s].skip))
        _print_steps(recipe, [s for s in ("detector1", "image2", "image3") if not recipe.stages[s].skip])
        return 0
    _say(f"stages   {' → '.join(plan.stages)}")
    _say(f"exposures ({len(plan.exposures)}):")
    for e in plan.exposures:
        _say(f"  {e.filter:<7} {e.name}_{e.kind}.fits")
    _print_steps(recipe, plan.stages)
    _say(f"estimate {cost.describe()}")
    _say(f"tasks ({len(plan.tasks)}):")
    for t in plan.tasks:
        _say(f"  {t.id:<48} {' '.join(t.inputs)[:60]} → {' '.join(t.outputs)}")
    for op in recipe.postprocess:
        _say(f"postprocess  {op.op} {dict(op.params)}")
    return 0


def _print_steps(recipe, stages) -> None:
    for stage in stages:
        steps = recipe.stages[stage].steps
        overrides = ", ".join(f"{s}.{k}={v!r}" for s, p in steps.items() for k, v in p.items()) or "jwst defaults"
        _say(f"  {stage:<9} {overrides}")


def _say(text: str) -> None:
    """Print a line that quotes the recipe: its control characters escaped."""
    print(printable(text))


def cmd_verify(args) -> int:
    from appliance.manifest import verify

    problems = verify(args.manifest)
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("all inputs and products match the manifest")
    return 0


def cmd_simulate(args) -> int:
    from dataclasses import replace

    from appliance.simulate import SimParams, build_crds_cache, simulate_observation

    given = {"seed": args.seed, "filters": tuple(args.filters) if args.filters else None,
             "dithers": args.dithers, "subarray": args.subarray}
    params = replace(SimParams(), **{k: v for k, v in given.items() if v is not None})
    for flag, path in (("--out", args.out), ("--crds-cache", args.crds_cache)):
        if path is not None and path.exists() and not path.is_dir():
            raise UserError(f"{printable(path)}: {flag}: expected a directory, found a file")
    from appliance.resources import refuse_beyond, simulation
    from appliance.simulate import validate
    from appliance.simulate.detector import SUBARRAYS

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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].endswith(".toml"):
        argv.insert(0, "run")  # `run.py RECIPE.toml` is short for `run.py run RECIPE.toml`
    args = None
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (UserError, WorkFailed) as exc:
        return fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except BrokenPipeError:  # `run.py check R | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # the machine, not the request: a full disk, a vanished directory
        where = f"{exc.filename}: " if exc.filename else ""
        return fail(f"{where}{exc.strerror or exc}" + (" (the disk is full)" if exc.errno == errno.ENOSPC else ""), 1)
    except Exception:  # noqa: BLE001 - a bug: one line here, the traceback in a log
        exc = sys.exc_info()[1]
        return fail(f"internal error ({type(exc).__name__}: {short_reason(exc, 200)}); "
                    f"the traceback is in {write_traceback(args)}", 1)


def fail(message: str, code: int) -> int:
    """One line on stderr, control characters escaped (the message may quote a recipe or a manifest)."""
    print(f"error: {printable(message)}", file=sys.stderr)
    return code



def write_traceback(args) -> str:
    """Write the current exception's traceback to the workdir's logs (else the temporary directory)."""
    import tempfile
    import traceback
    from datetime import datetime, timezone

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    workdir = getattr(args, "workdir", None)
    logs = Path(workdir) / LOGS_DIR if workdir is not None and Path(workdir).is_dir() else None
    try:
        if logs is not None:
            logs.mkdir(exist_ok=True)
            path = logs / f"internal-error-{stamp}-{os.getpid()}.log"
            path.write_text(traceback.format_exc(), encoding="utf-8")
            return str(path)
    except OSError:
        pass
    fd, name = tempfile.mkstemp(prefix=f"jwst-appliance-error-{stamp}-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(traceback.format_exc())
    return name
