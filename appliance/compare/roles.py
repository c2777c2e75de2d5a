"""Pairing products by role (stage, exposure or filter, suffix), so a renamed or moved product meets its counterpart."""

from __future__ import annotations

from collections import defaultdict
from pathlib import PurePosixPath

from appliance.manifest import Manifest, ProductRecord

def product_roles(manifest: Manifest) -> dict[tuple, ProductRecord]:
    """Each product keyed by its role: (stage, exposure or task subject, suffix).

    The stage is the producing task's kind (``detector1``, ``image3``...); the
    subject is the exposure the file belongs to when its name starts with one
    (``jw02732002001_02101_00001_mirimage``), else the task's subject (the
    filter of an image3 task); the suffix is the last ``_`` part of the name
    with its extension (``rate.fits``, ``crf.fits``, ``i2d.fits``, ``asn.json``).
    Should two products of one manifest share a role, the file name is used for
    them instead of the suffix.
    """
    kinds = {t.id: t.kind for t in manifest.tasks}
    exposures = set(manifest.plan_exposures)
    for task_id, kind in kinds.items():
        if kind in ("detector1", "image2") and ":" in task_id:
            exposures.add(task_id.partition(":")[2])
    by_length = sorted(exposures, key=len, reverse=True)

    roles: dict[tuple, list[ProductRecord]] = defaultdict(list)
    for product in manifest.products:
        roles[_role(product, kinds, by_length)].append(product)
    out = {}
    for role, items in roles.items():
        if len(items) == 1:
            out[role] = items[0]
        else:
            for item in items:
                out[(role[0], role[1], PurePosixPath(item.path).name)] = item
    return out


def _role(product: ProductRecord, kinds: dict, exposures: list[str]) -> tuple:
    task = product.task
    prefix, _, subject = task.partition(":")
    stage = kinds.get(task) or prefix or "?"
    name = PurePosixPath(product.path).name
    stem, dot, ext = name.partition(".")
    exposure = next((e for e in exposures if stem.startswith(e + "_")), None)
    if exposure:
        subject, rest = exposure, stem[len(exposure) + 1:]
    else:
        subject, rest = subject or stem, stem
    suffix = rest.rpartition("_")[2] + dot + ext
    return (stage, subject, suffix)


def role_label(role: tuple) -> str:
    return " ".join(str(part) for part in role if part)


def ordered_roles(a: dict, b: dict) -> list[tuple]:
    order = {"detector1": 0, "image2": 1, "image3": 2}
    roles = list(a) + [r for r in b if r not in a]
    return sorted(roles, key=lambda r: (order.get(r[0], 3), r[0], r[1], r[2]))
