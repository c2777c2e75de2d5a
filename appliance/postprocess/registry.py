"""The registered post-processing operations: the only code a recipe's ``[[postprocess]]`` can run.

One :class:`Operation` record per operation says everything about it: what
it does, reads and writes, its parameters (type, range, default), which
function of :mod:`appliance.postprocess.planner` turns it into tasks, and
which module of this package runs them.  This module imports nothing else of
the appliance: the recipe parser checks recipes against it before jwst, the
planner or any operation's libraries are loaded.  ``docs/postprocess.md``
documents the operations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

@dataclass(frozen=True)
class Param:
    """One parameter: its TOML type, its range or choices, and its default.

    ``kind`` is ``integer``, ``float``, ``boolean``, ``string`` or ``choice``
    (a string from ``choices``).  A default of ``None`` means "decided by the
    plan" (documented per parameter).
    """

    kind: str
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    exclusive_min: bool = False
    choices: tuple[str, ...] = ()
    pattern: str | None = None  # a regular expression a string must match
    pattern_hint: str = ""

    def expected(self) -> str:
        """What a valid value is, as the tail of 'expected ...'."""
        if self.kind == "choice":
            return "one of " + ", ".join(f'"{c}"' for c in self.choices)
        if self.kind == "string":
            return "a string" + (f" {self.pattern_hint}" if self.pattern_hint else "")
        noun = {"integer": "an integer", "float": "a number", "boolean": "a boolean"}[self.kind]
        if self.min is not None and self.max is not None:
            return f"{noun} between {_num(self.min)} and {_num(self.max)}"
        if self.min is not None:
            return f"{noun} {'>' if self.exclusive_min else '≥'} {_num(self.min)}"
        return noun

    def accepts(self, value: Any) -> bool:
        """Strictly by TOML type, as for step parameters: no ``"3"`` for 3, no ``1`` for true."""
        if isinstance(value, bool):
            return self.kind == "boolean"
        if self.kind == "boolean":
            return False
        if self.kind == "integer":
            ok = isinstance(value, int)
        elif self.kind == "float":
            ok = isinstance(value, (int, float)) and value == value  # no nan
        elif self.kind == "choice":
            return isinstance(value, str) and value in self.choices
        else:
            return isinstance(value, str) and bool(value.strip()) and (
                self.pattern is None or re.fullmatch(self.pattern, value) is not None)
        if not ok:
            return False
        if self.min is not None and (value <= self.min if self.exclusive_min else value < self.min):
            return False
        return self.max is None or value <= self.max


@dataclass(frozen=True)
class Operation:
    """A registered operation: what it does, reads and writes, and its parameters."""

    name: str
    summary: str
    reads: str
    writes: str
    params: Mapping[str, Param] = field(default_factory=dict)
    planner: str = ""  # the function of appliance.postprocess.planner that makes its tasks
    runner: str = ""  # the module of appliance.postprocess whose run(task, workdir) runs one


_INPUT_MOSAIC = Param("choice", None, 'the image to use: "background" (the background-subtracted mosaic, the '
                      'default when the recipe has a background operation on the mosaics) or "i2d" (the stage-3 '
                      'mosaic as it is)', choices=("background", "i2d"))

REGISTRY: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation(
            "background",
            "photutils Background2D: a smooth 2-D background, subtracted",
            "stage-3 mosaics (stage3/<product>_i2d.fits), or stage-2 cal files with input = \"cal\"",
            "postprocess/<name>_bsub.fits (background-subtracted image), postprocess/<name>_bkg.fits (model, rms, mask)",
            {
                "box_size": Param("integer", 32, "box side in pixels over which the background is estimated", min=4, max=4096),
                "filter_size": Param("integer", 3, "median-filter size in boxes applied to the low-resolution map", min=1, max=15),
                "sigma": Param("float", 3.0, "sigma-clipping threshold for the per-box statistics", min=0, exclusive_min=True),
                "mask_sources": Param("boolean", True, "detect sources on a first estimate and mask them (dilated) before the final one"),
                "input": Param("choice", "i2d", '"i2d" (stage-3 mosaics) or "cal" (stage-2 cal files)', choices=("i2d", "cal")),
            },
            planner="plan_background", runner="background",
        ),
        Operation(
            "catalog",
            "photutils segmentation + aperture photometry; fluxes in Jy (for MJy/sr images) and AB magnitudes",
            "the background-subtracted mosaics (or the stage-3 mosaics)",
            "postprocess/<product>_phot.ecsv",
            {
                "threshold": Param("float", 3.0, "detection threshold in units of the background rms", min=0, exclusive_min=True),
                "npixels": Param("integer", 10, "minimum connected pixels of a source", min=1),
                "deblend": Param("boolean", True, "deblend overlapping sources (photutils deblend_sources)"),
                "input": _INPUT_MOSAIC,
            },
            planner="plan_catalog", runner="catalog",
        ),
        Operation(
            "preview",
            "PNG previews with WCS axes and a colour bar; a three-colour composite for three filters",
            "the background-subtracted mosaics (or the stage-3 mosaics)",
            "postprocess/<product>_preview.png; postprocess/<prefix>_<f1>-<f2>-<f3>_rgb.png",
            {
                "stretch": Param("choice", "asinh", "astropy.visualization stretch", choices=("asinh", "log", "sqrt", "linear")),
                "composite": Param("boolean", True, "also make a three-colour composite when the recipe has exactly three filters"),
                "input": _INPUT_MOSAIC,
            },
            planner="plan_preview", runner="preview",
        ),
        Operation(
            "astrometric_catalog",
            "a custom absolute reference catalog (RA, DEC) for tweakreg's abs_refcat in a second image3 pass",
            "one filter's mosaic, or a user table (ECSV or FITS with RA/DEC or sky_centroid columns)",
            "postprocess/<product>_refcat.ecsv (or postprocess/<table>_refcat.ecsv)",
            {
                "filter": Param("string", None, "the filter whose mosaic gives the catalog (default: the shortest wavelength)",
                                pattern=r"[A-Za-z0-9]+", pattern_hint='such as "F770W"'),
                "min_snr": Param("float", 10.0, "keep point-like sources with aperture S/N at least this", min=0, exclusive_min=True),
                "table": Param("string", None, "an ECSV or FITS table of RA/DEC, relative to the recipe's directory",
                               pattern=r".+\.(ecsv|fits|fit|fits\.gz)", pattern_hint="naming an .ecsv or .fits file"),
            },
            planner="plan_astrometric", runner="astrometry",
        ),
        Operation(
            "report",
            "one self-contained HTML page: recipe, environment, step statuses, previews, catalog sizes",
            "every other product of the run",
            "postprocess/report.html",
            planner="plan_report", runner="report",
        ),
    )
}

#: Registered operation name -> the parameter names it accepts (besides ``op``).
OPERATIONS: dict[str, frozenset[str]] = {name: frozenset(op.params) for name, op in REGISTRY.items()}


def registered_names() -> list[str]:
    """The registered operation names, sorted, for error messages and docs."""
    return sorted(OPERATIONS)


def check_parameter(op: str, name: str, value: Any) -> str | None:
    """``None`` if ``value`` is valid for ``op.name``, else the 'expected ...' phrase."""
    spec = REGISTRY[op].params[name]
    return None if spec.accepts(value) else "expected " + spec.expected()


def resolved_params(op: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The given parameters over the defaults; floats as floats."""
    out = {}
    for name, spec in REGISTRY[op].params.items():
        value = given.get(name, spec.default)
        if spec.kind == "float" and value is not None:
            value = float(value)
        out[name] = value
    return out


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
