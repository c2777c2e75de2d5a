"""The manifest: what was run, where, on what, and what came out.

``manifest.json`` (see ``docs/manifest.md`` for every field) and a
``SHA256SUMS`` beside it, so that ``cd WORKDIR && sha256sum -c SHA256SUMS``
checks every input and product without this tool.  Both are written
atomically; the manifest last, so its presence means the run completed.

Nothing here imports jwst: the CLI configures CRDS through environment
variables before jwst is first imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from appliance.errors import UserError
from appliance.files import atomic_write, file_sha256, text_sha256
from appliance.workdir import MANIFEST_NAME, SUMS_NAME
from appliance.safety import MANIFEST_SIZE_LIMIT, SHA256, inside, printable, read_regular_file, safe_relative

MANIFEST_VERSION = 1
TOOL_NAME = "jwst-reduction-appliance"

#: Distributions whose versions are repeated at the top of ``environment``.
KEY_DISTRIBUTIONS = ("jwst", "crds", "stpipe", "stdatamodels")

#: A container image id as Docker gives it.
IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}", re.ASCII)

#: Primary-header keyword values that mean "no reference file was used".
_NO_REFERENCE = {"N/A", ""}


# --------------------------------------------------------------------------
# Hashing and records
# --------------------------------------------------------------------------


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` as a POSIX string; it must lie inside ``root``."""
    path, root = Path(path), Path(root)
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        raise ValueError(f"{path} is not inside {root}") from None
    return rel.as_posix()


def product_record(path: Path, root: Path, task: str) -> dict:
    """One product: path, size, sha256, content digest, producing task, CRDS refs, step statuses.

    ``crds_refs`` maps each primary-header ``R_*`` keyword with a string value
    other than ``N/A`` to that value (``"crds://jwst_mirimage_dark_0001.fits"``);
    ``step_status`` maps each ``S_*`` keyword to its value (``"COMPLETE"``,
    ``"SKIPPED"``...).  Both are ``{}`` for products that are not FITS.
    """
    from appliance import digest

    path = Path(path)
    sha = file_sha256(path)
    kind = digest.canonical_kind(path)
    # a kind that is not canonicalised has content digest == sha256: do not read it twice
    content = "sha256:" + sha if kind is None else digest.content_digest(path)
    crds_refs: dict[str, str] = {}
    step_status: dict[str, str] = {}
    if kind == "fits":
        crds_refs, step_status = _fits_provenance(path)
    return {
        "path": _relative(path, root),
        "size": path.stat().st_size,
        "sha256": sha,
        "content_digest": content,
        "task": task,
        "crds_refs": crds_refs,
        "step_status": step_status,
    }


