from pathlib import Path

from controlplane.admin.export import render

ROOT = Path(__file__).resolve().parents[3]


def test_exported_openapi_document_is_current() -> None:
    committed = (ROOT / "openapi" / "openapi.json").read_text()
    assert committed == render(), "the JSON API changed: run `make openapi` and commit openapi/openapi.json"
