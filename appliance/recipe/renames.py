"""Step and step-parameter names that jwst changed between releases: the one table ``upgrade`` and ``check`` read.

Each entry names the release that made the change and its line in jwst's
change log (CHANGES.rst), so a reader can check it.  Only changes that keep
the meaning (a new name for the same thing) belong here; a step rewritten with
new parameters (persistence in 3.0.0) is no rename, and ``check`` reports its
parameters as unknown, with the closest names.
"""

from __future__ import annotations

from dataclasses import dataclass

from packaging.version import InvalidVersion, Version


@dataclass(frozen=True)
class Rename:
    """``stage.steps.step[.parameter]`` became ``new_step[.new_parameter]`` in jwst ``release``."""

    release: str
    stage: str
    step: str
    parameter: str | None  # None: the step itself was renamed
    new_name: str  # the new step name, or the new parameter name
    source: str  # the change log entry

    def describe(self) -> str:
        old = f"{self.stage}.steps.{self.step}" + (f".{self.parameter}" if self.parameter else "")
        return f"{old} became {self.new_name} in jwst {self.release} ({self.source})"


RENAMES = (
    Rename("1.12.0", "detector1", "undersampling_correction", None, "charge_migration",
           "CHANGES.rst 1.12.0, charge_migration: step renamed from undersampling_correction, #7825 #7850"),
    Rename("2.0.0", "detector1", "emicorr", "user_supplied_reffile", "override_emicorr",
           "CHANGES.rst 2.0.0, emicorr: deprecate user_supplied_reffile, use override_emicorr, #10222"),
)


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def renames_between(old: str, new: str) -> list[Rename]:
    """The renames a recipe written for jwst ``old`` needs to run on jwst ``new`` (``old`` < release <= ``new``)."""
    a, b = _version(old), _version(new)
    if a is None or b is None:
        return []
    return [r for r in RENAMES if a < Version(r.release) <= b]


def rename_of(stage: str, step: str, parameter: str | None, installed: str) -> Rename | None:
    """The rename, made by ``installed`` or an earlier release, of this step (``parameter`` None) or parameter."""
    v = _version(installed)
    for r in RENAMES:
        if (r.stage, r.step, r.parameter) == (stage, step, parameter) and (v is None or Version(r.release) <= v):
            return r
    return None
