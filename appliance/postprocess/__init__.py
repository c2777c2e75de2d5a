"""Post-processing operations that a recipe's ``[[postprocess]]`` tables may name.

For now this module only *declares* the operations: their names and the
parameter names each one accepts, so that :mod:`appliance.recipe` can reject
a misspelt operation or parameter before any work starts.  The operations
themselves (background, catalog, preview, ...) are implemented in a later
issue; each will live in its own module beside this one and must accept
exactly the parameters listed here.
"""

from __future__ import annotations

#: Registered operation name -> the parameter names it accepts (besides ``op``).
OPERATIONS: dict[str, frozenset[str]] = {
    "background": frozenset({"box_size", "filter_size", "sigma", "mask_sources", "input"}),
    "catalog": frozenset({"threshold", "npixels", "deblend", "input"}),
    "preview": frozenset({"stretch", "composite"}),
    "astrometric_catalog": frozenset({"filter", "min_snr", "table"}),
    "report": frozenset(),
}


def registered_names() -> list[str]:
    """The registered operation names, sorted, for error messages and docs."""
    return sorted(OPERATIONS)