def _fits_provenance(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    from astropy.io import fits

    header = fits.getheader(path, 0)
    refs, status = {}, {}
    for card in header.cards:
        key, value = card.keyword, card.value
        if not isinstance(value, str):
            continue
        if key.startswith("R_") and value.strip() not in _NO_REFERENCE:
            refs[key] = value.strip()
        elif key.startswith("S_"):
            status[key] = value.strip()
    return refs, status


def input_record(path: Path, root: Path, origin: str, fetched_at: str | None = None) -> dict:
    """One input: name (path relative to ``root``), size, sha256, origin, fetched_at."""
    path = Path(path)
    return {
        "name": _relative(path, root),
        "size": path.stat().st_size,
        "sha256": file_sha256(path),
        "origin": origin,
        "fetched_at": fetched_at,
    }


# --------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------


def _normalise(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_distributions() -> dict[str, str]:
    """Every installed distribution (normalised name → version), sorted by name.

    When a name is installed twice on ``sys.path``, the first one wins, as for
    ``import``.
    """
    from importlib.metadata import distributions

    found: dict[str, str] = {}
    for dist in distributions():
        name, version = _name_and_version(dist)
        if name:
            found.setdefault(_normalise(name), version)
    return dict(sorted(found.items()))


def _name_and_version(dist) -> tuple[str | None, str | None]:
    """``Name`` and ``Version`` from the head of a distribution's core metadata.

    They are headers of its first block, so reading up to the first blank line
    is enough; ``dist.metadata`` parses the whole file as e-mail, which for the
    ~300 distributions of the image took a quarter of a second on every run.
    """
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        if key in ("Name", "Version") and key not in fields:
            fields[key] = value.strip()
    return fields.get("Name"), fields.get("Version")


def capture_environment(
    *,
    crds_context: str,
    crds_path: str,
    crds_mode: str,
    use_step_pars: bool,
    env_mismatches: list[str],
) -> dict:
    """Where the run happened: Python, platform, packages, CRDS settings, container image.

    ``image`` is ``{"id", "digest", "labels"}`` inside the appliance image
    (``$APPLIANCE_IMAGE_ID``, ``$APPLIANCE_IMAGE_DIGEST`` and the labels in
    ``$APPLIANCE_IMAGE_INFO``, default ``/etc/appliance/image.json``) and
    ``None`` outside it.
    """
    from appliance.pin import read_image_info

    packages = installed_distributions()
    env = {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
        },
        "platform": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "system": platform.system(),
        },
        "packages": packages,
    }
    for name in KEY_DISTRIBUTIONS:
        env[name] = packages.get(name)
    env.update(
        crds_context=crds_context,
        crds_path=str(crds_path),
        crds_mode=crds_mode,
        use_step_pars=bool(use_step_pars),
        env_mismatches=list(env_mismatches),
        image=read_image_info(),
    )
    return env


# --------------------------------------------------------------------------
# Build, write, load, verify
# --------------------------------------------------------------------------


def build_manifest(
    *,
    recipe_text: str,
    recipe_path: str,
    environment: dict,
    inputs: list[dict],
    products: list[dict],
    tasks: list[dict],
    started: str,
    finished: str,
    extra: dict | None = None,
) -> dict:
    """Assemble the manifest; ``extra`` adds top-level keys (it may not replace the standard ones)."""
    from appliance import __version__, digest

    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "tool": {"name": TOOL_NAME, "version": __version__},
        "recipe": {
            "path": str(recipe_path),
            "sha256": text_sha256(recipe_text),
            "text": recipe_text,
        },
        "environment": environment,
        "inputs": list(inputs),
        "products": list(products),
        "tasks": list(tasks),
        "started": started,
        "finished": finished,
        "content_digest": digest.describe(),
    }
    clash = sorted(set(extra or {}) & set(manifest))
    if clash:
        raise ValueError(f"extra manifest keys would replace standard ones: {', '.join(clash)}")
    manifest.update(extra or {})
    return manifest


