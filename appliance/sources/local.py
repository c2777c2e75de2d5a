"""Exposures already on disk (``[inputs] local = [...]``), copied into the workdir.

Copying keeps the workdir self-contained: the manifest's paths are relative to
it, and ``verify`` or an archive of the directory needs nothing outside.  Each
input's origin is its ``file://`` URL, which ``restore`` reads again.
"""

from __future__ import annotations

import posixpath
import shutil
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from appliance.errors import UserError, WorkFailed
from appliance.files import file_sha256, writing
from appliance.graph import Exposure
from appliance.recipe import resolve_local_inputs
from appliance.safety import is_name, printable
from appliance.sources.inputfile import InputFile
from appliance.workdir import INPUT_DIR_OF_KIND


def planned(recipe) -> list[Exposure]:
    """The exposures, from the files' own headers (missing files and pinned checksums checked)."""
    from appliance.plan import exposure_from_header

    return [exposure_from_header(f.path) for f in resolve_local_inputs(recipe)]


def input_key(recipe) -> str:
    """Each file's path, size and modification time (and its pinned sha256): a change copies it again."""
    from appliance.sources import key_of

    files = []
    for f in resolve_local_inputs(recipe):
        st = f.path.stat()
        files.append([str(f.path), st.st_size, st.st_mtime_ns, f.sha256])
    return key_of(files)


def expected_files(recipe) -> list[dict]:
    """Where each file will be in the workdir and its content digest, before copying (``run --dry-run``)."""
    return [{"path": f"{INPUT_DIR_OF_KIND[item.kind]}/{item.path.name}",
             "content_digest": "sha256:" + file_sha256(item.path)} for item in resolve_local_inputs(recipe)]


def materialise(recipe, workdir: Path) -> list[InputFile]:
    placed = []
    for item in resolve_local_inputs(recipe):
        target = workdir / INPUT_DIR_OF_KIND[item.kind] / item.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not (target.exists() and file_sha256(target) == file_sha256(item.path)):
            with writing(target) as part:  # a copy cut short (a full disk) leaves nothing behind
                shutil.copyfile(item.path, part)
        placed.append(InputFile(target, item.path.resolve().as_uri()))
    return placed


def origin_path(origin: str, name: str) -> Path:
    """The file a ``file://`` origin names: absolute, normalised, every part a plain name.

    It decides where the input is placed again, so a forged ``..`` (or a
    ``%2e%2e``, or a host) must not climb out of the reproduction.
    """
    parsed = urlparse(origin)
    path = unquote(parsed.path)
    parts = PurePosixPath(path).parts
    if (parsed.scheme != "file" or parsed.netloc not in ("", "localhost") or not path.startswith("/")
            or posixpath.normpath(path) != path or not all(is_name(part) for part in parts[1:])):
        raise UserError(f"inputs: {printable(name)}: origin {printable(origin)} is not a plain absolute file:// URL "
                        f"(no '..', no unusual characters); refusing a forged manifest")
    return Path(path)


def restore(recipe, records, stage: Path, targets: dict) -> list[str]:
    """Copy each recorded file from its origin to ``targets[name]`` (relative to ``stage``; None: used in place)."""
    where = []
    for record in records:
        source = origin_path(record.origin, record.name)
        if not source.is_file():
            raise UserError(f"inputs: {record.name}: cannot reach origin {record.origin}: no such file")
        if file_sha256(source) != record.sha256:
            raise WorkFailed(f"inputs: {record.name}: {record.origin} is no longer the recorded file "
                             f"(sha256 differs from the manifest's {record.sha256[:16]}…)")
        target = targets.get(record.name)
        if target is None:
            where.append(str(source))
        else:
            with writing(stage / target) as part:
                shutil.copyfile(source, part)
            where.append(target)
    return where
