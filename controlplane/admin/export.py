"""Write the JSON API's OpenAPI document: `python -m controlplane.admin.export openapi/openapi.json`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def openapi_document() -> dict[str, Any]:
    """The document, built from the routes alone (no service is started)."""
    from fastapi import FastAPI

    from controlplane.admin.api import API_DESCRIPTION, API_TITLE, API_VERSION, admin_router

    app = FastAPI(title=API_TITLE, version=API_VERSION, description=API_DESCRIPTION)
    app.include_router(admin_router())
    return app.openapi()


def render() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    target = Path(argv[1] if len(argv) > 1 else "openapi/openapi.json")
    target.write_text(render())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
