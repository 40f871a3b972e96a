"""What a test needs from the machine (a node binary, saslpasswd2, Docker, Chromium): where it is
missing the test is skipped with the reason, except in CI (CI=true), where deploy/bootstrap.sh
installs all of it: there it fails, since a skip would hide a broken set-up."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["in_ci", "missing", "needs"]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(problem: str) -> NoReturn:
    """Skip the running test for `problem`; fail it in CI."""
    if in_ci():
        pytest.fail(f"this test must run in CI, but: {problem}", pytrace=False)
    pytest.skip(problem)


def needs(present: object, problem: str) -> pytest.MarkDecorator:
    """A mark for tests (or a module's `pytestmark`) that need something: `present` false skips
    them with `problem`, or fails them in CI (tests/conftest.py's pytest_runtest_setup acts on it)."""
    return pytest.mark.needs(present=bool(present), problem=problem)
