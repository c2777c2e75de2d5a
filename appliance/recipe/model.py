"""The recipe as frozen data, and what follows from it alone (its stages, its environment's mismatches).

A recipe is the human-edited statement of one reduction: which data, which
pipeline release and CRDS context it was written for, and which ``jwst``
step parameters differ from the defaults.  ``docs/recipes.md`` is the format
reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from appliance.errors import UserError
from appliance.pipelines import KIND_FIRST_STAGE, PRODUCT_KINDS, STAGE_ORDER
from appliance.recipe.messages import dotted

SCHEMA_VERSION = 1



INPUT_KINDS = ("simulate", "local", "mast")


#: File-name ending of a local input -> its product kind.  ``_uncal`` is
#: tested first so that it is never mistaken for ``_cal``.
LOCAL_SUFFIXES = {f"_{kind}.fits": kind for kind in PRODUCT_KINDS}


MAST_PRODUCTS = PRODUCT_KINDS


GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Environment:
    """The software the recipe was written for; a mismatch is reported, not fatal here."""

    jwst: str
    crds_context: str
    use_step_pars: bool = True


@dataclass(frozen=True)
class StageConfig:
    """One pipeline stage: skip it whole, or run it with these step parameters.

    ``steps`` is ``{step_name: {parameter: value}}`` exactly as stpipe's
    ``Pipeline.call(..., steps=...)`` takes it, kept as plain dicts so that it
    serialises with :func:`json.dumps`.
    """

    skip: bool = False
    steps: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class PostOp:
    """One ``[[postprocess]]`` table: a registered operation and its parameters."""

    op: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MastQuery:
    """Which public products to fetch from MAST (fetching lives in ``sources/mast.py``)."""

    program: str
    observation: str
    visit: str | None
    instrument: str
    filters: tuple[str, ...]
    product: str
    calib_level: int | None
    files: tuple[str, ...]
    cloud: bool = False  # read from MAST's public S3 mirror where it holds the file (sources/cloud.py)


@dataclass(frozen=True)
class LocalSpec:
    """One entry of ``inputs.local`` as written: a path or glob, optionally pinned by sha256."""

    path: str
    sha256: str | None = None

    @property
    def kind(self) -> str:
        """``uncal``, ``rate`` or ``cal``, from the file-name ending (checked at parse time)."""
        return local_kind(self.path)

    @property
    def is_glob(self) -> bool:
        return bool(GLOB_CHARS.search(self.path))


@dataclass(frozen=True)
class LocalFile:
    """A local input after glob expansion and checking: an absolute path."""

    path: Path
    sha256: str | None
    kind: str


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe.  ``text`` and ``sha256`` identify it exactly in the manifest."""

    path: Path
    text: str
    sha256: str
    schema: int
    name: str
    description: str
    environment: Environment
    simulate: Mapping[str, Any] | None
    local: tuple[LocalSpec, ...]
    mast: MastQuery | None
    stages: Mapping[str, StageConfig]
    postprocess: tuple[PostOp, ...]

    @property
    def input_kind(self) -> str:
        """``"simulate"``, ``"local"`` or ``"mast"``: the one ``[inputs]`` key given."""
        if self.simulate is not None:
            return "simulate"
        if self.mast is not None:
            return "mast"
        return "local"


class RecipeError(UserError):
    """A recipe is wrong.  ``where`` is a dotted key or a ``line L, column C`` position."""

    def __init__(self, path: Path | str, where: str | None, reason: str):
        self.path = Path(path)
        self.where = where
        self.reason = reason
        prefix = f"{path}: {where}: " if where else f"{path}: "
        super().__init__(prefix + reason)

    def __reduce__(self):  # survives pickling (process pools, dask)
        return type(self), (self.path, self.where, self.reason)


def first_stage(recipe: Recipe) -> str:
    """The stage that reads the recipe's inputs: simulated and uncal data start at detector1."""
    if recipe.input_kind == "simulate":
        return "detector1"
    if recipe.input_kind == "mast":
        return KIND_FIRST_STAGE[recipe.mast.product]
    return KIND_FIRST_STAGE[recipe.local[0].kind]


def stages_to_run(recipe: Recipe) -> tuple[str, ...]:
    """The contiguous run of stages from :func:`first_stage` to the last one not skipped.

    Products flow stage to stage, so a skipped stage between two that run is an error.
    """
    start = STAGE_ORDER.index(first_stage(recipe))
    wanted = [s for s in STAGE_ORDER[start:] if not recipe.stages[s].skip]
    if not wanted:
        return ()
    run = STAGE_ORDER[start : STAGE_ORDER.index(wanted[-1]) + 1]
    gap = [s for s in run if recipe.stages[s].skip]
    if gap:
        raise RecipeError(recipe.path, f"{gap[0]}.skip",
                          f"cannot skip a stage between the inputs' stage ({run[0]}) and {wanted[-1]}")
    return run


def environment_mismatches(recipe: Recipe, jwst_version: str, crds_context: str) -> list[str]:
    """How the installed software differs from what the recipe was written for.

    Returns one line per difference, e.g. ``"jwst: recipe 2.0.1, installed 3.0.0"``;
    an empty list when they agree.  Versions compare by PEP 440 (``3.0`` equals
    ``3.0.0``).
    """
    env = recipe.environment
    out = []
    if not same_version(env.jwst, jwst_version):
        out.append(f"jwst: recipe {env.jwst}, installed {jwst_version}")
    if env.crds_context != crds_context:
        out.append(f"crds_context: recipe {env.crds_context}, installed {crds_context}")
    return out


def local_kind(path: str) -> str | None:
    for suffix, kind in LOCAL_SUFFIXES.items():
        if path.endswith(suffix):
            return kind
    return None


def recipe_error(recipe: Recipe, key: tuple, reason: str) -> RecipeError:
    return RecipeError(recipe.path, dotted(key), reason)


def parse_version(text: str):
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:  # packaging ships with every jwst install; be lenient without it
        return text if re.fullmatch(r"[0-9]+(\.[0-9]+)*\S*", text, re.ASCII) else None
    try:
        return Version(text)
    except InvalidVersion:
        return None


def same_version(a: str, b: str) -> bool:
    va, vb = parse_version(a), parse_version(b)
    if va is None or vb is None:
        return a == b
    return va == vb
