"""/docs: Swagger UI from the package's own copy of swagger-ui-dist (static/vendor, fetched by
controlplane.dashboard.vendor), so the page works with no internet. The app turns FastAPI's
default /docs (which loads Swagger UI from a CDN) off and mounts this one."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

ASSETS = "/dashboard/static/vendor/swagger-ui-dist"


def docs_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/docs", response_class=HTMLResponse)
    def docs(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=request.app.openapi_url or "/openapi.json", title=f"{request.app.title} - JSON API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
            # No online validator badge: it would call validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None})

    return router
