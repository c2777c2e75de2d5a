"""One input as placed in the workdir, with where it came from (what the manifest records of it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class InputFile:
    path: Path  # inside the workdir
    origin: str  # where it came from: simulate:..., file://..., mast:...
    fetched_at: str | None = None
