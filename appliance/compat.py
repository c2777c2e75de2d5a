"""Where the libraries' APIs differ between the supported jwst releases, in one place.

Each supported release (:mod:`appliance.releases`) runs the appliance's own code
with the dependencies of its own time.  Where an API changed between those
versions, the difference is handled here, by asking for the feature rather than
comparing version numbers, and nowhere else.

- photutils 3.0 renamed ``SourceCatalog`` properties: ``xcentroid_win`` →
  ``x_centroid_win``, ``segment_fluxerr`` → ``segment_flux_err``,
  ``kron_fluxerr`` → ``kron_flux_err`` (jwst 2.0.1 and 1.20.0 lock photutils 2.3).
- stdatamodels 5 added the ``group_skip1`` column to the RSCD reference table
  (jwst 1.20.0's stdatamodels 4.1 has only ``group_skip``): the synthetic
  reference files are written with the columns the installed schema has.
"""

from __future__ import annotations

#: photutils >= 3.0 name -> the photutils 2.x name of the same SourceCatalog property
_PHOTUTILS_2_NAMES = {
    "x_centroid_win": "xcentroid_win",
    "y_centroid_win": "ycentroid_win",
    "segment_flux_err": "segment_fluxerr",
    "kron_flux_err": "kron_fluxerr",
}


def source_property(catalog, name: str):
    """A photutils ``SourceCatalog`` property by its photutils 3 name, whatever photutils is installed."""
    if not hasattr(type(catalog), name) and name in _PHOTUTILS_2_NAMES:
        name = _PHOTUTILS_2_NAMES[name]
    return getattr(catalog, name)


def table_columns(model, attribute: str) -> list[str]:
    """The column names the installed datamodels schema gives the table ``attribute`` of ``model``."""

    def find(node):
        if isinstance(node, dict):
            if attribute in node.get("properties", {}):
                return node["properties"][attribute]
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            return None
        for child in children:
            found = find(child)
            if found is not None:
                return found
        return None

    spec = find(model.schema)
    if spec is None or not isinstance(spec.get("datatype"), list):
        raise KeyError(f"{type(model).__name__} has no table {attribute!r} in its schema")
    return [column["name"] for column in spec["datatype"]]
