"""Each example's README command runs as written, against the examples' service (AWS_ENDPOINT_URL),
from the repository's root, with this interpreter in place of `.venv/bin/python`."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.conftest import LiveServer

HERE = Path(__file__).parent
EXAMPLES = sorted(p.parent.name for p in HERE.glob("*/README.md"))


def readme_command(example: str) -> list[str]:
    """The one command of the example's README (its first ```sh block)."""
    block = re.search(r"```sh\n(.*?)\n```", (HERE / example / "README.md").read_text(), re.S)
    assert block, f"{example}/README.md has no sh block"
    argv = shlex.split(block.group(1).strip())
    assert argv[0] == ".venv/bin/python", argv
    return [sys.executable, *argv[1:]]


def test_every_example_is_here() -> None:
    assert EXAMPLES == ["cache_aside", "global_reads", "leaderboard", "memcached_sharding", "sessions",
                        "valkey_limits_pubsub", "write_through"]


@pytest.mark.parametrize("example", EXAMPLES)
def test_readme_command(service: LiveServer, example: str) -> None:
    done = subprocess.run(readme_command(example), cwd=HERE.parent, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