def assemble(prepared, plan, placed, outcomes, *, jwst_version: str, crds_fetch: dict | None, started: str,
             finished: str, execution: dict | None = None) -> dict:
    """The manifest of a finished run, assembled from the records alone (no product is read again).

    ``prepared`` is the :class:`~appliance.session.Prepared` recipe,
    ``placed`` the inputs step (:class:`~appliance.sources.Placed`),
    ``outcomes`` every task's :class:`~appliance.runner.Outcome` with its
    completion record; ``crds_fetch`` is what ``fetch`` recorded of the
    references (server, time, per-file state), when it ran.  Each task says
    whether it was run or reused, and why.
    """
    recipe, settings = prepared.recipe, prepared.settings
    input_records = [{"name": f["path"], **{k: f[k] for k in ("size", "sha256", "origin", "fetched_at")}}
                     for f in placed.files]
    products, references = [], {}
    tasks = [{"id": "inputs", "kind": recipe.input_kind, "status": placed.status, "reason": placed.reason,
              "seconds": round(placed.seconds, 3), "outputs": [r["name"] for r in input_records]}]
    for outcome in outcomes:
        record = outcome.record or {}
        outputs = [{k: v for k, v in out.items() if k != "mtime_ns"} for out in outcome.outputs]
        products += outputs
        references.update({name: ref["sha256"] for name, ref in record.get("references", {}).items()})
        tasks.append({"id": outcome.task.id, "kind": outcome.task.kind, "status": outcome.status,
                      "reason": outcome.reason, "seconds": record.get("seconds", 0.0),
                      "outputs": [o["path"] for o in outputs], "key": record.get("key"),
                      "inputs": list(outcome.task.inputs), "params": outcome.task.params,
                      "worker": record.get("worker"), "log": record.get("log"),
                      **({"maximum_cores": record["maximum_cores"]} if record.get("maximum_cores") else {}),
                      **{k: record[k] for k in STAGE_RECORD_KEYS if k in record}})
    environment = capture_environment(crds_context=settings.context, crds_path=settings.path,
                                      crds_mode=settings.mode, use_step_pars=settings.use_step_pars,
                                      env_mismatches=list(prepared.mismatches))
    environment["jwst"] = environment.get("jwst") or jwst_version
    environment["crds_references"] = dict(sorted(references.items()))
    if crds_fetch:
        environment["crds_fetch"] = crds_fetch
    return build_manifest(
        recipe_text=recipe.text, recipe_path=str(recipe.path), environment=environment, inputs=input_records,
        products=products, tasks=tasks, started=started, finished=finished,
        extra={"plan": {"stages": list(plan.stages), "exposures": [e.name for e in plan.exposures]},
               "run_digest": run_digest(recipe.sha256, input_records, products),
               "unexpected_skips": [{"task": t["id"], **skip} for t in tasks
                                    for skip in t.get("skipped_steps", []) if not skip["expected"]],
               "execution": execution or {}},
    )


#: What a stage task's record adds, carried into the manifest's task entry (appliance.stages.run_stage).
STAGE_RECORD_KEYS = ("parameter_file", "effective_parameters", "skipped_steps")


def run_digest(recipe_sha256: str, inputs: list[dict], products: list[dict]) -> str:
    """One digest of what a run made of what: the recipe, each input's sha256, each product's content digest.

    Two runs that produced the same content give the same run digest, however
    long they took and whichever of their tasks were reused.
    """
    blob = json.dumps({"recipe": recipe_sha256, "inputs": sorted([i["name"], i["sha256"]] for i in inputs),
                       "products": sorted([p["path"], p["content_digest"]] for p in products)}, sort_keys=True)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _sums_line(sha: str, name: str) -> str:
    """One ``sha256sum`` line; names with a backslash or newline use its escaped form."""
    if "\\" in name or "\n" in name or "\r" in name:
        escaped = name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        return f"\\{sha}  {escaped}\n"
    return f"{sha}  {name}\n"


def _entries(manifest: dict) -> list[tuple[str, str, int | None]]:
    """(relative path, sha256, size) of every input and product, in manifest order, once each."""
    seen: dict[str, tuple[str, str, int | None]] = {}
    for item in manifest.get("inputs", []):
        seen.setdefault(item["name"], (item["name"], item["sha256"], item.get("size")))
    for item in manifest.get("products", []):
        seen.setdefault(item["path"], (item["path"], item["sha256"], item.get("size")))
    return list(seen.values())


def sha256sums_text(manifest: dict) -> str:
    """The ``SHA256SUMS`` text for a manifest: every input and product, not the manifest."""
    return "".join(_sums_line(sha, name) for name, sha, _ in _entries(manifest))


def write_manifest(workdir: Path, manifest: dict) -> Path:
    """Write ``SHA256SUMS`` then ``manifest.json`` into ``workdir``, each atomically."""
    workdir = Path(workdir)
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False, default=_json_default) + "\n"
    atomic_write(workdir / SUMS_NAME, sha256sums_text(manifest), durable=True)
    target = workdir / MANIFEST_NAME
    try:
        atomic_write(target, text, durable=True)
    except BaseException:  # sums without their manifest would describe a run that did not complete
        (workdir / SUMS_NAME).unlink(missing_ok=True)
        raise
    return target


