"""``GET /openapi.json`` and the page for people at ``GET /docs``: Swagger UI rendering it.

Swagger UI's files come from the swagger-ui-py wheel (Swagger UI 5, which reads OpenAPI 3.1)
and are served under `DOCS_ASSETS_PATH` (the app's ``static`` endpoint: files, not operations);
the page names nothing elsewhere, so it works offline. Its one inline script is allowed by its
hash alone.
"""

from __future__ import annotations

import base64
import hashlib
import json
from importlib.resources import files
from pathlib import Path

import trio
from quart import Quart, Response
from werkzeug.exceptions import NotFound

from bgchallenge.web.openapi import openapi_document
from bgchallenge.web.routes import DOCS, DOCS_ASSETS_PATH, OPENAPI

# Swagger UI's own files (swagger-ui-bundle.js, swagger-ui.css, ...), as the wheel ships them.
SWAGGER_UI_FILES = Path(str(files("swagger_ui") / "static"))
# The ones the page uses: nothing else is served.
ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
_CSS, _JS, _ICON = ASSETS

# Base layout: the operations and schemas, without the standalone top bar (a URL box);
# no validator badge (it would send the document to validator.swagger.io).
_START = (
    "window.ui = SwaggerUIBundle({"
    f"url: {json.dumps(OPENAPI.path)}, "
    'dom_id: "#swagger-ui", '
    "deepLinking: true, "
    "displayRequestDuration: true, "
    "validatorUrl: null, "
    "presets: [SwaggerUIBundle.presets.apis], "
    'layout: "BaseLayout"'
    "});"
)
_START_HASH = base64.b64encode(hashlib.sha256(_START.encode()).digest()).decode()

DOCS_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>bgchallenge API</title>
<link rel="stylesheet" href="{DOCS_ASSETS_PATH}/{_CSS}">
<link rel="icon" type="image/png" href="{DOCS_ASSETS_PATH}/{_ICON}" sizes="32x32">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{DOCS_ASSETS_PATH}/{_JS}"></script>
<script>{_START}</script>
</body>
</html>
"""
# Everything from this origin: the files, the document, and "Try it out" (same origin).
# Swagger UI sets inline styles and shows some icons as data: URLs.
DOCS_CSP = (
    "default-src 'none'; "
    f"script-src 'self' 'sha256-{_START_HASH}'; "
    "style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; "
    "connect-src 'self'"
)


def register_docs(app: Quart) -> None:
    """Add ``GET /openapi.json``, ``GET /docs`` and Swagger UI's files; none needs a signature."""
    document_json = json.dumps(openapi_document(), ensure_ascii=False)
    loaded: dict[str, bytes] = {}  # read on first use, off the Trio thread, then kept

    @app.route(f"{DOCS_ASSETS_PATH}/<name>", methods=["GET"], endpoint="static")
    async def asset(name: str) -> Response:
        if name not in ASSETS:
            raise NotFound()
        if name not in loaded:
            loaded[name] = await trio.Path(SWAGGER_UI_FILES / name).read_bytes()
        return Response(
            loaded[name],
            content_type=ASSETS[name],
            headers={"Cache-Control": "public, max-age=86400"},
        )

    @app.route(OPENAPI.rule, methods=[OPENAPI.method])
    async def openapi_json() -> Response:
        return Response(document_json, content_type="application/json; charset=utf-8")

    @app.route(DOCS.rule, methods=[DOCS.method])
    async def docs() -> Response:
        return Response(
            DOCS_PAGE,
            content_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": DOCS_CSP},
        )
