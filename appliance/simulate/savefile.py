"""Byte-reproducible writing of datamodels and plain ASDF trees.

stdatamodels stamps ``meta.date`` with the wall clock on every save; the simulation pins it so
that the same seed and parameters give identical files.
"""

from __future__ import annotations

import types
from contextlib import contextmanager
from pathlib import Path

from ..files import writing

FILE_DATE = "2024-01-01T00:00:00.000"  # the DATE every simulated file carries


@contextmanager
def sorted_extension_history():
    """Make asdf list ``history.extensions`` in a fixed order.

    asdf records the extensions a save used from a set, so their order follows
    the process's hash seed and two identical saves differ byte for byte.
    Sorting the list after asdf fills it (same entries, so the same length and
    block offsets) makes the files reproducible.
    """
    import asdf

    original = asdf.AsdfFile._update_extension_history

    def update_sorted(self, tree, serialization_context):
        original(self, tree, serialization_context)
        extensions = tree.get("history", {}).get("extensions")
        if extensions:
            extensions.sort(key=lambda e: (str(e.get("extension_uri", "")), str(e.get("extension_class", ""))))

    asdf.AsdfFile._update_extension_history = update_sorted
    try:
        yield
    finally:
        asdf.AsdfFile._update_extension_history = original


def save_model(model, path: Path) -> Path:
    """Save a datamodel (FITS or ASDF by suffix) with a fixed DATE, atomically."""
    cls_on_save = type(model).on_save

    def on_save(self, init=None):
        cls_on_save(self, init)
        self.meta.date = FILE_DATE
        self.meta.filename = path.name  # not the temporary name written to

    # An instance attribute shadows the class hook for this one save.
    object.__setattr__(model, "on_save", types.MethodType(on_save, model))
    try:
        with sorted_extension_history(), writing(path) as tmp:
            model.save(str(tmp))
    finally:
        object.__delattr__(model, "on_save")
    return path


def save_asdf_tree(tree: dict, path: Path) -> Path:
    """Write a plain ASDF tree (step-parameter files) atomically."""
    import asdf

    with sorted_extension_history(), writing(path) as tmp:
        asdf.AsdfFile(tree).write_to(tmp)
    return path