def manifest_path(path_or_dir: str | os.PathLike) -> Path:
    """The manifest file named by a path that is either the file or its directory."""
    path = Path(path_or_dir)
    return path / MANIFEST_NAME if path.is_dir() else path


@dataclass(frozen=True)
class InputRecord:
    """One input of a recorded run: its workdir path, size, sha256 and where it came from."""

    name: str
    sha256: str
    size: int | None = None
    origin: str = ""
    fetched_at: str | None = None


@dataclass(frozen=True)
class ProductRecord:
    """One product: path, size, sha256, content digest, producing task, CRDS references, step statuses."""

    path: str
    sha256: str
    content_digest: str
    size: int | None = None
    task: str = ""
    crds_refs: Mapping[str, str] = field(default_factory=dict)
    step_status: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskRecord:
    id: str
    kind: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    seconds: float | None = None
    effective_parameters: Mapping[str, Any] = field(default_factory=dict)  # a stage task's, appliance.parameters


@dataclass(frozen=True)
class ImageRecord:
    """The container image a run happened in (``environment.image``)."""

    id: str | None = None
    digest: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EnvironmentRecord:
    """Where a recorded run happened, as far as comparing and reproducing need it."""

    python_version: str | None = None
    platform: str | None = None
    packages: Mapping[str, str] = field(default_factory=dict)
    jwst: str | None = None
    crds_context: str | None = None
    crds_mode: str | None = None
    crds_path: str | None = None
    use_step_pars: bool | None = None
    image: ImageRecord | None = None
    crds_references: Mapping[str, str] = field(default_factory=dict)
    env_mismatches: tuple[str, ...] = ()


@dataclass(frozen=True)
class Manifest:
    """A manifest as read back: checked, typed, and the JSON it came from (``data``)."""

    path: Path
    recipe_path: str
    recipe_text: str
    recipe_sha256: str
    environment: EnvironmentRecord
    inputs: tuple[InputRecord, ...]
    products: tuple[ProductRecord, ...]
    tasks: tuple[TaskRecord, ...]
    started: str | None
    finished: str | None
    digest_format: str | None
    plan_exposures: tuple[str, ...]
    data: Mapping[str, Any]

    @classmethod
    def from_json(cls, data: dict, path: Path) -> "Manifest":
        """Typed records of checked JSON (:func:`load_manifest` has checked every field used here)."""
        env = data.get("environment", {})
        image = env.get("image")
        pick = lambda record_type, d: record_type(**{k: d[k] for k in record_type.__dataclass_fields__ if k in d})  # noqa: E731
        return cls(
            path=Path(path),
            recipe_path=str(data["recipe"].get("path", "")),
            recipe_text=data["recipe"]["text"],
            recipe_sha256=data["recipe"]["sha256"].lower(),
            environment=EnvironmentRecord(
                python_version=(env.get("python") or {}).get("version"),
                platform=(env.get("platform") or {}).get("platform"),
                packages=dict(env.get("packages", {})),
                jwst=env.get("jwst"), crds_context=env.get("crds_context"), crds_mode=env.get("crds_mode"),
                crds_path=env.get("crds_path"), use_step_pars=env.get("use_step_pars"),
                image=None if image is None else pick(ImageRecord, image),
                crds_references=dict(env.get("crds_references", {})),
                env_mismatches=tuple(env.get("env_mismatches", ())),
            ),
            inputs=tuple(pick(InputRecord, i) for i in data.get("inputs", [])),
            products=tuple(pick(ProductRecord, p) for p in data.get("products", [])),
            tasks=tuple(pick(TaskRecord, {**t, "outputs": tuple(t.get("outputs", ()))}) for t in data.get("tasks", [])),
            started=data.get("started"),
            finished=data.get("finished"),
            digest_format=(data.get("content_digest") or {}).get("format"),
            plan_exposures=tuple((data.get("plan") or {}).get("exposures", ())),
            data=data,
        )


