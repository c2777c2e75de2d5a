"""``run.py upgrade RECIPE --to-release V``: a recipe rewritten for another supported jwst release.

It renames the steps and step parameters jwst renamed between the recipe's
release and V (:data:`appliance.recipe.renames.RENAMES`), sets
``[environment] jwst`` to V and ``crds_context`` to V's build context (a
recipe on the synthetic context keeps it), and upgrades the recipe's
``schema`` along :data:`SCHEMA_UPGRADES` when a later schema exists.  The text
is edited line by line, so comments and layout stay; the result is parsed
again and must equal the intended change, or nothing is written.  The new
recipe is written beside the old one (``<name>.jwst-<V>.toml``), never over
it, nor over any existing file.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from appliance.errors import UserError
from appliance.files import atomic_write
from appliance.recipe import SCHEMA_VERSION, load_recipe, parse_recipe
from appliance.recipe.renames import Rename, renames_between
from appliance.releases import get_release

#: schema N -> the function that turns a schema-N recipe (as data) into schema N+1.  Schema 1 is the latest.
SCHEMA_UPGRADES: dict = {}

_SYNTHETIC_CONTEXT = "jwst_9000.pmap"
_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\s\"-]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"^(\s*)([A-Za-z0-9_.\"-]+?)(\s*=)")


def _table_path(header: str) -> tuple[str, ...]:
    return tuple(part.strip().strip('"') for part in header.split("."))


def _apply(data: dict, renames: list[Rename], jwst: str, context: str) -> dict:
    """The intended result, as data: what the rewritten text must parse to."""
    import copy

    out = copy.deepcopy(data)
    for r in renames:
        steps = out.get(r.stage, {}).get("steps", {})
        if r.step not in steps:
            continue
        if r.parameter is None:
            steps[r.new_name] = steps.pop(r.step)
        elif r.parameter in steps[r.step]:
            steps[r.step][r.new_name] = steps[r.step].pop(r.parameter)
    env = out.setdefault("environment", {})
    env["jwst"] = jwst
    env["crds_context"] = context
    return out


def _rewrite(text: str, renames: list[Rename], jwst: str, context: str) -> str:
    """The recipe's text with the renames and the new environment, edited line by line."""
    table: tuple[str, ...] = ()
    out = []
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("[["):  # an array of tables ([[postprocess]]): no renames there
            table = ("[[", line.strip())
            out.append(line)
            continue
        header = _HEADER.match(line)
        if header:
            table = _table_path(header.group(1))
            for r in renames:
                if r.parameter is None and table[:3] == (r.stage, "steps", r.step):
                    new = (r.stage, "steps", r.new_name, *table[3:])
                    line = line.replace(header.group(1), ".".join(new), 1)
                    table = new
            out.append(line)
            continue
        key = _KEY.match(line)
        if key:
            path = table + _table_path(key.group(2))
            for r in renames:
                if r.parameter is not None and path == (r.stage, "steps", r.step, r.parameter):
                    line = f"{key.group(1)}{'.'.join(_table_path(key.group(2))[:-1] + (r.new_name,))}" \
                           f"{line[key.end(2):]}"
            if table == ("environment",) and path[-1] in ("jwst", "crds_context"):
                value = jwst if path[-1] == "jwst" else context
                comment = re.search(r"\s+#.*$", line.rstrip("\n"))
                line = f'{key.group(1)}{key.group(2)}{key.group(3)} "{value}"{comment.group(0) if comment else ""}\n'
        out.append(line)
    return "".join(out)


def upgrade(recipe_path: Path, to_release: str) -> tuple[Path, list[str]]:
    """Write the recipe for ``to_release`` beside the old one; ``(new path, what changed)``."""
    release = get_release(to_release)
    recipe = load_recipe(recipe_path)
    if recipe.schema != SCHEMA_VERSION and recipe.schema not in SCHEMA_UPGRADES:
        raise UserError(f"{recipe.path}: schema {recipe.schema}: no upgrade path to schema {SCHEMA_VERSION}")
    old = recipe.environment
    context = old.crds_context if old.crds_context == _SYNTHETIC_CONTEXT else release.pin.crds_context
    renames = renames_between(old.jwst, release.version)
    text = _rewrite(recipe.text, renames, release.version, context)
    if tomllib.loads(text) != _apply(tomllib.loads(recipe.text), renames, release.version, context):
        raise UserError(f"{recipe.path}: cannot rewrite it line by line (inline tables or dotted keys where "
                        f"a rename applies); rename by hand: " + "; ".join(r.describe() for r in renames))
    changes = [r.describe() for r in renames
               if r.step in recipe.stages[r.stage].steps
               and (r.parameter is None or r.parameter in recipe.stages[r.stage].steps[r.step])]
    if old.jwst != release.version:
        changes.append(f"environment.jwst: {old.jwst} → {release.version}")
    if old.crds_context != context:
        changes.append(f"environment.crds_context: {old.crds_context} → {context} (jwst {release.version}'s build "
                       f"context)")
    target = recipe.path.with_name(f"{recipe.path.stem}.jwst-{release.version}.toml")
    if target.exists():
        raise UserError(f"{target}: exists; upgrade never overwrites a file (move it away first)")
    parse_recipe(text, target)  # the new recipe must be a valid recipe before it is written
    atomic_write(target, text)
    return target, changes
