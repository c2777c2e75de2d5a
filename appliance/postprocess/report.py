"""``report``: one self-contained HTML page per run, readable offline.

It runs last and reads only the workdir: the recipe text (from its task
parameters), the step statuses from the products' ``S_*`` header keywords and the
stage tasks' records (which steps skipped, and why), the
background levels and catalog sizes from the post-processing products, and the
environment from this process (``importlib.metadata``, the CRDS variables).
The manifest is written after every task, so the page cannot cite it; it says
so and points to it.  Previews are embedded as data URIs (one file to mail or
archive); nothing is fetched.  No dates and no absolute paths are written, so
an unchanged run gives an unchanged page.
"""

from __future__ import annotations

import base64
import html
import os
import platform
import re
from pathlib import Path

from appliance.files import writing
from appliance.pipelines import STAGES
from appliance.postprocess.common import log
from appliance.workdir import POSTPROCESS_DIR, STAGE_DIRS

KEY_PACKAGES = ("jwst", "stcal", "stdatamodels", "stpipe", "crds", "photutils", "astropy", "numpy", "scipy", "matplotlib")
STATUS_CLASS = {"COMPLETE": "ok", "SKIPPED": "skip", "FAILED": "fail"}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{margin-bottom:0}.sub{color:#666;margin-top:.3em}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left}th{background:#f0f0f0}
td.ok{background:#e3f4e3}td.skip{background:#eee;color:#777}td.fail{background:#f8d0d0;font-weight:bold}
td.num{text-align:right;font-variant-numeric:tabular-nums}.empty{color:#b00;font-weight:bold}
.previews{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0;width:380px}figure img{width:100%;border:1px solid #ccc}
figcaption{font-size:12px;color:#444;word-break:break-all}pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:12px}
.scroll{overflow-x:auto}
"""
# After loading, each preview records the size the browser decoded (tests read it back with --dump-dom).
SCRIPT = ("window.addEventListener('load',function(){for(const i of document.images)"
          "{i.setAttribute('data-decoded',i.naturalWidth+'x'+i.naturalHeight)}});")


def _by_wavelength(path: Path) -> tuple:
    """F770W before F1000W before F1500W; composites last."""
    m = re.search(r"_f(\d+)[a-z]*_", path.name.lower() + "_")
    return (path.name.endswith("_rgb.png"), int(m.group(1)) if m else 0, path.name)


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _status_tables(workdir: Path) -> str:
    from astropy.io import fits

    parts = []
    for stage, suffix in ((s.output_dir, f"_{s.product_suffix}.fits") for s in STAGES.values()):
        rows = []
        for path in sorted((workdir / stage).glob(f"*{suffix}")):
            header = fits.getheader(path, 0)
            rows.append((path.name, {k: str(v).strip() for k, v in header.items() if k.startswith("S_") and isinstance(v, str)}))
        if not rows:
            continue
        keys = list(dict.fromkeys(k for _, status in rows for k in status))
        head = "".join(f"<th>{_e(k[2:])}</th>" for k in keys)
        body = []
        for name, status in rows:
            cells = "".join(f'<td class="{STATUS_CLASS.get(status.get(k, ""), "")}">{_e(status.get(k, ""))}</td>' for k in keys)
            body.append(f"<tr><td>{_e(name)}</td>{cells}</tr>")
        parts.append(f"<h3>{_e(stage)} ({len(rows)} products)</h3><div class=scroll><table><tr><th>product</th>{head}</tr>"
                     + "".join(body) + "</table></div>")
    return "".join(parts) or "<p>No stage products with step statuses in this workdir.</p>"


def _backgrounds(workdir: Path) -> str:
    from astropy.io import fits

    rows = []
    for path in sorted((workdir / POSTPROCESS_DIR).glob("*_bkg.fits"), key=_by_wavelength):
        h = fits.getheader(path, 0)
        unit = fits.getheader(path, "BKG").get("BUNIT", "")
        rows.append(f"<tr><td>{_e(h.get('PP_FROM', path.name))}</td><td>{_e(h.get('FILTER', ''))}</td>"
                    f"<td class=num>{h.get('PP_BKG', float('nan')):.5g}</td><td class=num>{h.get('PP_RMS', float('nan')):.4g}</td>"
                    f"<td class=num>{h.get('PP_SKYPL', 0.0):.4g}</td><td>{_e(unit)}</td></tr>")
    if not rows:
        return "<p>No background operation in this run.</p>"
    return ("<table><tr><th>image</th><th>filter</th><th>background (median)</th><th>rms</th>"
            "<th>sky removed by skymatch</th><th>unit</th></tr>" + "".join(rows) + "</table>")


def _catalogs(workdir: Path) -> str:
    from astropy.table import Table

    rows = []
    for folder, pattern, made_by in ((STAGE_DIRS["image3"], "*_cat.ecsv", "jwst source_catalog"),
                                     (POSTPROCESS_DIR, "*_phot.ecsv", "catalog (photutils)"),
                                     (POSTPROCESS_DIR, "*_refcat.ecsv", "astrometric_catalog")):
        for path in sorted((workdir / folder).glob(pattern), key=_by_wavelength):
            table = Table.read(path, format="ascii.ecsv")
            n = len(table)
            flag = f' <span class=empty>{_e(table.meta.get("warning", "EMPTY"))}</span>' if n == 0 else ""
            extra = f"aperture correction {table.meta['apcorr']:.4f}" if "apcorr" in table.meta and n else ""
            rows.append(f"<tr><td>{_e(folder)}/{_e(path.name)}</td><td>{_e(made_by)}</td><td class=num>{n}</td>"
                        f"<td>{extra}{flag}</td></tr>")
    if not rows:
        return "<p>No catalogs in this run.</p>"
    return "<table><tr><th>catalog</th><th>made by</th><th>sources</th><th>notes</th></tr>" + "".join(rows) + "</table>"


def _previews(workdir: Path) -> str:
    figures = []
    pngs = sorted((workdir / POSTPROCESS_DIR).glob("*.png"), key=_by_wavelength)
    for path in pngs:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        figures.append(f'<figure><img alt="{_e(path.name)}" src="data:image/png;base64,{data}">'
                       f"<figcaption>postprocess/{_e(path.name)}</figcaption></figure>")
    if not figures:
        return "<p>No previews in this run (add a <code>preview</code> operation).</p>"
    return '<div class="previews">' + "".join(figures) + "</div>"


def _environment(workdir: Path) -> str:
    from importlib.metadata import PackageNotFoundError, version

    from appliance import __version__
    from appliance.pin import read_image_info

    rows = [("appliance", __version__), ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
            ("platform", platform.platform())]
    for name in KEY_PACKAGES:
        try:
            rows.append((name, version(name)))
        except PackageNotFoundError:
            rows.append((name, "not installed"))
    rows.append(("CRDS context", os.environ.get("CRDS_CONTEXT") or _header_context(workdir) or "unknown"))
    rows.append(("CRDS mode", os.environ.get("CRDS_MODE", "unknown")))
    rows.append(("CRDS step-parameter references (pars-*)",
                 "not used" if os.environ.get("STPIPE_DISABLE_CRDS_STEPPARS", "").lower() in ("true", "1") else "used"))
    image = read_image_info()
    rows.append(("container image", (image.get("digest") or image.get("id") or "appliance image") if image else "none (not in a container)"))
    table = "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</table>"
    # the content digest leaves this region out (appliance.digest.VOLATILE_HTML_REGIONS): it describes where the
    # page was written, not what the reduction made
    return f"<!-- appliance:environment -->{table}<!-- /appliance:environment -->"


def _header_context(workdir: Path) -> str | None:
    from astropy.io import fits

    for path in sorted((workdir / STAGE_DIRS["image3"]).glob("*_i2d.fits")):
        return fits.getheader(path, 0).get("CRDS_CTX")
    return None


def _skipped_steps(workdir: Path, task_ids) -> str:
    """Each stage task's steps that ended SKIPPED, from its completion record (appliance.stepguard)."""
    from appliance import records

    rows = []
    for task_id in task_ids:
        for skip in (records.load(workdir, task_id) or {}).get("skipped_steps", []):
            verdict = "expected" if skip.get("expected") else "NOT ASKED FOR"
            rows.append(f'<tr><td>{_e(task_id)}</td><td>{_e(skip.get("step"))}</td><td>{_e(skip.get("keyword"))}</td>'
                        f'<td class="{"skip" if skip.get("expected") else "fail"}">{verdict}</td><td>{_e(skip.get("why"))}</td></tr>')
    if not rows:
        return "<p>No step ended SKIPPED.</p>"
    return ("<div class=scroll><table><tr><th>task</th><th>step</th><th>status keyword</th><th></th><th>why</th></tr>"
            + "".join(rows) + "</table></div>")


def render(workdir: Path, params: dict, task_ids=()) -> str:
    sections = [
        ("Previews", _previews(workdir)),
        ("Background", _backgrounds(workdir)),
        ("Catalogs", _catalogs(workdir)),
        ("Skipped steps", "<p>Steps that ended <code>SKIPPED</code>: asked to (<code>skip = true</code>), not applicable "
                          "(CRDS gives N/A for their reference), or neither, with the step's own log line.</p>"
                          + _skipped_steps(workdir, task_ids)),
        ("Step statuses per product", "<p>From each product's <code>S_*</code> header keywords.</p>" + _status_tables(workdir)),
        ("Recipe", f"<p><code>{_e(params['recipe_file'])}</code></p><pre>{_e(params['recipe_text'])}</pre>"),
        ("Environment", _environment(workdir)),
    ]
    body = "".join(f'<h2 id="{_e(t.split()[0].lower())}">{_e(t)}</h2>{content}' for t, content in sections)
    toc = " · ".join(f'<a href="#{_e(t.split()[0].lower())}">{_e(t)}</a>' for t, _ in sections)
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{_e(params['recipe_name'])}: reduction report</title><style>{CSS}</style><script>{SCRIPT}</script></head><body>"
        f"<h1>{_e(params['recipe_name'])}</h1><p class=sub>{_e(params.get('recipe_description', ''))}</p>"
        f"<p>{toc}</p>"
        "<p>Written by the last task of the run: every earlier task completed. The complete, checksummed record "
        "(every input, product, package and CRDS reference) is <code>manifest.json</code>, written after this page.</p>"
        f"{body}</body></html>\n"
    )


def run(task, workdir: Path) -> None:
    text = render(workdir, task.params, [d for d in task.deps if d.split(":")[0] in STAGES])
    target = workdir / task.outputs[0]
    with writing(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    log.info("wrote %s (%d bytes)", task.outputs[0], len(text))