def load_manifest(path_or_dir: str | os.PathLike) -> Manifest:
    """Read and check a manifest; every problem is a one-line :class:`UserError`.

    A manifest is untrusted input (it may come back from anyone's disk), so it
    is read only as a regular file of bounded size, and every field the
    appliance uses is checked for its type -- every path for staying inside
    the manifest's directory -- before anything acts on it.
    """
    path = manifest_path(path_or_dir)
    where = printable(path)
    raw = read_regular_file(path, "manifest", MANIFEST_SIZE_LIMIT)
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"{where}: not a manifest: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: not a manifest: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise UserError(f"{where}: not a manifest: JSON nested too deeply") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{where}: not a manifest: expected a JSON object, found {type(manifest).__name__}")
    version = manifest.get("manifest_version")
    if version != MANIFEST_VERSION:
        found = "nothing" if version is None else printable(repr(version))[:40]
        raise UserError(f"{where}: manifest_version: expected {MANIFEST_VERSION}, found {found} (unsupported manifest)")
    recipe = manifest.get("recipe")
    if not isinstance(recipe, dict) or not isinstance(recipe.get("text"), str) or not isinstance(recipe.get("sha256"), str):
        raise UserError(f"{where}: recipe: expected an object with the recipe's text and sha256")
    if text_sha256(recipe["text"]) != recipe["sha256"].lower():
        raise UserError(f"{where}: recipe.sha256: does not match the sha256 of recipe.text (tampered manifest)")
    problem = _structure_problem(manifest)
    if problem:
        raise UserError(f"{where}: {problem}")
    return Manifest.from_json(manifest, path)


#: The fields of each list entry the appliance reads: (name, kind, required); kinds in :func:`_expected`.
_ENTRY_FIELDS = {
    "inputs": (("name", "path", True), ("sha256", "sha256", True), ("size", "count", False),
               ("origin", "string", False), ("fetched_at", "optional string", False)),
    "products": (("path", "path", True), ("sha256", "sha256", True), ("content_digest", "string", True),
                 ("size", "count", False), ("task", "string", False), ("crds_refs", "strings", False),
                 ("step_status", "strings", False)),
    "tasks": (("id", "string", True), ("kind", "string", False), ("params", "parameters", False),
              ("effective_parameters", "parameters", False),
              ("outputs", "paths", False), ("seconds", "number", False)),
}
#: Fields of ``environment`` and the top level: (name, kind).
_ENVIRONMENT_FIELDS = (("packages", "strings"), ("crds_references", "strings"), ("python", "object"),
                       ("platform", "object"), ("jwst", "optional string"), ("crds_context", "optional string"),
                       ("crds_mode", "optional string"), ("crds_path", "optional string"),
                       ("env_mismatches", "string list"), ("image", "image"))
_TOP_FIELDS = (("environment", "object"), ("plan", "plan"), ("content_digest", "object"),
               ("started", "optional string"), ("finished", "optional string"))


def _expected(value, kind: str) -> str | None:
    """What ``value`` should have been, or None when it is of ``kind``."""
    checks = {
        "path": (lambda v: safe_relative(v), "a relative path inside the run's directory"),
        "paths": (lambda v: isinstance(v, list) and all(safe_relative(x) for x in v),
                  "a list of relative paths inside the run's directory"),
        "sha256": (lambda v: isinstance(v, str) and SHA256.fullmatch(v.lower()) is not None, "64 hexadecimal digits"),
        "string": (lambda v: isinstance(v, str), "a string"),
        "optional string": (lambda v: v is None or isinstance(v, str), "a string or null"),
        "string list": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings"),
        "strings": (lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
                    "an object of strings"),
        "object": (lambda v: isinstance(v, dict), "an object"),
        "parameters": (lambda v: isinstance(v, dict) and isinstance(v.get("pipeline", {}), dict)
                       and isinstance(v.get("steps", {}), dict)
                       and all(isinstance(x, dict) for x in v.get("steps", {}).values()),
                       "an object whose pipeline is an object and whose steps are objects of parameters"),
        "count": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a non-negative integer"),
        "number": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
        "image": (lambda v: v is None or isinstance(v, dict) and (v.get("id") is None or isinstance(v["id"], str)
                                                                 and IMAGE_ID.fullmatch(v["id"]) is not None)
                  and _expected(v.get("digest"), "optional string") is None
                  and isinstance(v.get("labels", {}), dict),
                  "null or an object with an id sha256:<64 hexadecimal digits>, a digest and labels"),
        "plan": (lambda v: isinstance(v, dict) and all(_expected(v.get(k, []), "string list") is None
                                                       for k in ("stages", "exposures")),
                 "an object with lists of stage and exposure names"),
    }
    ok, text = checks[kind]
    return None if ok(value) else text


