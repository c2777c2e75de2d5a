"""``run.py reproduce MANIFEST --workdir DIR``: rebuild a recorded run from its manifest alone.

1. The manifest is loaded with :func:`appliance.manifest.load_manifest`: an
   unknown ``manifest_version`` or a recipe text that does not hash to its
   recorded sha256 (tampering) is refused with one line.
2. The recorded environment is compared with this one (Python, every package
   version, the container image).  A difference is refused -- or, with
   ``--allow-env-mismatch``, printed loudly as a warning and the run goes on,
   no longer a faithful reproduction.  With ``--docker`` the run happens in the
   recorded image, found by its id, instead.
3. The inputs are rebuilt from their recorded origins and checked against the
   recorded sha256 before anything is reduced: ``simulate:{...}`` is
   re-simulated (the simulator is deterministic), ``file:///...`` is copied
   again, ``mast:JWST/product/<name>`` (or ``s3://stpubdata/…/<name>``) is downloaded again.  All of this
   happens in a staging directory that is renamed to ``DIR`` only when
   complete; a failure leaves nothing behind.
4. The recipe text is written, byte for byte, to ``DIR/recipe/<name>.toml``.
   Local inputs are placed where the recipe's own ``inputs.local`` entries
   (relative to the recipe's directory) find them, so the text is never
   rewritten; absolute entries are used in place.
5. The recipe is run into ``DIR`` (``appliance.reduction.run``), and the new
   manifest is compared with the recorded one: exit 0 only when every content
   digest matches -- or, with ``--tolerance``, when every difference is within
   tolerance (which needs the recorded products beside the recorded manifest).
"""

from __future__ import annotations

import fnmatch
import os
import platform
import posixpath
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from appliance import crdsenv, reduction, sources
from appliance.errors import UserError, WorkFailed
from appliance.files import publishing_directory
from appliance.manifest import EnvironmentRecord, ImageRecord, InputRecord, Manifest, load_manifest, manifest_path
from appliance.parameters import task_parameter_changes
from appliance.prefetch import needs_prefetch, prefetch_references, recipe_reftypes
from appliance.safety import is_name, printable
from appliance.session import choose_settings, prepare, priced
from appliance.sources.local import origin_path
from appliance.workdir import MANIFEST_NAME, RECIPE_DIR, check_new_directory



# --------------------------------------------------------------------------- steps


def say(text: str) -> None:
    """Progress on stdout; stderr is kept for warnings and the one-line error."""
    print(printable(text), flush=True)


def warn(text: str) -> None:
    print(printable(text), file=sys.stderr, flush=True)


def reproduce(manifest_arg, workdir, *, tolerance: bool = False, tolerances=None, allow_env_mismatch: bool = False,
              docker: bool = False, fetch_references: bool = True):
    """Rebuild the run a manifest describes into ``workdir``; returns the :class:`~appliance.compare.Comparison`."""
    from appliance import compare
    from appliance.recipe import parse_recipe

    recorded_path = manifest_path(manifest_arg)
    recorded = load_manifest(recorded_path)
    workdir = Path(workdir)
    _check_workdir(workdir, recorded_path)
    recipe_name = PurePosixPath(recorded.recipe_path or "recipe.toml").name
    if not recipe_name.endswith(".toml"):
        recipe_name += ".toml"
    if not is_name(recipe_name):  # it becomes a file name in the reproduction
        recipe_name = "recipe.toml"
    # structure only (no jwst): where the recipe will live decides where local inputs go
    draft = parse_recipe(recorded.recipe_text, workdir.absolute() / RECIPE_DIR / recipe_name)
    say(f"recipe   {recipe_name} from {recorded_path} (sha256 {recorded.recipe_sha256[:16]}… matches its text)")

    if tolerance:
        _check_recorded_products(recorded, recorded_path)
    image = None
    if docker:
        image = _recorded_image(recorded.environment.image)
    else:
        _check_environment(recorded.environment, allow_env_mismatch)

    if draft.input_kind == "simulate":  # what the simulator would write is known now: price it before making it
        from appliance.plan import build_plan

        priced(draft, build_plan(draft, sources.planned_exposures(draft)), workdir)
    layout = plan_inputs(draft, recorded.inputs)
    with publishing_directory(workdir, "reproduce") as stage:  # the workdir was checked empty above
        recipe_path = stage / layout.recipe_rel
        recipe_path.parent.mkdir(parents=True, exist_ok=True)
        recipe_path.write_bytes(recorded.recipe_text.encode("utf-8"))
        placed = restore_inputs(draft, recorded.inputs, stage, layout)
    recipe_path = workdir.absolute() / layout.recipe_rel
    say(f"inputs   {len(recorded.inputs)} rebuilt from their origins; every sha256 matches the manifest")

    if docker:
        new_manifest = _run_in_image(image, recipe_path, workdir)
    else:
        datasets = [Path(p) if os.path.isabs(p) else workdir.absolute() / p for p in placed]
        # A run recorded with --allow-env-mismatch (its recipe names another jwst or context than the one it ran
        # with) is reproduced with the same allowance: the environment itself was checked against the record above.
        allow = allow_env_mismatch or bool(recorded.environment.env_mismatches)
        new_manifest = _run_here(recipe_path, workdir, draft, allow, fetch_references, datasets)
    changes = task_parameter_changes(recorded.tasks, load_manifest(new_manifest).tasks)
    for line in changes[:20]:
        warn(printable(f"effective parameter changed: {line}"))
    if len(changes) > 20:
        warn(f"... and {len(changes) - 20} more effective parameter changes")
    return compare.compare(recorded_path, new_manifest, tolerances=tolerances, digests_only=not tolerance)


