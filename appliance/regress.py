"""``run.py regress RECIPE --release A --release B``: one recipe in two releases' images, one report.

"What does the new jwst release (or CRDS context) change in my products?"
Each side runs the recipe in its image (:mod:`appliance.launch`, into
``WORKDIR/<side>/``; a side whose workdir already holds a finished run of the
same recipe and image is reused task by task, as any run is), then the two
manifests are compared (:mod:`appliance.compare`) and the report says, in this
order: the jwst and CRDS versions on both sides, the effective step parameters
that changed (with one recipe, the defaults that changed between the
releases), the step statuses and the reference files that changed, and per
product a figure that means something (:mod:`appliance.compare.science`).

The recipe's ``[environment]`` names one release; the other side runs it
anyway (``--allow-env-mismatch``), which is the point.  Reports:
``regress.md``, ``regress.html`` and ``regress.xml`` (JUnit) in the workdir.
Exit 0 when every product is identical or within tolerance, 1 otherwise.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

from appliance.compare import compare
from appliance.compare.model import APPEARED, DIFFERENT, DISAPPEARED, IDENTICAL, WITHIN, Comparison, Tolerances
from appliance.compare.render import render_junit
from appliance.compare.science import product_stats
from appliance.errors import UserError, WorkFailed
from appliance.files import atomic_write
from appliance.safety import printable
from appliance.workdir import LOGS_DIR

#: The sections of the report, in reading order: (compare's change section, the report's heading).
SECTIONS = (
    ("effective parameters", "Effective step parameters that changed"),
    ("step statuses", "Step statuses that changed"),
    ("CRDS", "CRDS settings that changed"),
    ("CRDS reference files", "Reference files that changed (per run)"),
    ("reference files per product", "Reference files that changed (per product)"),
    ("packages", "Packages that changed"),
)

REPORTS = ("regress.md", "regress.html", "regress.xml")


@dataclass(frozen=True)
class Side:
    """One side of a regression: the image it runs in and its workdir."""

    label: str
    release: str | None
    image: str | None
    workdir: Path


def plan_sides(workdir: Path, releases: list[str], images: list[str]) -> list[Side]:
    """Two sides from ``--release`` and ``--image`` values (releases first), each with its own workdir."""
    from appliance.releases import get_release

    if len(releases) + len(images) != 2:
        raise UserError(f"regress: expected two sides (--release and/or --image, twice in all), "
                        f"got {len(releases) + len(images)}")
    sides = [Side(get_release(v).version, v, None, workdir / get_release(v).version) for v in releases]
    for tag in images:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,200}", tag):
            raise UserError(f"--image {printable(tag)}: expected an image name such as jwst-appliance:2.0.1")
        label = re.sub(r"[^A-Za-z0-9._-]+", "_", tag)
        sides.append(Side(label, None, tag, workdir / label))
    if sides[0].label == sides[1].label:
        raise UserError(f"regress: both sides are {sides[0].label}; name two different releases or images")
    return sides


def run_side(recipe: Path, side: Side, run_args: tuple[str, ...] = ()) -> None:
    """Run the recipe in the side's image; a failed run is a :class:`WorkFailed` naming the side."""
    from appliance.launch import RunOptions, run_recipe

    print(f"regress: running {recipe} in {side.image or 'the jwst ' + side.label + ' image'} -> {side.workdir}",
          flush=True)
    code = run_recipe(RunOptions(recipe=recipe, workdir=side.workdir, image=side.image, release=side.release,
                                 allow_env_mismatch=True, run_args=run_args))
    if code != 0:
        raise WorkFailed(f"regress: the run in {side.label} failed (exit {code}); its logs are in "
                         f"{side.workdir / LOGS_DIR}")


def science(comparison: Comparison) -> dict[tuple, str]:
    """role -> the science figures of each pair of products that are not identical (images and catalogs)."""
    out = {}
    for p in comparison.products:
        if p.status in (IDENTICAL, APPEARED, DISAPPEARED) or p.baseline is None or p.new is None:
            continue
        a = comparison.baseline_path.parent / p.baseline.path
        b = comparison.new_path.parent / p.new.path
        if a.is_file() and b.is_file():
            stats = product_stats(a, b, comparison.tolerances)
            if stats is not None:
                out[p.role] = stats.text()
    return out