def _structure_problem(manifest: dict) -> str | None:
    """The first field that is not what the appliance expects, as ``key: expected ..., found ...``."""

    def problem(key: str, value, kind: str) -> str | None:
        expected = _expected(value, kind)
        return f"{key}: expected {expected}, found {printable(repr(value))[:80]}" if expected else None

    for key, fields in _ENTRY_FIELDS.items():
        items = manifest.get(key, [])
        if not isinstance(items, list):
            return f"{key}: expected a list"
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                return f"{key}[{i}]: expected an object"
            for name, kind, required in fields:
                if name not in item:
                    if required:
                        return f"{key}[{i}].{name}: missing"
                elif found := problem(f"{key}[{i}].{name}", item[name], kind):
                    return found
    for name, kind in _TOP_FIELDS:
        if name in manifest and (found := problem(name, manifest[name], kind)):
            return found
    env = manifest.get("environment", {})
    for name, kind in _ENVIRONMENT_FIELDS:
        if name in env and (found := problem(f"environment.{name}", env[name], kind)):
            return found
    return problem("recipe.path", manifest["recipe"].get("path", ""), "string")


def verify(path_or_dir: str | os.PathLike) -> list[str]:
    """Re-hash every input and product against the manifest (paths relative to its directory).

    Returns one line per problem -- ``missing: X``, ``size mismatch: X (...)``,
    ``sha256 mismatch: X (...)``, ``outside the run's directory: X`` (a
    symbolic link that leads out of it), and ``SHA256SUMS: ...`` when the sums
    file beside the manifest disagrees with it; an empty list means everything
    matches.  A manifest that cannot be read raises :class:`UserError`.
    """
    path = manifest_path(path_or_dir)
    manifest = load_manifest(path).data
    root = path.parent
    problems = []
    for rel, sha, size in _entries(manifest):
        target = root / rel
        shown = printable(rel)
        if not target.is_file():
            problems.append(f"missing: {shown}")
            continue
        if not inside(target, root):
            problems.append(f"outside the run's directory: {shown} (a symbolic link to "
                            f"{printable(os.path.realpath(target))})")
            continue
        actual_size = target.stat().st_size
        if size is not None and actual_size != size:
            problems.append(f"size mismatch: {shown} (manifest {size} bytes, found {actual_size})")
            continue
        actual = file_sha256(target)
        if actual != sha.lower():
            problems.append(f"sha256 mismatch: {shown} (manifest {sha[:16]}…, found {actual[:16]}…)")
    sums = root / SUMS_NAME
    if sums.exists() and not sums.is_file():
        problems.append(f"{SUMS_NAME}: not a regular file")
    elif sums.is_file():
        text = read_regular_file(sums, SUMS_NAME, MANIFEST_SIZE_LIMIT).decode("utf-8", errors="replace")
        if text != sha256sums_text(manifest):
            problems.append(f"{SUMS_NAME}: does not list exactly the manifest's inputs and products")
    else:
        problems.append(f"missing: {SUMS_NAME}")
    return problems
