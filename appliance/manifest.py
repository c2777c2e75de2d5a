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
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from appliance.errors import UserError

MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"
SUMS_NAME = "SHA256SUMS"
TOOL_NAME = "jwst-reduction-appliance"

#: Distributions whose versions are repeated at the top of ``environment``.
KEY_DISTRIBUTIONS = ("jwst", "crds", "stpipe", "stdatamodels")

#: Primary-header keyword values that mean "no reference file was used".
_NO_REFERENCE = {"N/A", ""}


# --------------------------------------------------------------------------
# Hashing and records
# --------------------------------------------------------------------------


def file_sha256(path: str | os.PathLike, bufsize: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in ``bufsize`` chunks."""
    h = hashlib.sha256()
    buf = bytearray(bufsize)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


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
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def installed_distributions() -> dict[str, str]:
    """Every installed distribution (normalised name → version), sorted by name.

    When a name is installed twice on ``sys.path``, the first one wins, as for
    ``import``.
    """
    from importlib.metadata import distributions

    found: dict[str, str] = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(_normalise(name), dist.version)
    return dict(sorted(found.items()))


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
            "sha256": hashlib.sha256(recipe_text.encode("utf-8")).hexdigest(),
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


def _json_default(obj: Any) -> Any:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _atomic_write(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` via a temporary file in the same directory, fsync, rename."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(target.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


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
    _atomic_write(workdir / SUMS_NAME, sha256sums_text(manifest).encode("utf-8"))
    target = workdir / MANIFEST_NAME
    _atomic_write(target, text.encode("utf-8"))
    return target


def manifest_path(path_or_dir: str | os.PathLike) -> Path:
    """The manifest file named by a path that is either the file or its directory."""
    path = Path(path_or_dir)
    return path / MANIFEST_NAME if path.is_dir() else path


def load_manifest(path_or_dir: str | os.PathLike) -> dict:
    """Read and check a manifest; every problem is a one-line :class:`UserError`."""
    path = manifest_path(path_or_dir)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such manifest") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the manifest: {exc.strerror or exc}") from None
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not a manifest: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not a manifest: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{path}: not a manifest: expected a JSON object, found {type(manifest).__name__}")
    version = manifest.get("manifest_version")
    if version != MANIFEST_VERSION:
        found = "nothing" if version is None else repr(version)
        raise UserError(f"{path}: manifest_version: expected {MANIFEST_VERSION}, found {found} (unsupported manifest)")
    recipe = manifest.get("recipe")
    if not isinstance(recipe, dict) or not isinstance(recipe.get("text"), str) or not isinstance(recipe.get("sha256"), str):
        raise UserError(f"{path}: recipe: expected an object with the recipe's text and sha256")
    if hashlib.sha256(recipe["text"].encode("utf-8")).hexdigest() != recipe["sha256"].lower():
        raise UserError(f"{path}: recipe.sha256: does not match the sha256 of recipe.text (tampered manifest)")
    for key, field in (("inputs", "name"), ("products", "path")):
        items = manifest.get(key, [])
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get(field), str) and isinstance(i.get("sha256"), str) for i in items
        ):
            raise UserError(f"{path}: {key}: expected a list of objects with {field} and sha256")
    return manifest


def _unsafe(rel: str) -> bool:
    p = PurePosixPath(rel)
    return p.is_absolute() or ".." in p.parts or rel == ""


def verify(path_or_dir: str | os.PathLike) -> list[str]:
    """Re-hash every input and product against the manifest (paths relative to its directory).

    Returns one line per problem -- ``missing: X``, ``size mismatch: X (...)``,
    ``sha256 mismatch: X (...)``, ``unsafe path: X``, and ``SHA256SUMS: ...``
    when the sums file beside the manifest disagrees with it; an empty list
    means everything matches.  A manifest that cannot be read raises
    :class:`UserError`.
    """
    path = manifest_path(path_or_dir)
    manifest = load_manifest(path)
    root = path.parent
    problems = []
    for rel, sha, size in _entries(manifest):
        if _unsafe(rel):
            problems.append(f"unsafe path: {rel}")
            continue
        target = root / rel
        if not target.is_file():
            problems.append(f"missing: {rel}")
            continue
        actual_size = target.stat().st_size
        if size is not None and actual_size != size:
            problems.append(f"size mismatch: {rel} (manifest {size} bytes, found {actual_size})")
            continue
        actual = file_sha256(target)
        if actual != sha.lower():
            problems.append(f"sha256 mismatch: {rel} (manifest {sha[:16]}…, found {actual[:16]}…)")
    sums = root / SUMS_NAME
    if sums.is_file():
        if sums.read_text(encoding="utf-8", errors="replace") != sha256sums_text(manifest):
            problems.append(f"{SUMS_NAME}: does not list exactly the manifest's inputs and products")
    else:
        problems.append(f"missing: {SUMS_NAME}")
    return problems
