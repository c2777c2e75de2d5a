"""Manifest against manifest, for CI regression checks (``run.py compare BASELINE NEW``).

Products are paired by their *role* -- the stage that wrote them, the exposure
(or, for image3, the filter) they belong to, and their suffix -- not by file
name alone, so a renamed or moved product still meets its counterpart.  For
each pair:

* equal content digests (same digest format): **identical**;
* otherwise the files are compared the way jwst's own regression tests compare
  them: FITS with jwst's ``STFITSDiff`` (astropy's ``FITSDiff`` plus
  per-extension tolerances), ``rtol``/``atol`` 1e-5/1e-7 unless told
  otherwise, the ``ASDF`` HDU and the volatile keywords ignored; ECSV catalogs
  column by column with the same tolerances.  The verdict is **within
  tolerance** or **different**, with the largest absolute and relative
  differences and the number of values beyond tolerance per extension or
  column.  Other kinds (association ``.json`` files, previews) have no
  tolerance: a different digest is a difference.

Around the products it reports what changed in the recipe, the step
parameters of each task, package versions, the CRDS context and reference
files (per run and per product), step statuses, inputs, and the products that
appeared or disappeared.

Exit status: 0 when every product is identical or within tolerance and none
appeared or disappeared, 1 otherwise, 2 for a bad request (an unreadable or
tampered manifest, a product file that is needed but missing).

The package: :mod:`.model` (tolerances, statuses, results), :mod:`.roles`
(pairing), :mod:`.diffs` (FITS and catalog comparisons), :mod:`.context`
(changes around the products), :mod:`.render` (text, Markdown, JUnit).
"""

from __future__ import annotations

from pathlib import Path

from appliance.compare.context import context_changes
from appliance.compare.diffs import compare_catalogs, compare_files, compare_fits, ignore_keywords, tolerance_kind
from appliance.compare.model import (
    APPEARED,
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    DIFFERENT,
    DISAPPEARED,
    FAILING,
    IDENTICAL,
    STATUS_ORDER,
    WITHIN,
    Change,
    Comparison,
    Finding,
    ProductResult,
    Tolerances,
    parse_extension_tolerances,
)
from appliance.compare.render import render_junit, render_markdown, render_text
from appliance.compare.roles import ordered_roles, product_roles, role_label
from appliance.errors import UserError
from appliance.graph import flatten_params
from appliance.manifest import Manifest, ProductRecord, load_manifest, manifest_path
from appliance.safety import inside, printable

def compare(baseline, new, *, tolerances: Tolerances | None = None, digests_only: bool = False) -> Comparison:
    """Compare two manifests (paths to ``manifest.json`` or the workdirs holding them).

    Everything that can make the request impossible -- unreadable or tampered
    manifests, product files that are needed but missing or altered -- is
    checked before the first file comparison, and raised as a one-line
    :class:`UserError`.
    """
    tolerances = tolerances or Tolerances()
    base_path, new_path = manifest_path(baseline), manifest_path(new)
    base_m = _labelled(load_manifest, base_path, "baseline")
    new_m = _labelled(load_manifest, new_path, "new")

    same_format = base_m.digest_format == new_m.digest_format
    base_roles, new_roles = product_roles(base_m), product_roles(new_m)
    pairs = [(role, base_roles.get(role), new_roles.get(role)) for role in ordered_roles(base_roles, new_roles)]

    to_open = [(role, b, n) for role, b, n in pairs
               if b is not None and n is not None and not (same_format and b.content_digest == n.content_digest)]
    if digests_only:
        notes = ["digests only: only the manifests were compared; no product file was read"]
    else:
        notes = [note for note in (_verify_side(base_path, base_m, "baseline"), _verify_side(new_path, new_m, "new"))
                 if note]
        for _, b, n in to_open:
            if tolerance_kind(b.path) or tolerance_kind(n.path):
                _check_file(base_path.parent, b, "baseline", base_path)
                _check_file(new_path.parent, n, "new", new_path)

    results = []
    for role, b, n in pairs:
        label = role_label(role)
        if b is None:
            results.append(ProductResult(role, label, APPEARED, None, n, note=f"new product {n.path}"))
        elif n is None:
            results.append(ProductResult(role, label, DISAPPEARED, b, None,
                                         note=f"{b.path} is in the baseline but not in the new run"))
        elif same_format and b.content_digest == n.content_digest:
            results.append(ProductResult(role, label, IDENTICAL, b, n))
        else:
            results.append(compare_files(role, label, b, n, base_path.parent, new_path.parent, tolerances,
                                          digests_only, same_format))
    changes = context_changes(base_m, new_m, pairs)
    return Comparison(base_path, new_path, base_m, new_m, tolerances, digests_only, results, changes, notes)


def _verify_side(path: Path, manifest: Manifest, side: str) -> str | None:
    """Where a run's product files are beside its manifest, each must still be the file it records.

    Equal content digests prove nothing about files changed after the run, so
    every product present is re-hashed (a changed, missing or out-linked one is
    a one-line UserError).  A manifest kept alone is compared as it is, and the
    returned note says so.
    """
    root = path.parent
    products = manifest.products
    if products and not any((root / p.path).exists() for p in products):
        return f"{side}: no product file is beside {printable(path)}; only its manifest was compared"
    for product in products:
        _check_file(root, product, side, path)
    return None


def _labelled(func, path: Path, side: str):
    try:
        return func(path)
    except UserError as exc:
        raise UserError(f"{side}: {exc}") from None


def _check_file(root: Path, record: ProductRecord, side: str, manifest: Path) -> None:
    from appliance.files import file_sha256

    target = root / record.path
    shown = printable(target)
    if not target.is_file():
        raise UserError(f"{side}: {shown}: missing, but the manifest lists it (keep the products beside the "
                        f"manifest, or pass --digests-only to compare the manifests alone)")
    if not inside(target, root):
        raise UserError(f"{side}: {shown}: a symbolic link out of the run's directory; not compared")
    size = record.size
    if (size is not None and target.stat().st_size != size) or file_sha256(target) != record.sha256.lower():
        raise UserError(f"{side}: {shown}: does not match the sha256 its manifest records "
                        f"(changed after the run; `run.py verify {printable(manifest)}` lists every such file)")


__all__ = [
    "APPEARED", "DEFAULT_ATOL", "DEFAULT_RTOL", "DIFFERENT", "DISAPPEARED", "FAILING", "IDENTICAL", "STATUS_ORDER",
    "WITHIN", "Change", "Comparison", "Finding", "ProductResult", "Tolerances", "compare", "compare_catalogs",
    "compare_fits", "context_changes", "flatten_params", "ignore_keywords", "parse_extension_tolerances",
    "product_roles", "render_junit", "render_markdown", "render_text", "role_label",
]
