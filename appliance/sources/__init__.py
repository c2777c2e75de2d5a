"""Where a recipe's exposures come from: simulated, local files, or MAST.

Each source module (``simulate``, ``local``, ``mast``) answers three questions
for its kind of ``[inputs]``:

* ``planned(recipe)``: the exposures, known before anything is written (None
  when only a query can tell, as for MAST);
* ``materialise(recipe, workdir)``: put the files into the workdir (``uncal/``,
  or the directory of the stage they belong to) and return one
  :class:`~appliance.sources.inputfile.InputFile` per file, so the manifest can
  say where every input came from;
* ``restore(recipe, records, stage, targets)``: rebuild recorded inputs from
  their origins, each checked against its recorded sha256 (``reproduce``).
"""

from __future__ import annotations

import importlib
from pathlib import Path


def source(recipe):
    """The module that serves the recipe's kind of input."""
    return importlib.import_module(f"appliance.sources.{recipe.input_kind}")


def planned_exposures(recipe):
    """The exposures the recipe will reduce, or None when they are known only once fetched."""
    return source(recipe).planned(recipe)


def materialise(recipe, workdir: Path):
    """Put the recipe's inputs into the workdir."""
    return source(recipe).materialise(recipe, workdir)


def restore(recipe, records, stage: Path, targets: dict) -> list[str]:
    """Rebuild recorded inputs into ``stage``; where each now is (relative to ``stage``, or absolute in place)."""
    return source(recipe).restore(recipe, records, stage, targets)