def _check_workdir(workdir: Path, recorded_path: Path) -> None:
    if workdir.absolute() == recorded_path.absolute().parent:
        raise UserError(f"{printable(workdir)}: --workdir: that is the recorded run's own directory")
    check_new_directory(workdir, "--workdir", "reproduce into a new one")


def _check_recorded_products(recorded: Manifest, recorded_path: Path) -> None:
    """--tolerance compares files: the recorded FITS and catalog products must be beside the manifest."""
    from appliance.compare.diffs import tolerance_kind

    root = recorded_path.parent
    for product in recorded.products:
        if tolerance_kind(product.path) and not (root / product.path).is_file():
            raise UserError(f"{root / product.path}: missing; --tolerance compares the recorded products, so "
                            f"they must be beside {recorded_path.name} (or reproduce without --tolerance)")


# --------------------------------------------------------------------------- environment


def environment_differences(recorded_env: EnvironmentRecord, current_packages: dict | None = None,
                            python_version: str | None = None, image_id: str | None = None) -> tuple[list[str], list[str]]:
    """(blocking differences, warnings) between a recorded environment and this one."""
    from appliance.manifest import installed_distributions

    packages = installed_distributions() if current_packages is None else current_packages
    python_version = python_version or platform.python_version()
    image_id = image_id if image_id is not None else os.environ.get("APPLIANCE_IMAGE_ID")
    blocking, warnings = [], []
    rec_py = recorded_env.python_version
    if rec_py and rec_py != python_version:
        blocking.append(f"Python {rec_py} recorded, {python_version} here")
    recorded_pkgs = recorded_env.packages
    for name in sorted(recorded_pkgs):
        here = packages.get(name)
        if here is None:
            blocking.append(f"{name} {recorded_pkgs[name]} recorded, not installed here")
        elif here != recorded_pkgs[name]:
            blocking.append(f"{name} {recorded_pkgs[name]} recorded, {here} here")
    extra = sorted(set(packages) - set(recorded_pkgs))
    if extra and recorded_pkgs:
        warnings.append(f"installed here but not in the recorded run: {', '.join(extra[:8])}"
                        + (f" (and {len(extra) - 8} more)" if len(extra) > 8 else ""))
    rec_image = recorded_env.image
    if rec_image is not None and rec_image.id and rec_image.id != image_id:
        blocking.insert(0, f"the run was recorded in container image {rec_image.id[:19]}, this is "
                           + (f"image {image_id[:19]}" if image_id else "not that image")
                           + " (use --docker to run in it)")
    return blocking, warnings


