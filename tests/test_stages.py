"""The stage runner's own pieces: the collector's frozen heap and the stage log (the stages themselves run in
the end-to-end tests)."""

from __future__ import annotations

import gc
import logging
import weakref

import pytest

from appliance import stages


class Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self):
        self.me = self


@pytest.fixture()
def thawed():
    yield
    gc.unfreeze()


def test_what_a_task_makes_is_collected_as_before(thawed):
    stages.freeze_heap()
    made = Node()
    ref = weakref.ref(made)
    del made
    gc.collect()  # what stpipe does before every step
    assert ref() is None


def test_what_is_alive_when_a_task_starts_is_not_walked_and_is_freed_at_the_next_one(thawed):
    alive = Node()
    ref = weakref.ref(alive)
    stages.freeze_heap()
    assert gc.get_freeze_count() > 0
    del alive
    gc.collect()
    assert ref() is not None  # frozen: the steps' collections do not walk it
    stages.freeze_heap()  # the next task thaws, collects and freezes again
    assert ref() is None  # so memory does not grow from task to task


def test_the_stage_log_takes_the_pipeline_loggers_and_gives_them_back(tmp_path):
    logger = logging.getLogger("stpipe.step")
    before = (logging.getLogger("stpipe").handlers[:], logging.getLogger("stpipe").propagate)
    with stages.stage_log(tmp_path / "stage.log"):
        logger.info("Step jump running with args")
    assert "stpipe.step - INFO - Step jump running" in (tmp_path / "stage.log").read_text()
    assert (logging.getLogger("stpipe").handlers, logging.getLogger("stpipe").propagate) == before
