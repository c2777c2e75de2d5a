"""Where the libraries' APIs differ between the supported jwst releases, in one place.

Each supported release (:mod:`appliance.releases`) runs the appliance's own code
with the dependencies of its own time.  Where an API changed between those
versions, the difference is handled here, by asking for the feature rather than
comparing version numbers, and nowhere else.

- photutils 3.0 renamed ``SourceCatalog`` properties: ``xcentroid_win`` →
  ``x_centroid_win``, ``segment_fluxerr`` → ``segment_flux_err``,
  ``kron_fluxerr`` → ``kron_flux_err`` (jwst 2.0.1 and 1.20.0 lock photutils 2.3).
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