def _check_environment(env: EnvironmentRecord, allow: bool) -> None:
    blocking, warnings = environment_differences(env)
    for line in warnings:
        warn(f"warning  {line}")
    if not blocking:
        say(f"environment matches the recorded run (jwst {env.jwst}, {len(env.packages)} packages, "
            f"Python {env.python_version})")
        return
    if not allow:
        more = f" (and {len(blocking) - 1} more)" if len(blocking) > 1 else ""
        raise UserError(f"environment differs from the recorded run: {blocking[0]}{more}; reproduce where it was "
                        f"recorded, or pass --allow-env-mismatch to run anyway")
    bar = "!" * 78
    warn(bar)
    warn(f"WARNING: this environment differs from the recorded run in {len(blocking)} way(s); the result is NOT a "
        f"faithful reproduction:")
    for line in blocking:
        warn(f"WARNING:   {line}")
    warn(bar)


def _recorded_image(info: ImageRecord | None):
    """The recorded image, found by id in the local Docker engine (checked before anything is written)."""
    from appliance.engine import connect

    image_id = info.id if info is not None else None
    if not image_id:
        raise UserError("--docker: the manifest records no container image (the run happened outside the "
                        "appliance image); reproduce without --docker")
    client = connect()
    try:
        image = client.images.get(image_id)
    except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound and API errors alike
        raise UserError(f"--docker: the recorded image {image_id[:19]} is not in the local Docker engine "
                        f"(load it, e.g. `docker load -i IMAGE.tar`, or rebuild it from the same lock)") from None
    if image.id != image_id:
        raise UserError(f"--docker: the engine answered {image.id[:19]} for the recorded image {image_id[:19]}")
    digest = info.digest
    if digest:
        repo_digests = [d.split("@", 1)[-1] for d in (image.attrs.get("RepoDigests") or [])]
        if repo_digests and digest not in repo_digests and digest != image.id:
            raise UserError(f"--docker: image {image_id[:19]} does not carry the recorded digest {digest[:19]}")
    say(f"image    {image_id[:19]} (the recorded one) found in the local Docker engine")
    return image


# --------------------------------------------------------------------------- inputs


@dataclass
class InputLayout:
    """Where the recipe goes inside the reproduction, and where each local input goes beside it."""

    recipe_rel: str  # the recipe file, relative to the workdir
    local_targets: dict = field(default_factory=dict)  # input name -> path relative to the workdir, or None (in place)


