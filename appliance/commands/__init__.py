"""The sub-commands of ``run.py``: one module each, with its arguments (``add_parser``) and what it prints.

A command module only parses, calls the library modules below it and prints;
no other module imports one.  ``appliance.cli`` assembles them.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

#: Where the appliance's own tree is (the image ships its recipes there).
APPLIANCE_ROOT = Path(__file__).resolve().parents[2]


def recipe_path(path: Path) -> Path:
    """A relative recipe path not found here is looked up in the appliance's own tree,
    so ``docker run IMAGE recipes/demo.toml`` finds the recipes shipped in the image."""
    if not path.is_absolute() and not path.exists() and (APPLIANCE_ROOT / path).exists():
        return APPLIANCE_ROOT / path
    return path


def default_workdir(args) -> Path:
    """``--workdir``, else ``<root>/<recipe name>`` with root ``$APPLIANCE_WORKDIR_ROOT`` (``/work`` in the image) or ``work``."""
    return args.workdir or Path(os.environ.get("APPLIANCE_WORKDIR_ROOT", "work")) / args.recipe.stem


def nonnegative(text: str) -> float:
    """An argparse type: a finite number >= 0 (a tolerance)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def positive(text: str) -> int:
    """An argparse type: a whole number >= 1 (workers)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value
