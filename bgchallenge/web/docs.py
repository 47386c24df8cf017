"""The page for people at ``GET /docs``: the OpenAPI document rendered on the server into
plain, escaped HTML — no scripts, no fonts, nothing fetched from elsewhere."""

from __future__ import annotations

import html
import json
from typing import Any

OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


def _resolve(document: dict[str, Any], node: Any) -> Any:
    """Follow a local ``$ref`` (one level is all the document uses)."""
    if isinstance(node, dict) and "$ref" in node:
        target: Any = document
        for part in str(node["$ref"]).removeprefix("#/").split("/"):
            target = target[part]
        return target
    return node


def _schema_label(schema: Any) -> str:
    if not isinstance(schema, dict):
        return ""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "type" in schema:
        kind = schema["type"]
        kinds = " or ".join(kind) if isinstance(kind, list) else str(kind)
        if kind == "array" and isinstance(schema.get("items"), dict):
            kinds += " of " + _schema_label(schema["items"])
        limits = [
            f"{key} {schema[key]}"
            for key in ("enum", "minimum", "maximum", "minLength", "maxLength", "default", "format")
            if key in schema
        ]
        return kinds + (f" ({', '.join(limits)})" if limits else "")
    for key in ("oneOf", "anyOf", "allOf"):
        if key in schema:
            return f" {key} ".join(_schema_label(part) for part in schema[key])
    return "const " + json.dumps(schema["const"]) if "const" in schema else ""


def render_docs(document: dict[str, Any]) -> str:
    """The document as one self-contained HTML page; every value from it is escaped."""
    info = document["info"]
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_text(info['title'])} API</title>",
        "<style>body{font-family:sans-serif;max-width:60rem;margin:auto;padding:1rem}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .5rem;"
        "text-align:left;vertical-align:top}code{background:#f4f4f4}</style>",
        "</head><body>",
        f"<h1>{_text(info['title'])} {_text(info['version'])}</h1>",
        f"<p>{_text(info.get('description', ''))}</p>",
        f'<p>Machine-readable: <a href="{OPENAPI_PATH}">{OPENAPI_PATH}</a></p>',
    ]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            out.append(f"<h2><code>{_text(method.upper())} {_text(path)}</code></h2>")
            out.append(f"<p><strong>{_text(operation.get('summary', ''))}</strong></p>")
            if operation.get("description"):
                out.append(f"<p>{_text(operation['description'])}</p>")
            if operation.get("security"):
                out.append("<p>Signed (X-Bgc-Timestamp, X-Bgc-Signature) when signing is on.</p>")
            parameters = operation.get("parameters", [])
            if parameters:
                out.append("<h3>Parameters</h3><table>")
                out.append("<tr><th>name</th><th>in</th><th>schema</th><th>description</th></tr>")
                for parameter in parameters:
                    name = parameter["name"] + (" (required)" if parameter.get("required") else "")
                    out.append(
                        f"<tr><td><code>{_text(name)}</code></td><td>{_text(parameter['in'])}</td>"
                        f"<td>{_text(_schema_label(parameter.get('schema')))}</td>"
                        f"<td>{_text(parameter.get('description', ''))}</td></tr>"
                    )
                out.append("</table>")
            body = operation.get("requestBody")
            if body:
                out.append("<h3>Request body</h3><ul>")
                for media_type, content in body["content"].items():
                    label = _schema_label(content.get("schema"))
                    out.append(f"<li><code>{_text(media_type)}</code>: {_text(label)}</li>")
                out.append("</ul>")
            out.append("<h3>Responses</h3><table>")
            out.append("<tr><th>status</th><th>description</th><th>content</th></tr>")
            for status, reference in operation["responses"].items():
                response = _resolve(document, reference)
                content = ", ".join(
                    f"{media_type} {_schema_label(media.get('schema'))}".strip()
                    for media_type, media in response.get("content", {}).items()
                )
                if response.get("headers"):
                    content = f"{content} (headers: {', '.join(response['headers'])})".strip()
                out.append(
                    f"<tr><td>{_text(status)}</td><td>{_text(response['description'])}</td>"
                    f"<td>{_text(content)}</td></tr>"
                )
            out.append("</table>")
    out.append("<h2>Schemas</h2>")
    for name, schema in document["components"]["schemas"].items():
        out.append(f'<h3 id="{_text(name)}">{_text(name)}</h3>')
        if schema.get("description"):
            out.append(f"<p>{_text(schema['description'])}</p>")
        properties = schema.get("properties", {})
        if properties:
            required = set(schema.get("required", ()))
            out.append("<table><tr><th>member</th><th>schema</th><th>description</th></tr>")
            for member, member_schema in properties.items():
                label = member + ("" if member in required else " (optional)")
                out.append(
                    f"<tr><td><code>{_text(label)}</code></td>"
                    f"<td>{_text(_schema_label(member_schema))}</td>"
                    f"<td>{_text(member_schema.get('description', ''))}</td></tr>"
                )
            out.append("</table>")
        elif not schema.get("description") or "type" in schema:
            out.append(f"<p>{_text(_schema_label(schema))}</p>")
    out.append("<h2>Signing</h2><ul>")
    for scheme in document["components"]["securitySchemes"].values():
        out.append(f"<li><code>{_text(scheme['name'])}</code>: {_text(scheme['description'])}</li>")
    out.append("</ul></body></html>")
    return "\n".join(out)
