"""Where a recipe's exposures come from: simulated, local files, or MAST.

Each source puts its files into the workdir (``uncal/``, or the directory of
the stage its files belong to) and returns one :class:`InputFile` per file, so
the manifest can say where every input came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class InputFile:
    path: Path  # inside the workdir
    origin: str  # where it came from: simulate:..., file://..., mast:...
    fetched_at: str | None = None


def materialise(recipe, workdir: Path) -> list[InputFile]:
    """Put the recipe's inputs into the workdir."""
    kind = recipe.input_kind
    if kind == "simulate":
        from appliance.sources.simulate import materialise as run
    elif kind == "local":
        from appliance.sources.local import materialise as run
    else:
        from appliance.sources.mast import materialise as run
    return run(recipe, workdir)
