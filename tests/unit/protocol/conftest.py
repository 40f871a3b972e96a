from __future__ import annotations

import pytest

from controlplane.protocol.model import ApiModel


@pytest.fixture(scope="session")
def api() -> ApiModel:
    return ApiModel()
