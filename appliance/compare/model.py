"""What a comparison is made of: tolerances, statuses, findings per product, changes around them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from appliance.errors import UserError
from appliance.manifest import Manifest, ProductRecord

#: jwst's regression-test tolerances (``rtol``, ``atol``).
DEFAULT_RTOL = 1e-5


DEFAULT_ATOL = 1e-7


#: HDUs the jwst regression tests never compare (the ASDF tree is checked by the content digest).
IGNORE_HDUS = ("ASDF",)


#: Keywords the jwst regression tests ignore: write times and software/context versions.
JWST_IGNORE_KEYWORDS = ("DATE", "CAL_VER", "CAL_VCS", "CRDS_VER", "CRDS_CTX", "NAXIS1", "TFORM*")


IDENTICAL = "identical"


WITHIN = "within tolerance"


DIFFERENT = "different"


DISAPPEARED = "disappeared"


APPEARED = "appeared"


STATUS_ORDER = (DIFFERENT, DISAPPEARED, APPEARED, WITHIN, IDENTICAL)


FAILING = frozenset({DIFFERENT, DISAPPEARED, APPEARED})


@dataclass(frozen=True)
class Tolerances:
    """Relative and absolute tolerances, with per-extension overrides as STFITSDiff takes them."""

    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    extensions: dict = field(default_factory=dict)  # EXTNAME (upper) / HDU index / HEADERS / PRIMARY -> (rtol, atol)

    def for_extension(self, name: str, index: int) -> tuple[float, float]:
        for key in (index, (name or "").upper()):
            if key in self.extensions:
                return self.extensions[key]
        return self.extensions.get("DEFAULT", (self.rtol, self.atol))

    def stfitsdiff(self) -> dict | None:
        if not self.extensions:
            return None
        return {k: {"rtol": r, "atol": a} for k, (r, a) in self.extensions.items()}

    def describe(self) -> str:
        text = f"rtol {self.rtol:g}, atol {self.atol:g}"
        if self.extensions:
            text += "; " + ", ".join(f"{k}: rtol {r:g}, atol {a:g}" for k, (r, a) in self.extensions.items())
        return text


@dataclass
class Finding:
    """One thing that differs inside a product: an extension's data, a header, a catalog column."""

    where: str  # "SCI", "PRIMARY header", "column flux", "HDUs"
    text: str  # one readable line
    beyond: bool  # beyond tolerance (makes the product different)
    count: int | None = None  # values beyond tolerance
    total: int | None = None
    max_abs: float | None = None
    max_rel: float | None = None


@dataclass
class ProductResult:
    role: tuple
    label: str
    status: str
    baseline: ProductRecord | None
    new: ProductRecord | None
    findings: list[Finding] = field(default_factory=list)
    note: str = ""

    @property
    def path(self) -> str:
        return (self.new or self.baseline).path

    def summary(self) -> str:
        """One line: what differs (the findings beyond tolerance first)."""
        if self.note:
            return self.note
        lines = [f.text for f in self.findings if f.beyond] or [f.text for f in self.findings]
        if not lines:
            return ""
        more = f" (+{len(lines) - 2} more)" if len(lines) > 2 else ""
        return "; ".join(lines[:2]) + more


@dataclass
class Change:
    """A change around the products, grouped: ``section`` is e.g. ``step parameters``."""

    section: str
    text: str


@dataclass
class Comparison:
    baseline_path: Path
    new_path: Path
    baseline: Manifest
    new: Manifest
    tolerances: Tolerances
    digests_only: bool
    products: list[ProductResult]
    changes: list[Change]
    notes: list[str] = field(default_factory=list)  # what was compared: manifests alone, or verified files too

    def count(self, status: str) -> int:
        return sum(1 for p in self.products if p.status == status)

    @property
    def failed(self) -> bool:
        return any(p.status in FAILING for p in self.products)

    @property
    def all_identical(self) -> bool:
        return all(p.status == IDENTICAL for p in self.products)

    @property
    def verdict(self) -> str:
        if self.failed:
            return DIFFERENT
        return IDENTICAL if self.all_identical else WITHIN

    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def counts_line(self) -> str:
        return ", ".join(f"{self.count(s)} {s}" for s in (IDENTICAL, WITHIN, DIFFERENT, DISAPPEARED, APPEARED))


def parse_extension_tolerances(items: list[str], rtol: float, atol: float) -> Tolerances:
    """``["ERR=1e-4,1e-6", "3=0.1"]`` -> :class:`Tolerances`; a bad item is a one-line UserError."""
    ext: dict = {}
    for item in items:
        name, eq, values = item.partition("=")
        name = name.strip()
        parts = [v.strip() for v in values.split(",")] if eq else []
        try:
            if not name or not 1 <= len(parts) <= 2:
                raise ValueError
            r = float(parts[0])
            a = float(parts[1]) if len(parts) == 2 else atol
            if not (r >= 0 and a >= 0 and math.isfinite(r) and math.isfinite(a)):
                raise ValueError
        except ValueError:
            raise UserError(f"--ext-tol {item}: expected EXT=RTOL[,ATOL] with numbers >= 0, e.g. ERR=1e-4,1e-6") from None
        key = int(name) if name.isdigit() else name.upper()
        ext[key] = (r, a)
    return Tolerances(rtol, atol, ext)
