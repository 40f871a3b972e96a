"""One freshly started service for all the examples' tests, with the api tests' machinery
(tests/api/conftest.py's running_server: its own data directory, loopback networks of its own,
every node stopped at the end). The examples find it as they would find AWS: AWS_ENDPOINT_URL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import LiveServer, running_server

# Apart from the api tests' networks (127.0.120-127.x), whose server may be running in the same session.
NODE_NETWORK, ENDPOINT_NETWORK = "127.0.140.0/24", "127.0.141.0/24"


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir: Path = tmp_path_factory.mktemp("elasticache-local-examples")
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                            "AWS_DEFAULT_REGION")}
    with running_server("process", data_dir, ELASTICACHE_LOCAL_NODE_NETWORK=NODE_NETWORK,
                        ELASTICACHE_LOCAL_ENDPOINT_NETWORK=ENDPOINT_NETWORK) as live:
        os.environ.update({"AWS_ENDPOINT_URL": live.url, "AWS_ACCESS_KEY_ID": "testing",
                           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
        try:
            yield live
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