def _match(parts: tuple, pats: tuple) -> bool:
    """Component-wise glob match with ``**`` for any number of components."""
    if not pats:
        return not parts
    if pats[0] == "**":
        return any(_match(parts[i:], pats[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pats[0]) and _match(parts[1:], pats[1:])


def _tail_for(path: Path, pattern: str) -> tuple[int, tuple] | None:
    """For a relative recipe entry: (leading ``..`` count, the tail of ``path`` the rest of it matches)."""
    parts = PurePosixPath(posixpath.normpath(pattern)).parts
    ups = 0
    while ups < len(parts) and parts[ups] == "..":
        ups += 1
    rest = parts[ups:]
    names = path.parts[1:]  # without the root
    for k in range(1, len(names) + 1):
        if _match(names[-k:], rest):
            return ups, names[-k:]
    return None


def plan_inputs(recipe, inputs: tuple[InputRecord, ...]) -> InputLayout:
    """Decide where the recipe and each local input go, before anything is written."""
    depth = 0
    targets: dict = {}
    if recipe.input_kind == "local":
        placed = {}
        for record in inputs:
            origin = record.origin
            if not origin.startswith("file://"):
                raise UserError(f"inputs: {printable(record.name)}: origin {printable(repr(origin))} is not a file:// "
                                f"URL, but the recipe's inputs are local files")
            source = origin_path(origin, record.name)
            found = None
            for spec in recipe.local:
                if os.path.isabs(spec.path):
                    if _match(source.parts[1:], PurePosixPath(posixpath.normpath(spec.path)).parts[1:]):
                        found = (None, None)
                        break
                else:
                    tail = _tail_for(source, spec.path)
                    if tail:
                        found = tail
                        break
            if found is None:
                raise UserError(f"inputs: {printable(record.name)}: its origin {printable(origin)} matches no entry "
                                f"of the recipe's inputs.local, so the recipe could not find it again")
            placed[record.name] = found
            if found[0]:
                depth = max(depth, found[0])
        # a recipe whose entries climb out of its directory (../data/x) sits that many levels deeper
        recipe_dir = PurePosixPath(RECIPE_DIR, *[f"d{i + 1}" for i in range(depth)])
        for name, (ups, tail) in placed.items():
            if tail is None:
                targets[name] = None  # an absolute entry: used in place
            else:
                base = recipe_dir
                for _ in range(ups):
                    base = base.parent
                targets[name] = (base / PurePosixPath(*tail)).as_posix()
    else:
        recipe_dir = PurePosixPath(RECIPE_DIR)
    _check_overrides(recipe)
    return InputLayout((recipe_dir / recipe.path.name).as_posix(), targets)


def _check_overrides(recipe) -> None:
    """Override reference files are not in the manifest: a recipe that names one cannot be rebuilt from it alone."""
    for stage, config in recipe.stages.items():
        for step, params in config.steps.items():
            for key, value in params.items():
                if key.startswith("override_") and isinstance(value, str) and value.strip().upper() != "N/A":
                    if os.path.isabs(value) and Path(value).is_file():
                        warn(f"warning  {stage}.steps.{step}.{key}: {value} is used in place; the manifest records "
                            f"no checksum for override files")
                        continue
                    raise UserError(f"{stage}.steps.{step}.{key}: the recipe overrides a reference file ({value}) "
                                    f"that the manifest does not carry; it cannot be reproduced from the manifest alone")


def restore_inputs(recipe, inputs: tuple[InputRecord, ...], stage: Path, layout: InputLayout) -> list[str]:
    """Rebuild every recorded input from its origin into ``stage`` and check its sha256.

    Returns where each input now is: a path relative to ``stage``, or an
    absolute path for a local input that is used in place.  The simulator
    writes datamodels, so the run's CRDS settings are applied meanwhile.
    """
    settings = choose_settings(recipe.environment.crds_context, use_step_pars=recipe.environment.use_step_pars,
                               simulated=recipe.input_kind == "simulate", workdir=stage)
    with crdsenv.applied(settings):
        return sources.restore(recipe, inputs, stage, layout.local_targets)


# --------------------------------------------------------------------------- running


def _run_here(recipe_path: Path, workdir: Path, draft, allow_env_mismatch: bool, fetch_references: bool,
              datasets: list[Path]) -> Path:
    if draft.input_kind != "simulate" and fetch_references:
        _prefetch_references(recipe_path, workdir, allow_env_mismatch, datasets)
    say(f"run      {recipe_path} → {workdir}")
    return reduction.run(recipe_path, workdir, reduction.Options(allow_env_mismatch=allow_env_mismatch)).manifest


def _prefetch_references(recipe_path: Path, workdir: Path, allow_env_mismatch: bool, datasets: list[Path]) -> None:
    """Real data: make the CRDS cache hold the references the recorded inputs select, as `run.py fetch` does.

    The inputs are the recorded ones, already in place: MAST is not asked again
    (a new query could list files the recorded run never saw).
    """
    prepared = prepare(recipe_path, workdir, allow_env_mismatch=allow_env_mismatch)
    settings = prepared.settings
    if not needs_prefetch(settings.context, os.environ):  # the user's environment: its CRDS server
        return
    with crdsenv.applied(settings):
        reftypes = recipe_reftypes(prepared.recipe, settings.use_step_pars)
    report = prefetch_references(crdsenv.for_fetch(settings), [p for p in datasets if p.name.endswith(".fits")],
                                 reftypes=reftypes["types"])
    say(f"crds     {settings.context}: references {report}")


def _run_in_image(image, recipe_path: Path, workdir: Path) -> Path:
    from appliance.launch import RunOptions, run_recipe

    # The image is the recorded one by id: its labels may name another lock than this checkout's, which is
    # the point of reproducing in it, so the launcher's lock check only warns.
    code = run_recipe(RunOptions(recipe=recipe_path, workdir=workdir, image=image.id, allow_env_mismatch=True))
    manifest = workdir / MANIFEST_NAME
    if code != 0 or not manifest.is_file():
        raise WorkFailed(f"the reproduction in image {image.id[:19]} failed (exit status {code})")
    return manifest
