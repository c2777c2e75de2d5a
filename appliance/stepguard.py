"""The step-status guard: a step that ended ``SKIPPED`` (or ``FAILED``) though nothing asked it to.

jwst steps may decide to skip themselves (too few sources for tweakreg, a
condition added in a new release), and the only trace is an ``S_*`` keyword
of the product and a line in the log.  After each stage the guard compares
every step's status in the stage's main product with what was asked:

* asked to skip: its effective ``skip`` is true (the step's default, a CRDS
  ``pars-*`` file or the recipe) — expected;
* not applicable: CRDS gives ``N/A`` for one of the step's reference types
  (the context says the step does not apply to this mode) — expected;
* otherwise a ``SKIPPED`` status is *unexpected*: reported with the step's
  own log line saying why.

``FAILED`` is what jwst 3.0 records when a step ran but could not do its work
(tweakreg with a single exposure) while the stage goes on: always unexpected.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import cache

SKIPPED = "SKIPPED"
FAILED = "FAILED"

#: Steps whose ``meta.cal_step`` attribute is not their class alias (jwst's own choice of names).
CAL_STEP_ATTRIBUTE = {"dark_current": "dark_sub"}

_NOT_APPLICABLE = re.compile(r"Prefetch for (\w+) reference file is 'N/A'")


@dataclass(frozen=True)
class Skip:
    """A step that ended SKIPPED or FAILED: which, its status keyword, and why (its log line, or what made
    it expected)."""

    step: str
    keyword: str
    expected: bool
    why: str
    status: str = SKIPPED

    def as_dict(self) -> dict:
        return asdict(self)


@cache
def status_keywords() -> dict[str, str]:
    """``meta.cal_step`` attribute -> its FITS keyword (``dark_sub`` -> ``S_DARK``), from the datamodels schema
    (read once per process: a worker checks every stage task it runs against it)."""
    from stdatamodels.jwst.datamodels import ImageModel

    with ImageModel() as model:
        cal_step = model.schema["properties"]["meta"]["properties"]["cal_step"]["properties"]
    return {name: spec["fits_keyword"] for name, spec in cal_step.items() if "fits_keyword" in spec}


def not_applicable_types(log_text: str) -> set[str]:
    """Reference types CRDS gave as N/A for this product, from the pipeline's prefetch lines in its log."""
    return {m.group(1).lower() for m in _NOT_APPLICABLE.finditer(log_text)}


def reason_in_log(log_text: str, step: str) -> str:
    """The step's own explanation: its last warning, else its last line that speaks of skipping."""
    lines, inside = [], False
    for line in log_text.splitlines():
        if f" - INFO - Step {step} running" in line:
            inside, lines = True, []
        elif f" - INFO - Step {step} done" in line:
            inside = False
        elif inside:
            lines.append(line)
    message = [line.split(" - ", 3)[-1] for line in lines]
    warnings = [m for m, line in zip(message, lines) if " - WARNING - " in line]
    if warnings:
        return warnings[-1]
    skipping = [n for n, m in enumerate(message) if "skip" in m.lower()]
    if not skipping:
        return ""
    n = skipping[-1]
    if len(message[n]) < 30 and n > 0:  # "Step will be skipped": the line before says why
        return f"{message[n - 1]}; {message[n]}"
    return message[n]


def check(steps: dict[str, dict], reference_types: dict[str, list[str]], attributes: dict[str, str],
          keywords: dict[str, str], statuses: dict[str, str], not_applicable: set[str], log_text: str) -> list[Skip]:
    """Every step of the stage whose status in the product is SKIPPED (expected or not) or FAILED.

    ``steps`` are the effective parameters by step, ``reference_types`` each
    step's reference types, ``attributes`` each step's ``meta.cal_step``
    attribute, ``keywords`` attribute -> FITS keyword, ``statuses`` the
    product's ``S_*`` values.
    """
    skips = []
    for step, params in steps.items():
        keyword = keywords.get(attributes.get(step, step))
        status = statuses.get(keyword)
        if keyword is None or status not in (SKIPPED, FAILED):
            continue
        if status == FAILED:
            skips.append(Skip(step, keyword, False, reason_in_log(log_text, step) or "the step failed", FAILED))
            continue
        if params.get("skip"):
            skips.append(Skip(step, keyword, True, "asked: skip = true"))
            continue
        absent = sorted(t for t in reference_types.get(step, []) if t.lower() in not_applicable)
        if absent:
            skips.append(Skip(step, keyword, True, f"not applicable: CRDS gives N/A for {', '.join(absent)}"))
        else:
            skips.append(Skip(step, keyword, False, reason_in_log(log_text, step) or "the step skipped itself"))
    return skips


def unexpected(skips: list[dict]) -> list[dict]:
    """The skips (as recorded) that nothing asked for."""
    return [s for s in skips if not s["expected"]]


def summary_lines(skips_by_task: dict[str, list[dict]]) -> list[str]:
    """One line per step and reason that nothing asked for, however many tasks it hit:
    ``tweakreg SKIPPED (S_TWKREG) in image3:F770W, image3:F1000W without being asked: <the step's reason>``."""
    tasks: dict[tuple[str, str, str], list[str]] = {}
    for task_id, skips in skips_by_task.items():
        for skip in unexpected(skips):
            key = (skip["step"], skip.get("status", SKIPPED), skip["keyword"], skip["why"])
            tasks.setdefault(key, []).append(task_id)
    lines = []
    for (step, status, keyword, why), ids in tasks.items():
        where = ", ".join(ids) if len(ids) <= 3 else f"{ids[0]} and {len(ids) - 1} more tasks"
        lines.append(f"{step} {status} ({keyword}) in {where} without being asked: {why}")
    return lines
