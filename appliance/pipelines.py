"""The one table of jwst's three imaging stages, and their order.

Each row says, for one stage: its ``jwst.pipeline`` class, its ``strun``
alias, the workdir directory it writes, the suffix of its main product, and
the product kind it reads (so an input of that kind starts the reduction
there).  Everything that needs one of these facts reads it here.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.workdir import STAGE_DIRS


@dataclass(frozen=True)
class Stage:
    name: str
    class_name: str  # in jwst.pipeline
    alias: str  # strun's name for it
    output_dir: str  # in the workdir
    product_suffix: str  # of the main product: <name>_<suffix>.fits
    reads: str  # the product kind it takes: uncal, rate or cal

    @property
    def class_path(self) -> str:
        return f"jwst.pipeline.{self.class_name}"

    def parameter_file(self, name: str) -> str:
        """Where a task of this stage writes the effective parameters it ran with (workdir-relative)."""
        return f"{self.output_dir}/{name}_{self.alias}.asdf"

    def pipeline_class(self):
        """The jwst Pipeline class (imports jwst: call it after the CRDS environment is set)."""
        import jwst.pipeline

        return getattr(jwst.pipeline, self.class_name)


STAGES = {s.name: s for s in (
    Stage("detector1", "Detector1Pipeline", "calwebb_detector1", STAGE_DIRS["detector1"], "rate", "uncal"),
    Stage("image2", "Image2Pipeline", "calwebb_image2", STAGE_DIRS["image2"], "cal", "rate"),
    Stage("image3", "Image3Pipeline", "calwebb_image3", STAGE_DIRS["image3"], "i2d", "cal"),
)}
#: The stages in the order products flow through them.
STAGE_ORDER = tuple(STAGES)
#: Product kind -> the first stage that reads it.
KIND_FIRST_STAGE = {s.reads: s.name for s in STAGES.values()}
#: The product kinds an input may be, in reduction order (uncal first, so that ``_uncal`` is never read as ``_cal``).
PRODUCT_KINDS = tuple(KIND_FIRST_STAGE)
