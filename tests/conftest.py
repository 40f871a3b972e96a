"""Hypothesis: random in development runs, where new examples find new bugs; the same examples
in CI (CI=true), so a submission is judged by its own changes, not by a lucky draw. And the
`needs` mark (tests/requires.py): a test whose requirement is missing skips, or fails in CI."""

from __future__ import annotations

import pytest
from hypothesis import settings

from tests.requires import in_ci, missing

settings.register_profile("ci", derandomize=True)
if in_ci():
    settings.load_profile("ci")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("needs"):
        if not mark.kwargs["present"]:
            missing(mark.kwargs["problem"])
