"""The process runtime's kit for the engine tests on real processes (modules that run every
runtime's kit define their own parametrized `kit`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtimes import ProcessKit, kit_for


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[ProcessKit]:
    with kit_for("process", tmp_path) as made:
        assert isinstance(made, ProcessKit)
        yield made
