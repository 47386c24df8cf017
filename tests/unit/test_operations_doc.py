"""docs/operations.md names every setting bgchallenge/settings.py reads, and the docs name no
``BGC_*`` variable the code does not read. Names come from the source, so a new setting fails
this test until it is documented."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_SOURCE = ROOT / "bgchallenge" / "settings.py"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"
DOCS = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
BGC_NAME = re.compile(r"\bBGC_[A-Z0-9_]*[A-Z0-9]\b")
TYPE_DECLARATIONS = {"TypeVar", "NewType", "ParamSpec", "TypeVarTuple"}


def names_in_calls(source: str) -> set[str]:
    """Every environment-style name given as the first argument of a call (``get("PORT", …)``)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and node.args and not _declares_a_type(node):
            first = node.args[0]
            if (
                isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and ENV_NAME.fullmatch(first.value)
            ):
                names.add(first.value)
    return names


def _declares_a_type(call: ast.Call) -> bool:
    """``TypeVar("T")`` and the like name a type, not a variable."""
    return isinstance(call.func, ast.Name) and call.func.id in TYPE_DECLARATIONS


def settings_read() -> set[str]:
    return names_in_calls(SETTINGS_SOURCE.read_text(encoding="utf-8"))


def bgc_literals_in_package() -> set[str]:
    """``BGC_*`` names quoted anywhere in the package (the client reads ``BGC_SERVER``)."""
    found = set()
    for path in (ROOT / "bgchallenge").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            value = node.value if isinstance(node, ast.Constant) else None
            if isinstance(value, str) and BGC_NAME.fullmatch(value):
                found.add(value)
    return found


def test_settings_are_found_in_the_source() -> None:
    assert {"DATABASE_URL", "PORT", "BGC_WORKERS", "BGC_WEBHOOK_SECRET"} <= settings_read()


def test_every_setting_is_documented() -> None:
    text = OPERATIONS_DOC.read_text(encoding="utf-8")
    missing = sorted(name for name in settings_read() if f"`{name}`" not in text)
    assert missing == []


def test_every_documented_bgc_name_is_read_by_the_code() -> None:
    known = settings_read() | bgc_literals_in_package()
    unknown = {
        (path.relative_to(ROOT).as_posix(), name)
        for path in DOCS
        for name in BGC_NAME.findall(path.read_text(encoding="utf-8"))
        if name not in known
    }
    assert unknown == set()
