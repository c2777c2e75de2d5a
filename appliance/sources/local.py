"""Exposures already on disk (``[inputs] local = [...]``), copied into the workdir.

Copying keeps the workdir self-contained: the manifest's paths are relative to
it, and ``verify`` or an archive of the directory needs nothing outside.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from appliance.files import file_sha256, writing
from appliance.workdir import INPUT_DIR_OF_KIND
from appliance.recipe import resolve_local_inputs
from appliance.sources import InputFile


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
