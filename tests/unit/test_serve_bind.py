"""`serve` listens on loopback only unless told otherwise: a non-loopback --host is refused in
one line that says how to allow it, before anything is built or bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.cli import main
from controlplane.serve import REMOTE_REFUSED, is_loopback, serve
from controlplane.settings import Settings


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.100.7", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("192.168.0.1", False), ("", False),
])
def test_which_hosts_are_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_a_non_loopback_host_is_refused_before_anything_starts(host: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "data"
    assert serve(Settings(host=host, port=0, data_dir=data_dir)) == REMOTE_REFUSED
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"refusing to listen on {host}" in err and "--allow-remote" in err
    assert "ELASTICACHE_LOCAL_ALLOW_REMOTE=true" in err
    assert not data_dir.exists()  # nothing was built


def test_the_cli_refuses_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path / "d")]) == REMOTE_REFUSED
    assert "--allow-remote" in capsys.readouterr().err


def test_allow_remote_is_a_setting_and_a_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ELASTICACHE_LOCAL_HOST", "ELASTICACHE_LOCAL_ALLOW_REMOTE"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().host == "127.0.0.1" and not Settings().allow_remote
    monkeypatch.setenv("ELASTICACHE_LOCAL_ALLOW_REMOTE", "true")
    assert Settings().allow_remote