def _side_rows(comparison: Comparison) -> list[tuple[str, str, str]]:
    eb, en = comparison.baseline.environment, comparison.new.environment
    rows = [("jwst", eb.jwst, en.jwst), ("CRDS context", eb.crds_context, en.crds_context)]
    for name in ("stpipe", "stcal", "stdatamodels", "crds", "astropy", "photutils", "numpy"):
        rows.append((name, eb.packages.get(name, "-"), en.packages.get(name, "-")))
    image = lambda e: (e.image.id or "")[:19] if e.image else "host venv"  # noqa: E731
    rows.append(("image", image(eb), image(en)))
    rows.append(("workdir", str(comparison.baseline_path.parent), str(comparison.new_path.parent)))
    return rows


def _blocks(comparison: Comparison, figures: dict[tuple, str], title: str):
    """The report as (kind, payload) blocks, rendered to Markdown and HTML alike."""
    eb, en = comparison.baseline.environment, comparison.new.environment
    verdict = {IDENTICAL: "identical", WITHIN: "within tolerance", DIFFERENT: "DIFFERENT"}[comparison.verdict]
    yield "h1", f"{title}: jwst {eb.jwst} ({eb.crds_context}) vs jwst {en.jwst} ({en.crds_context})"
    yield "p", (f"Result: {verdict}. Products: {len(comparison.products)} — {comparison.counts_line()}. "
                f"Tolerances: {comparison.tolerances.describe()}.")
    yield "table", (("", "baseline", "new"), _side_rows(comparison))
    groups: dict[str, list[str]] = {}
    for change in comparison.changes:
        groups.setdefault(change.section, []).append(change.text)
    for section, heading in SECTIONS:
        yield "h2", heading
        yield "list", groups.pop(section, None) or ["none"]
    for section, items in groups.items():
        yield "h2", section[:1].upper() + section[1:]
        yield "list", items
    yield "h2", "Products"
    rows = []
    for status in (DIFFERENT, DISAPPEARED, APPEARED, WITHIN):
        for p in comparison.products:
            if p.status == status:
                rows.append((p.label, status, figures.get(p.role) or p.summary()))
    identical = comparison.count(IDENTICAL)
    if identical:
        rows.append((f"{identical} more", IDENTICAL, "equal content digests"))
    yield "table", (("product", "result", "what differs"), rows)


def render_markdown(comparison: Comparison, figures: dict[tuple, str], title: str) -> str:
    esc = lambda t: printable(str(t)).replace("|", "\\|")  # noqa: E731
    out = []
    for kind, payload in _blocks(comparison, figures, title):
        if kind == "h1":
            out += [f"# {esc(payload)}", ""]
        elif kind == "h2":
            out += [f"## {esc(payload)}", ""]
        elif kind == "p":
            out += [esc(payload), ""]
        elif kind == "list":
            out += [f"- {esc(item)}" for item in payload] + [""]
        else:
            head, rows = payload
            out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows] + [""]
    return "\n".join(out)


def render_html(comparison: Comparison, figures: dict[tuple, str], title: str) -> str:
    esc = lambda t: html.escape(printable(str(t)))  # noqa: E731
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{esc(title)}</title>",
           "<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}</style></head><body>"]
    for kind, payload in _blocks(comparison, figures, title):
        if kind in ("h1", "h2", "p"):
            out.append(f"<{kind}>{esc(payload)}</{kind}>")
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in payload) + "</ul>")
        else:
            head, rows = payload
            out.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
                       + "</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def regress(recipe: Path, sides: list[Side], workdir: Path, tolerances: Tolerances,
            run_args: tuple[str, ...] = ()) -> Comparison:
    """Run both sides, compare them, write the three reports into ``workdir``; the comparison."""
    from appliance.recipe import load_recipe

    name = load_recipe(recipe).name  # a bad recipe is one line before any container starts
    for side in sides:
        run_side(recipe, side, run_args)
    comparison = compare(sides[0].workdir, sides[1].workdir, tolerances=tolerances)
    figures = science(comparison)
    workdir.mkdir(parents=True, exist_ok=True)
    title = f"Regression of recipe {name}"
    atomic_write(workdir / "regress.md", render_markdown(comparison, figures, title))
    atomic_write(workdir / "regress.html", render_html(comparison, figures, title))
    atomic_write(workdir / "regress.xml", render_junit(comparison))
    return comparison
