"""``inputs.local`` → the files on disk: globs expanded, each file checked and its pinned sha256 compared."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from appliance.files import file_sha256
from appliance.recipe.messages import dotted, quote
from appliance.recipe.model import LocalFile, LocalSpec, Recipe, recipe_error

def resolve_local_inputs(recipe: Recipe) -> list[LocalFile]:
    """Expand ``inputs.local`` to absolute files, checking existence and pinned sha256.

    Paths are relative to the recipe file's directory.  Globs expand in sorted
    order (``**`` recurses); a file listed twice is an error, as it would be
    reduced twice.
    """
    base = recipe.path.parent.absolute()
    files: list[LocalFile] = []
    seen: dict[Path, int] = {}
    for i, spec in enumerate(recipe.local):
        key = ("inputs", "local", i)
        for path in _expand_local(recipe, key, spec, base):
            if path in seen:
                raise recipe_error(recipe, key, f"{quote(str(path))} is already listed by {dotted(('inputs', 'local', seen[path]))}")
            seen[path] = i
            if spec.sha256 is not None:
                actual = file_sha256(path)
                if actual != spec.sha256:
                    raise recipe_error(recipe, (*key, "sha256"),
                                 f"{quote(spec.path)} has sha256 {actual}, but the recipe pins {spec.sha256}")
            files.append(LocalFile(path=path, sha256=spec.sha256, kind=spec.kind))
    return files


def _expand_local(recipe: Recipe, key: tuple, spec: LocalSpec, base: Path) -> list[Path]:
    pattern = Path(spec.path).expanduser()
    if not pattern.is_absolute():
        pattern = base / pattern
    pattern = Path(os.path.normpath(pattern))
    if spec.is_glob:
        matches = sorted(Path(m) for m in glob.glob(str(pattern), recursive=True) if os.path.isfile(m))
        if not matches:
            raise recipe_error(recipe, key, f"{quote(spec.path)} matches no files (looked in {pattern.parent})")
        return matches
    if not pattern.exists():
        raise recipe_error(recipe, key, f"no such file: {quote(spec.path)} (looked for {pattern})")
    if not pattern.is_file():
        raise recipe_error(recipe, key, f"not a regular file: {quote(spec.path)}")
    return [pattern]
