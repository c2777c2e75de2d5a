"""``run.py export RECIPE --out DIR``: the recipe's reduction as plain jwst commands.

For the recipe's resolved plan it writes, into ``DIR``:

* ``params/calwebb_<stage>.asdf`` -- one stpipe parameter file per stage, in
  the ASDF format ``strun`` and ``Pipeline.call(config_file=...)`` read, made
  with stpipe's own ``StepConfig`` writer.  It holds only what the recipe
  sets, so everything else keeps jwst's default or the CRDS ``pars-*`` value,
  in stpipe's own order of precedence, exactly as in the appliance's
  ``Pipeline.call(input, steps=...)``;
* ``asn/`` -- the level-2 association of each exposure and the level-3
  association of each filter, made with ``jwst.associations`` as the
  appliance makes them;
* ``reduce.sh`` -- a POSIX shell script of plain ``strun`` commands that
  reproduces the reduction with jwst alone, in the appliance's workdir
  layout (``uncal/``, ``stage1/``, ``stage2/``, ``stage3/``, ``logs/``): it
  sets the CRDS environment of the recipe, copies the inputs in, and runs each
  stage where its input is (calwebb_image2 opens association members relative
  to the working directory).

Post-processing operations (``[[postprocess]]``) are the appliance's own and
are not exported; the script says so.  The export is written into a temporary
directory beside ``DIR`` and renamed into place when complete.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from appliance import crdsenv
from appliance.errors import UserError
from appliance.files import publishing_directory
from appliance.parameters import changed_parameters
from appliance.parameters import save as save_effective
from appliance.parameters import write_parameter_file as write_parameters
from appliance.pipelines import STAGES
from appliance.safety import printable
from appliance.session import prepare
from appliance.sources import planned_exposures
from appliance.workdir import (
    INPUT_DIR_OF_KIND,
    LOGS_DIR,
    association_name,
    check_new_directory,
    check_workdir,
)

SCRIPT_NAME = "reduce.sh"
PARAMS_DIR = "params"
ASN_DIR = "asn"


class Exported:
    """What an export wrote (for the CLI's summary and for tests)."""

    def __init__(self, out: Path, script: Path, params: list[Path], associations: list[Path],
                 commands: int, skipped_postprocess: list[str], input_hint: str):
        self.out, self.script, self.params, self.associations = out, script, params, associations
        self.commands, self.skipped_postprocess, self.input_hint = commands, skipped_postprocess, input_hint

    def summary(self) -> str:
        lines = [f"exported {self.commands} strun command(s) to {self.script}",
                 f"parameters   {', '.join(p.name for p in self.params) or 'none'} in {self.out / PARAMS_DIR}",
                 f"associations {len(self.associations)} in {self.out / ASN_DIR}",
                 f"run          {self.script} INPUT_DIR [WORKDIR]    ({self.input_hint})"]
        if self.skipped_postprocess:
            lines.append(f"warning      not exported (appliance post-processing): {_grouped(self.skipped_postprocess)}")
        return "\n".join(lines)


def _grouped(task_ids: list[str]) -> str:
    """``postprocess:background:F770W``... as ``background (3 tasks), report``."""
    counts: dict[str, int] = {}
    for task_id in task_ids:
        parts = task_id.split(":")
        op = parts[1] if len(parts) > 1 and parts[0] == "postprocess" else parts[0]
        counts[op] = counts.get(op, 0) + 1
    return ", ".join(op if n == 1 else f"{op} ({n} tasks)" for op, n in counts.items())


# --------------------------------------------------------------------------- the export


def export(recipe_path: Path, out: Path, *, inputs_dir: Path | None = None, force: bool = False,
           allow_env_mismatch: bool = False, effective_from: Path | None = None) -> Exported:
    """Write the parameter files, associations and ``reduce.sh`` for the recipe into ``out``; with
    ``effective_from`` (a workdir where the recipe ran), the parameter files hold the effective parameters
    its stage tasks recorded."""
    from appliance.plan import build_plan

    out = Path(out)
    _check_out(out, force)
    if inputs_dir is not None and not Path(inputs_dir).is_dir():
        raise UserError(f"{inputs_dir}: --inputs: no such directory")
    prepared = prepare(Path(recipe_path), out.absolute(), allow_env_mismatch=allow_env_mismatch)
    recipe = prepared.recipe
    exposures, local_files = resolve_exposures(recipe, inputs_dir)
    plan = build_plan(recipe, exposures)
    stage_tasks = [t for t in plan.tasks if t.kind in STAGES]
    skipped = [t.id for t in plan.tasks if t.kind not in STAGES]
    effective = recorded_effective_parameters(Path(effective_from), stage_tasks, recipe) if effective_from else {}

    with publishing_directory(out, "export") as tmp:
        with crdsenv.applied(prepared.settings):  # jwst writes and reads back the parameter files
            params = [write_effective_file(stage, *effective[stage], tmp / PARAMS_DIR) if stage in effective
                      else write_parameter_file(recipe, stage, tmp / PARAMS_DIR) for stage in plan.stages]
            associations = write_associations(stage_tasks, tmp / ASN_DIR)
        script_text = render_script(recipe, prepared.settings, plan, stage_tasks, local_files, skipped)
        script = tmp / SCRIPT_NAME
        script.write_text(script_text, encoding="utf-8")
        script.chmod(0o755)
    rebase = lambda p: out / p.relative_to(tmp)  # noqa: E731
    return Exported(out, out / SCRIPT_NAME, [rebase(p) for p in params], [rebase(p) for p in associations],
                    len(stage_tasks), skipped, _input_hint(recipe))


def _check_out(out: Path, force: bool) -> None:
    if force and out.is_dir() and any(out.iterdir()):
        if not (out / SCRIPT_NAME).is_file():
            raise UserError(f"{printable(out)}: --out: not an earlier export (no {SCRIPT_NAME}); refusing to replace it")
        check_workdir(out, "--out")
    else:
        check_new_directory(out, "--out", "pass --force to replace it")


def resolve_exposures(recipe, inputs_dir: Path | None):
    """The plan's exposures, and the local input files (for their pinned checksums) when the recipe has them."""
    from appliance.plan import exposure_from_header
    from appliance.recipe import resolve_local_inputs

    if inputs_dir is not None:
        kinds = tuple(f"_{k}.fits" for k in INPUT_DIR_OF_KIND)
        files = sorted(p for p in Path(inputs_dir).iterdir() if p.name.endswith(kinds))
        if recipe.input_kind == "mast":
            files = [p for p in files if p.name.endswith(f"_{recipe.mast.product}.fits")]
            if recipe.mast.files:
                files = [p for p in files if p.name in set(recipe.mast.files)]
        if not files:
            raise UserError(f"{inputs_dir}: --inputs: no *_uncal.fits, *_rate.fits or *_cal.fits exposures there")
        return [exposure_from_header(p) for p in files], []
    if recipe.input_kind == "local":
        files = resolve_local_inputs(recipe)
        return [exposure_from_header(f.path) for f in files], files
    if recipe.input_kind == "simulate":
        return planned_exposures(recipe), []
    raise UserError(f"{recipe.path}: inputs.mast: the exposures of a MAST recipe are known once fetched; run "
                    f"`python run.py fetch {recipe.path} --workdir W` and pass --inputs W/"
                    f"{INPUT_DIR_OF_KIND[recipe.mast.product]}")


def write_parameter_file(recipe, stage: str, directory: Path) -> Path:
    """``calwebb_<stage>.asdf``: the pipeline class and the recipe's step parameters, nothing else,
    read back and checked to carry every one of them."""
    from appliance.recipe import step_parameters

    steps = {name: params for name, params in step_parameters(recipe, stage).items() if params}
    return write_parameters(STAGES[stage].pipeline_class(), {}, steps, directory / f"{STAGES[stage].alias}.asdf",
                            check=True)


def recorded_effective_parameters(workdir: Path, stage_tasks, recipe) -> dict[str, tuple]:
    """Stage -> (its pipeline with jwst's defaults, the effective parameters its tasks recorded in
    ``workdir``); one line if a task has no record (the recipe did not run there) or the tasks of one
    stage ran with different parameters."""
    from appliance import records

    by_stage: dict[str, tuple[str, dict]] = {}
    defaults = {}  # stage -> its pipeline with jwst's defaults
    for task in stage_tasks:
        record = records.load(workdir, task.id)
        if not record or not isinstance(record.get("effective_parameters"), dict):
            raise UserError(f"{printable(workdir)}: --effective-from: no record of {task.id} with its effective "
                            "parameters; run the recipe there first")
        if task.kind not in defaults:
            defaults[task.kind] = STAGES[task.kind].pipeline_class()()
        _refuse_what_runs_code_or_names_places(workdir, task.id, task.kind, defaults[task.kind],
                                               record["effective_parameters"], recipe)
        first = by_stage.setdefault(task.kind, (task.id, record["effective_parameters"]))
        if first[1] != record["effective_parameters"]:
            changed = changed_parameters(first[1], record["effective_parameters"])[0][0]
            raise UserError(f"{printable(workdir)}: --effective-from: {first[0]} and {task.id} ran with different "
                            f"parameters ({printable(changed)}); one parameter file per stage cannot hold both")
    return {stage: (defaults[stage], params) for stage, (_, params) in by_stage.items()}


def _refuse_what_runs_code_or_names_places(workdir: Path, task_id: str, stage: str, pipeline, effective: dict,
                                           recipe) -> None:
    """A record is untrusted input: whatever it carries reaches the exported parameter files and the
    script's strun (docs/security.md).  Every parameter must be one of the step's spec, and a value that is
    not the pipeline's own default must pass the recipe policy (no refused parameter, plain name parts,
    files read only from the recipe's directory or the workdir)."""
    from appliance.parameters import plain
    from appliance.recipe import policy_problem

    def refuse(what: str) -> UserError:
        return UserError(f"{printable(workdir)}: --effective-from: {task_id} records {what}; refusing to export it")

    steps = effective.get("steps", {})
    if not isinstance(effective.get("pipeline", {}), dict) or not isinstance(steps, dict):
        raise refuse("parameters that are not tables of parameters")
    scopes = {"pipeline": (pipeline, effective.get("pipeline", {}))}
    scopes.update({name: (getattr(pipeline, name, None) if name in pipeline.step_defs else None, params)
                   for name, params in steps.items()})
    for scope, (step, params) in scopes.items():
        if step is None or not isinstance(params, dict):
            raise refuse(f"{printable(scope)}, which is no step of {STAGES[stage].alias}")
        spec = type(step).load_spec_file()
        for name, value in params.items():
            if name not in spec or name == "steps":
                raise refuse(f"{printable(scope)}.{printable(name)}, which is no parameter of it")
            if value == plain(getattr(step, name, None)):
                continue  # the pipeline's own default
            why = policy_problem(recipe, name, value, workdir)
            if why:
                raise refuse(f"{printable(scope)}.{printable(name)} = {printable(repr(value))[:80]} ({why})")


def write_effective_file(stage: str, pipeline, effective: dict, directory: Path) -> Path:
    """``calwebb_<stage>.asdf`` holding every step's effective parameters (``pipeline``: the stage's, for its
    step classes)."""
    return save_effective(pipeline, effective, directory / f"{STAGES[stage].alias}.asdf")


def write_associations(tasks, directory: Path) -> list[Path]:
    """The level-2 and level-3 associations of the plan, as the appliance writes them."""
    from appliance.associations import write_level2, write_level3

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for task in tasks:
        if task.kind == "image2":
            written.append(write_level2(directory / Path(task.inputs[0]).name, task.params["product_name"]))
        elif task.kind == "image3":
            written.append(write_level3([directory / Path(p).name for p in task.inputs], task.params["product_name"]))
    return written


# --------------------------------------------------------------------------- the script


def _input_hint(recipe) -> str:
    if recipe.input_kind == "simulate":
        return "INPUT_DIR: the simulated uncal files; CRDS_PATH: the synthetic CRDS cache"
    if recipe.input_kind == "local":
        return "INPUT_DIR: the directory holding the recipe's local input files"
    return f"INPUT_DIR: the fetched _{recipe.mast.product}.fits files"


def _simulate_command(recipe) -> str:
    sim = dict(recipe.simulate)
    args = ["python", "run.py", "simulate", "--out", "INPUT_DIR", "--crds-cache", "CRDS_CACHE"]
    supported = {"seed": "--seed", "dithers": "--dithers", "subarray": "--subarray"}
    for key, flag in supported.items():
        if key in sim:
            args += [flag, str(sim[key])]
    if "filters" in sim:
        args += ["--filters", *map(str, sim["filters"])]
    other = sorted(set(sim) - set(supported) - {"filters"})
    text = " ".join(args)
    if other:
        text += f"   (this recipe also sets {', '.join(other)}: `run.py run` writes its WORKDIR/uncal)"
    return text


def render_script(recipe, settings, plan, tasks, local_files, skipped) -> str:
    """The POSIX shell script of strun commands."""
    from importlib.metadata import version

    from appliance import __version__
    from appliance.crdsenv import DEFAULT_CACHE, DEFAULT_SERVER_URL, OFFLINE_SERVER_URL

    q = shlex.quote
    exposures = list(plan.exposures)
    lines = [
        "#!/bin/sh",
        f"# {SCRIPT_NAME}: the reduction of recipe {printable(repr(recipe.name))} with plain jwst (strun), "
        "no appliance needed.",
        f"# Exported by jwst-reduction-appliance {__version__} from {printable(recipe.path)}",
        f"#   recipe sha256 {recipe.sha256}",
        f"#   for jwst {printable(recipe.environment.jwst)} (parameter files written with jwst {version('jwst')}), "
        f"CRDS context {printable(recipe.environment.crds_context)}",
        "#",
        "# Usage: ./reduce.sh INPUT_DIR [WORKDIR]",
        f"#   INPUT_DIR  the {len(exposures)} input exposure(s) listed below",
        "#   WORKDIR    where the products go (default ./work), in the appliance's layout:",
        "#              uncal/ (or stage1/, stage2/ for rate/cal inputs), stage1/, stage2/, stage3/, logs/",
        "# Environment: STRUN (default strun), CRDS_PATH"
        + (" (required: the synthetic CRDS cache)" if recipe.input_kind == "simulate" else
           ", CRDS_MODE, CRDS_SERVER_URL (defaults below)"),
    ]
    if recipe.input_kind == "simulate":
        lines += ["#", "# The simulated inputs and the synthetic CRDS cache come from the appliance's simulator:",
                  f"#   {printable(_simulate_command(recipe))}"]
    if skipped:
        lines += ["#", "# Not exported (the appliance's own post-processing, not jwst): " + printable(_grouped(skipped))]
    lines += [
        "",
        "set -eu",
        'HERE=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)',
        'if [ $# -lt 1 ] || [ $# -gt 2 ]; then echo "usage: $0 INPUT_DIR [WORKDIR]" >&2; exit 2; fi',
        'if [ ! -d "$1" ]; then echo "error: $1: no such input directory" >&2; exit 2; fi',
        'INPUT_DIR=$(CDPATH= cd -- "$1" && pwd)',
        'mkdir -p -- "${2:-work}"',
        'WORKDIR=$(CDPATH= cd -- "${2:-work}" && pwd)',
        'STRUN=${STRUN:-strun}',
        'command -v "$STRUN" >/dev/null 2>&1 || { echo "error: $STRUN not found (install jwst, or set STRUN)" >&2; exit 2; }',
        "",
        "# CRDS: the recipe's context, pinned (never the server's latest).",
        f"export CRDS_CONTEXT={q(settings.context)}",
        "export CRDS_OBSERVATORY=jwst",
    ]
    if recipe.input_kind == "simulate":
        lines += [
            ': "${CRDS_PATH:?set CRDS_PATH to the synthetic CRDS cache (python run.py simulate ... --crds-cache DIR)}"',
            f'if [ ! -f "$CRDS_PATH/mappings/jwst/{settings.context}" ]; then',
            f'  echo "error: $CRDS_PATH does not hold {settings.context} (python run.py simulate --out X --crds-cache DIR)" >&2; exit 2',
            "fi",
            "export CRDS_PATH",
            "export CRDS_MODE=local",
            f"export CRDS_SERVER_URL={q(OFFLINE_SERVER_URL)}",
        ]
    else:
        lines += [
            f'export CRDS_PATH="${{CRDS_PATH:-$HOME/{DEFAULT_CACHE.name}}}"',  # crdsenv's defaults, in the shell
            'export CRDS_MODE="${CRDS_MODE:-auto}"',
            f'export CRDS_SERVER_URL="${{CRDS_SERVER_URL:-{DEFAULT_SERVER_URL}}}"',
        ]
    if settings.use_step_pars:
        lines.append("unset STPIPE_DISABLE_CRDS_STEPPARS  # CRDS pars-* step parameters apply, as in the recipe")
    else:
        lines.append("export STPIPE_DISABLE_CRDS_STEPPARS=True  # the recipe turns pars-* step parameters off")
    dirs = sorted({STAGES[s].output_dir for s in plan.stages} | {e.path.split("/")[0] for e in exposures} | {LOGS_DIR})
    lines += [
        "",
        'mkdir -p ' + " ".join(f'"$WORKDIR"/{q(d)}' for d in dirs),
        "",
        "N=0",
        f"TOTAL={len(tasks)}",
        "run() {  # run TASK_ID DIRECTORY STRUN-ARGS...: run one strun in DIRECTORY, its log in logs/",
        '  N=$((N + 1)); task=$1; dir=$2; shift 2',
        f'  log="$WORKDIR"/{q(LOGS_DIR)}/"$(printf %s "$task" | tr : _).log"',  # as workdir.log_path names them
        '  printf "[%d/%d] %s\\n" "$N" "$TOTAL" "$task"',
        '  if ! (cd "$dir" && "$STRUN" "$@") >"$log" 2>&1; then',
        '    tail -n 20 "$log" >&2',
        '    echo "error: $task failed (log: $log)" >&2',
        "    exit 1",
        "  fi",
        "}",
        "",
        "# The inputs, copied into the workdir as the appliance does.",
    ]
    pins = {f.path.name: f.sha256 for f in local_files if f.sha256}
    for e in exposures:
        name = q(Path(e.path).name)
        lines.append(f'[ -f "$INPUT_DIR"/{name} ] || {{ printf "error: %s/%s: missing input\\n" "$INPUT_DIR" {name} >&2; exit 2; }}')
    for e in exposures:
        name = Path(e.path).name
        lines.append(f'cp -- "$INPUT_DIR"/{q(name)} "$WORKDIR"/{q(e.path)}')
        if name in pins:
            lines.append(f'printf "%s  %s\\n" {q(pins[name])} "$WORKDIR"/{q(e.path)} | sha256sum -c --quiet - '
                         f'|| {{ printf "error: %s: not the file the recipe pins\\n" {q(name)} >&2; exit 2; }}')
    current_stage = None
    for task in tasks:
        alias = STAGES[task.kind].alias
        params = f'"$HERE"/{q(f"{PARAMS_DIR}/{alias}.asdf")}'
        out_dir = f'"$WORKDIR"/{q(STAGES[task.kind].output_dir)}'
        if task.kind != current_stage:
            current_stage = task.kind
            lines += ["", {
                "detector1": "# calwebb_detector1, one exposure at a time, run where the exposure is.",
                "image2": "# calwebb_image2 on each exposure's association, run in the association's directory\n"
                          "# (jwst 3.0 opens level-2 members relative to the working directory).",
                "image3": "# calwebb_image3 on each filter's association, run in the association's directory.",
            }[task.kind]]
        if task.kind == "detector1":
            source = task.inputs[0]
        else:
            asn = association_name(task.params["product_name"], task.kind)
            source = f"{Path(task.inputs[0]).parent.as_posix()}/{asn}"
            lines.append(f'cp -- "$HERE"/{q(f"{ASN_DIR}/{asn}")} "$WORKDIR"/{q(source)}')
        where = f'"$WORKDIR"/{q(Path(source).parent.as_posix())}'
        lines.append(f'run {q(task.id)} {where} {params} "$WORKDIR"/{q(source)} --output_dir {out_dir}')
    lines += ["", 'echo "done: products in $WORKDIR"', ""]
    return "\n".join(lines)
