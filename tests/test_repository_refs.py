"""The repository stands alone: no tracked file refers to files outside it, and every relative
Markdown link in its documentation leads to a file (and heading) that exists."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
THIS_FILE = PurePosixPath("tests") / Path(__file__).name
LINKED_DOCS = ("README.md", "bench/README.md", "docs/*.md")

# Written in pieces, so that this file does not match itself.
OUTSIDE_REFERENCES = {
    "a path into the shared folder": re.compile(r"\.\./" + "shared|shared/" + "design"),
    "an issue number": re.compile(r"(?i)\bissues?\s*#?\s*[0-9]+\b|(?<![\w/])#[0-9]+\b"),
}
THE_CONTRACT = re.compile(r"(?i)\bthe " + r"contract\b")
LINK = re.compile(r"\]\(([^()\s]+)\)")
PATH_MENTION = re.compile(r"[\w.-]+(?:/[\w.-]+)*\.(?:md|py|sql|yaml|toml)\b")
FENCE = re.compile(r"^\s*```")


def tracked_files() -> list[PurePosixPath]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    return [PurePosixPath(name) for name in listed.split("\0") if name]


def text_of(path: PurePosixPath) -> str | None:
    try:
        return (ROOT / path).read_text(encoding="utf-8")
    except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
        return None


def paragraphs(text: str) -> Iterator[str]:
    yield from re.split(r"\n\s*\n", text)


def in_repository(base: PurePosixPath, target: str) -> bool:
    """Whether ``target`` (relative to ``base``'s folder, or to the root) is a file here."""
    for candidate in (ROOT / base.parent / target, ROOT / target):
        resolved = candidate.resolve()
        if resolved.is_relative_to(ROOT) and resolved.is_file():
            return True
    return False


def test_no_tracked_file_refers_outside_the_repository() -> None:
    found = []
    for path in tracked_files():
        if path == THIS_FILE:
            continue
        text = text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for what, pattern in OUTSIDE_REFERENCES.items():
                if pattern.search(line):
                    found.append(f"{path}:{number}: {what}: {line.strip()}")
    assert found == []


def test_the_contract_is_named_only_beside_a_file_of_the_repository() -> None:
    found = []
    for path in tracked_files():
        text = text_of(path)
        if text is None or path == THIS_FILE:
            continue
        for paragraph in paragraphs(text):
            if not THE_CONTRACT.search(paragraph):
                continue
            mentions = LINK.findall(paragraph) + PATH_MENTION.findall(paragraph)
            if not any(in_repository(path, target.split("#")[0]) for target in mentions):
                found.append(f"{path}: {paragraph.strip()[:120]}")
    assert found == []


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def outside_fences(text: str) -> Iterator[str]:
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in outside_fences(path.read_text(encoding="utf-8")):
        heading = re.match(r"^#{1,6} (.+)$", line)
        if heading:
            base = slug(heading[1])
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def documentation() -> list[PurePosixPath]:
    return sorted(
        {
            PurePosixPath(p.relative_to(ROOT).as_posix())
            for pattern in LINKED_DOCS
            for p in ROOT.glob(pattern)
        }
    )


def test_every_relative_link_in_the_documentation_resolves() -> None:
    broken = []
    for path in documentation():
        for line in outside_fences((ROOT / path).read_text(encoding="utf-8")):
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                    continue
                file_part, _, anchor = target.partition("#")
                linked = (ROOT / path.parent / file_part).resolve() if file_part else ROOT / path
                if not linked.is_relative_to(ROOT) or not linked.is_file():
                    broken.append(f"{path}: {target} (no such file)")
                elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                    broken.append(f"{path}: {target} (no such heading)")
    assert broken == []


def test_the_documentation_is_found_and_links_are_seen() -> None:
    docs = documentation()
    assert PurePosixPath("docs/http.md") in docs and PurePosixPath("README.md") in docs
    assert "post-resultsidcancel" in anchors(ROOT / "docs" / "http.md")
