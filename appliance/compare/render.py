"""A comparison as terminal text, Markdown (a pull-request comment) and JUnit XML (a CI system)."""

from __future__ import annotations

import difflib
from collections import defaultdict
from pathlib import Path, PurePosixPath

from appliance.compare.diffs import ignore_keywords
from appliance.compare.model import APPEARED, DIFFERENT, DISAPPEARED, FAILING, IDENTICAL, IGNORE_HDUS, WITHIN, Comparison
from appliance.manifest import Manifest
from appliance.safety import printable

def _describe_run(manifest: Manifest, path: Path) -> str:
    name = PurePosixPath(manifest.recipe_path or "?").name
    env = manifest.environment
    return f"{path}  (recipe {name}, jwst {env.jwst}, {env.crds_context}, finished {manifest.finished})"


def _grouped_changes(result: Comparison) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for change in result.changes:
        groups[change.section].append(change.text)
    return groups


def render_text(result: Comparison, limit: int = 8) -> str:
    """The terminal summary."""
    lines = [f"baseline {_describe_run(result.baseline, result.baseline_path)}",
             f"new      {_describe_run(result.new, result.new_path)}",
             f"tolerances {result.tolerances.describe()}; ignored: HDU {', '.join(IGNORE_HDUS)}, "
             f"keywords {', '.join(ignore_keywords())}" + ("; digests only" if result.digests_only else ""),
             *(f"note     {note}" for note in result.notes),
             ""]
    tag = {DIFFERENT: "DIFFERENT", DISAPPEARED: "MISSING", APPEARED: "NEW", WITHIN: "WITHIN"}
    listed = [p for status in (DIFFERENT, DISAPPEARED, APPEARED, WITHIN) for p in result.products if p.status == status]
    if not listed:
        lines.append(f"all {len(result.products)} products identical (equal content digests)")
    for p in listed:
        lines.append(f"{tag[p.status]:<10}{p.label}   {p.path}")
        details = [p.note] if p.note else []
        details += [f.text for f in sorted(p.findings, key=lambda f: not f.beyond)]
        for text in details[:limit]:
            lines.append(f"          {text}")
        if len(details) > limit:
            lines.append(f"          ... {len(details) - limit} more")
    groups = _grouped_changes(result)
    if groups:
        lines += ["", "changes around the products:"]
        for section, items in groups.items():
            lines.append(f"  {section}:")
            for text in items[:limit * 2]:
                lines.append(f"    {text}")
            if len(items) > limit * 2:
                lines.append(f"    ... {len(items) - limit * 2} more")
    else:
        lines += ["", "no changes around the products (same recipe, parameters, packages, CRDS context and references)"]
    lines += ["", f"products: {len(result.products)} — {result.counts_line()}",
              f"result: {result.verdict.upper()}"]
    return "\n".join(printable(line) for line in lines)  # names from manifests cannot break or colour a line


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(result: Comparison) -> str:
    """A Markdown report, suitable for a pull-request comment."""
    verdict = {IDENTICAL: "identical", WITHIN: "within tolerance", DIFFERENT: "DIFFERENT"}[result.verdict]
    out = [f"## Regression comparison: {verdict}", "",
           f"- baseline: `{_describe_run(result.baseline, result.baseline_path)}`",
           f"- new: `{_describe_run(result.new, result.new_path)}`",
           f"- tolerances: {result.tolerances.describe()}; ignored: HDU `ASDF`, keywords "
           f"{', '.join(f'`{k}`' for k in ignore_keywords())}" + (" (digests only)" if result.digests_only else ""),
           *(f"- note: {_md_escape(note)}" for note in result.notes),
           "", "| result | products |", "|---|---:|"]
    for status in (IDENTICAL, WITHIN, DIFFERENT, DISAPPEARED, APPEARED):
        out.append(f"| {status} | {result.count(status)} |")
    groups = _grouped_changes(result)
    out += ["", "### What changed around the products", ""]
    if not groups:
        out.append("Nothing: same recipe, step parameters, packages, CRDS context and reference files.")
    for section, items in groups.items():
        if len(items) <= 10:
            out.append(f"- **{section}**: " + "; ".join(_md_escape(t) for t in items))
        else:
            out += [f"<details><summary><b>{section}</b>: {len(items)} changes</summary>", ""]
            out += [f"- {_md_escape(t)}" for t in items]
            out += ["", "</details>"]
    for status, title in ((DIFFERENT, "Different"), (DISAPPEARED, "Disappeared"), (APPEARED, "Appeared"),
                          (WITHIN, "Within tolerance")):
        items = [p for p in result.products if p.status == status]
        if not items:
            continue
        out += ["", f"### {title} ({len(items)})", "", "| product | path | what differs |", "|---|---|---|"]
        for p in items:
            out.append(f"| {_md_escape(p.label)} | `{p.path}` | {_md_escape(p.summary())} |")
        detailed = [p for p in items if len(p.findings) > 1]
        if detailed:
            out += ["", "<details><summary>per-extension details</summary>", ""]
            for p in detailed:
                out.append(f"**{_md_escape(p.label)}**")
                out += [f"- {_md_escape(f.text)}" for f in p.findings]
                out.append("")
            out.append("</details>")
    rb, rn = result.baseline, result.new
    if rb.recipe_sha256 != rn.recipe_sha256:
        diff = difflib.unified_diff(rb.recipe_text.splitlines(), rn.recipe_text.splitlines(),
                                    "baseline recipe", "new recipe", lineterm="")
        out += ["", "<details><summary>recipe diff</summary>", "", "```diff", *list(diff)[:200], "```", "",
                "</details>"]
    return "\n".join(printable(line) for line in out) + "\n"


def render_junit(result: Comparison) -> str:
    """A JUnit XML report: one test case per product role, failures for differences."""
    import xml.etree.ElementTree as ET

    failures = sum(1 for p in result.products if p.status in FAILING)
    suite = ET.Element("testsuite", name="appliance.compare", tests=str(len(result.products) + 1),
                       failures=str(failures), errors="0", skipped="0")
    props = ET.SubElement(suite, "properties")
    for name, value in (("baseline", str(result.baseline_path)), ("new", str(result.new_path)),
                        ("tolerances", result.tolerances.describe()), ("verdict", result.verdict)):
        ET.SubElement(props, "property", name=name, value=value)
    for p in result.products:
        case = ET.SubElement(suite, "testcase", classname=f"compare.{p.role[0]}", name=p.label)
        details = "\n".join(([p.note] if p.note else []) + [f.text for f in p.findings])
        if p.status in FAILING:
            failure = ET.SubElement(case, "failure", message=f"{p.status}: {p.summary() or p.path}"[:500],
                                    type=p.status.replace(" ", "_"))
            failure.text = f"{p.path}\n{details}"
        else:
            out = ET.SubElement(case, "system-out")
            out.text = f"{p.status}: {p.path}" + (f"\n{details}" if details else "")
    env = ET.SubElement(suite, "testcase", classname="compare.context", name="changes around the products")
    out = ET.SubElement(env, "system-out")
    out.text = "\n".join(f"{c.section}: {c.text}" for c in result.changes) or "no changes"
    ET.indent(suite)
    text = ET.tostring(suite, encoding="unicode")  # control characters are not allowed in XML 1.0
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + "\n".join(printable(line) for line in text.splitlines()) + "\n"
