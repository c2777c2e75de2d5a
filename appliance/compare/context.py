"""What changed around the products: recipe, step parameters, packages, CRDS context and references, statuses, inputs."""

from __future__ import annotations

import json
from collections import defaultdict

from appliance.compare.model import Change
from appliance.graph import flatten_params
from appliance.manifest import ImageRecord, Manifest
from appliance.parameters import changed_parameters

def context_changes(base: Manifest, new: Manifest, pairs) -> list[Change]:
    """What changed around the products: recipe, parameters, environment, references, statuses, inputs."""
    out: list[Change] = []
    if base.recipe_sha256 != new.recipe_sha256:
        out.append(Change("recipe", f"recipe text changed (sha256 {base.recipe_sha256[:12]}… → "
                                    f"{new.recipe_sha256[:12]}…)"))
    out += _parameter_changes(base, new)
    out += _effective_parameter_changes(base, new)
    eb, en = base.environment, new.environment
    for key in ("crds_context", "crds_mode", "use_step_pars"):
        if getattr(eb, key) != getattr(en, key):
            out.append(Change("CRDS", f"{key}: {getattr(eb, key)} → {getattr(en, key)}"))
    if eb.python_version != en.python_version:
        out.append(Change("environment", f"Python {eb.python_version} → {en.python_version}"))
    if eb.platform != en.platform:
        out.append(Change("environment", f"platform {eb.platform} → {en.platform}"))
    ib, inn = eb.image or ImageRecord(), en.image or ImageRecord()
    if (ib.id, ib.digest) != (inn.id, inn.digest):
        out.append(Change("environment", f"container image {_image(eb.image)} → {_image(en.image)}"))
    out += _dict_changes("packages", eb.packages, en.packages)
    out += _dict_changes("CRDS reference files", eb.crds_references, en.crds_references, short=True)
    if base.digest_format != new.digest_format:
        out.append(Change("content digest", f"format {base.digest_format} → {new.digest_format}: "
                                            f"every product compared file by file"))
    out += _per_product_changes("reference files per product", "crds_refs", pairs)
    out += _per_product_changes("step statuses", "step_status", pairs)
    out += _input_changes(base, new)
    return out


def _image(info: ImageRecord | None) -> str:
    if info is None:
        return "none"
    return str(info.digest or info.id or "unknown")[:19]


def _dict_changes(section: str, a: dict, b: dict, short: bool = False) -> list[Change]:
    out = []
    fmt = (lambda v: str(v)[:12] + "…") if short else str
    for key in sorted(set(a) | set(b)):
        if key not in b:
            out.append(Change(section, f"{key} {fmt(a[key])} removed"))
        elif key not in a:
            out.append(Change(section, f"{key} {fmt(b[key])} added"))
        elif a[key] != b[key]:
            out.append(Change(section, f"{key} {fmt(a[key])} → {fmt(b[key])}"))
    return out


def _parameter_changes(base: Manifest, new: Manifest) -> list[Change]:
    tb = {t.id: t for t in base.tasks}
    tn = {t.id: t for t in new.tasks}
    grouped: dict[tuple, list[str]] = defaultdict(list)
    for task_id in [t for t in tb if t in tn]:
        fa, fb = flatten_params(tb[task_id].params), flatten_params(tn[task_id].params)
        kind = tn[task_id].kind or task_id.partition(":")[0]
        for key in sorted(set(fa) | set(fb)):
            if key == "product_name":
                continue
            va, vb = fa.get(key, _DEFAULT), fb.get(key, _DEFAULT)
            if va != vb:
                grouped[(kind, key, _show(va), _show(vb))].append(task_id)
    return _grouped_by_tasks("step parameters", grouped)


def _effective_parameter_changes(base: Manifest, new: Manifest) -> list[Change]:
    """The parameters the steps actually ran with (defaults, ``pars-*``, recipe) that differ, per stage:
    with one recipe on two jwst releases, these are the defaults that changed between them."""
    tb = {t.id: t for t in base.tasks if t.effective_parameters}
    grouped: dict[tuple, list[str]] = defaultdict(list)
    for task in new.tasks:
        if task.effective_parameters and task.id in tb:
            kind = task.kind or task.id.partition(":")[0]
            for name, va, vb in changed_parameters(tb[task.id].effective_parameters, task.effective_parameters,
                                                   missing=_ABSENT):
                grouped[(kind, name, _show(va), _show(vb))].append(task.id)
    return _grouped_by_tasks("effective parameters", grouped)


def _grouped_by_tasks(section: str, grouped: dict[tuple, list[str]]) -> list[Change]:
    """One change per (task kind, parameter, before, after), naming how many tasks it hit."""
    return [Change(section, f"{kind} {name}: {va} → {vb} ({len(ids)} {kind} task{'s' if len(ids) != 1 else ''})")
            for (kind, name, va, vb), ids in grouped.items()]


class _Default:
    def __repr__(self) -> str:
        return "(default)"


_DEFAULT = _Default()


class _Absent:
    def __repr__(self) -> str:
        return "(no such parameter)"


_ABSENT = _Absent()


def _show(value) -> str:
    if value is _DEFAULT or value is _ABSENT:
        return repr(value)
    return json.dumps(value) if not isinstance(value, str) else repr(value)


def _per_product_changes(section: str, key: str, pairs) -> list[Change]:
    grouped: dict[tuple, int] = defaultdict(int)
    for _, b, n in pairs:
        if b is None or n is None:
            continue
        a_map, b_map = getattr(b, key), getattr(n, key)
        for k in sorted(set(a_map) | set(b_map)):
            if a_map.get(k) != b_map.get(k):
                grouped[(k, a_map.get(k, "(none)"), b_map.get(k, "(none)"))] += 1
    return [Change(section, f"{k}: {va} → {vb} in {count} product{'s' if count != 1 else ''}")
            for (k, va, vb), count in grouped.items()]


def _input_changes(base: Manifest, new: Manifest) -> list[Change]:
    ia = {i.name: i for i in base.inputs}
    ib = {i.name: i for i in new.inputs}
    out = []
    for name in sorted(set(ia) | set(ib)):
        if name not in ib:
            out.append(Change("inputs", f"{name} only in the baseline"))
        elif name not in ia:
            out.append(Change("inputs", f"{name} only in the new run"))
        elif ia[name].sha256 != ib[name].sha256:
            out.append(Change("inputs", f"{name}: sha256 {ia[name].sha256[:12]}… → {ib[name].sha256[:12]}…"))
        elif ia[name].origin != ib[name].origin:
            out.append(Change("inputs", f"{name}: same bytes from another origin ({ib[name].origin})"))
    return out
