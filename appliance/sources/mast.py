"""MAST as a recipe input (``[inputs.mast]``).

The download provider (astroquery.mast, resumable and hashed downloads) is the
subject of its own issue; until it lands, a MAST recipe can be checked but not
run, and says so in one line.
"""

from __future__ import annotations

from pathlib import Path

from appliance.errors import UserError


def materialise(recipe, workdir: Path):
    raise UserError(
        f"{recipe.path}: inputs.mast: downloading from MAST is not available in this release; "
        f"download the files yourself and list them under inputs.local"
    )
