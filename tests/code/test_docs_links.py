"""The documentation points at things that exist: README.md, ARCHITECTURE.md and docs/*.md.

- every relative Markdown link or image resolves to a file or folder of the repository, and a
  `#anchor` into a Markdown file to one of its headings (GitHub's slugs);
- every backticked path into the repository (`civicsense/serving/predictor.py`,
  `tests/code/test_layout.py`, `mk/images.mk`, `path:symbol`, `path::test`, and module-relative
  names such as `serving/predictor.py` read under civicsense/) exists;
- README.md and docs/*.md name no machine paths (/work/, /tmp/, /root/) and no issue numbers.

Each failure lists every broken reference as file:line.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from pathlib import Path
from urllib.parse import unquote

from tests_support import ROOT

# The pages a reader lands on; ARCHITECTURE.md is held to the link and path rules only.
DOCS = sorted(page.relative_to(ROOT).as_posix() for page in (ROOT / "docs").glob("*.md"))
PUBLIC_PAGES = ["README.md", *DOCS]
CHECKED_PAGES = ["README.md", "ARCHITECTURE.md", *DOCS]

# A backticked token is a path into the repository when it starts with one of these.
TOP_LEVEL = ("civicsense/", "components/", "pipelines/", "tests/", "benchmarks/", "docs/",
             "kserve/", "manifests/", "extension/", "feature_repo/", "mk/", ".ci/")
# Build outputs the docs name on purpose (git-ignored, made by a make target).
GENERATED = ("extension/dist",)
NOT_A_PATH = re.compile(r"[\s*?<>{}…\[\]$|]")

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target "title") and ![alt](target); the text may hold `code` but no nested brackets.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HTML_SRC = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
CODE_SPAN = re.compile(r"(`+)([^`]+?)\1")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|tmp|root)/")
ISSUE_REF = re.compile(r"\bissues?\s+#?\d+\b|(?<![\w&/#])#\d+\b(?!-)", re.IGNORECASE)


@cache
def _lines(page: str) -> tuple[tuple[int, str, bool], ...]:
    """(line number, text, inside a fenced code block) for each line of a page."""
    out, fenced = [], False
    for number, line in enumerate((ROOT / page).read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            out.append((number, line, True))
            continue
        out.append((number, line, fenced))
    return tuple(out)


def _blocks(page: str) -> list[tuple[int, str]]:
    """(first line number, text) of each run of prose lines: a link or a `code span` may wrap."""
    blocks: list[tuple[int, list[str]]] = []
    previous = None
    for number, line, fenced in _lines(page):
        if fenced or not line.strip():
            previous = None
            continue
        if previous is None:
            blocks.append((number, []))
        blocks[-1][1].append(line)
        previous = number
    return [(first, "\n".join(lines)) for first, lines in blocks]


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: its text, lower case, punctuation dropped, - for spaces."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return kept.replace(" ", "-")


@cache
def _anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for _, line, fenced in _lines(path.relative_to(ROOT).as_posix()):
        match = None if fenced else HEADING.match(line)
        if not match:
            continue
        slug = _slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return frozenset(anchors)


@cache
def _subpackages() -> frozenset[str]:
    return frozenset(p.parent.name for p in (ROOT / "civicsense").glob("*/__init__.py"))


def _broken_link(page: str, target: str) -> str | None:
    """Why a link target from a page does not resolve, or None."""
    if SCHEME.match(target) or target.startswith("//"):
        return None  # an external address
    path_part, _, anchor = target.partition("#")
    source = ROOT / page
    path = (source.parent / unquote(path_part)).resolve() if path_part else source
    if path_part.startswith("/"):
        path = (ROOT / unquote(path_part).lstrip("/")).resolve()
    if not path.exists():
        return f"link target {target!r} does not exist"
    if anchor and path.suffix == ".md" and path.is_file() and anchor.lower() not in _anchors(path):
        return f"link {target!r}: no heading with anchor #{anchor} in {path.relative_to(ROOT)}"
    return None


def _repo_path(token: str) -> Path | None:
    """The repository path a backticked token names, or None when it is not a path into the repo."""
    token = token.strip()
    if "::" in token:
        token = token.split("::", 1)[0]
    if ":" in token:
        token = token.split(":", 1)[0]
    token = token.strip().rstrip(".,;")
    if not token or NOT_A_PATH.search(token) or "/" not in token:
        return None
    if token.startswith(TOP_LEVEL):
        relative = token
    elif token.split("/", 1)[0] in _subpackages():
        relative = f"civicsense/{token}"
    else:
        return None
    if relative.rstrip("/").startswith(GENERATED):
        return None
    return ROOT / relative


def _in_prose(pages: list[str], check) -> list[str]:
    """`check(page, block)` yields (offset in the block, reason); reported as page:line."""
    failures = []
    for page in pages:
        for first, block in _blocks(page):
            for offset, reason in check(page, block):
                failures.append(f"{page}:{first + block.count(chr(10), 0, offset)}: {reason}")
    return failures


def _link_problems(page: str, block: str):
    # A link inside `code` is not a link: blank the spans out, keeping every offset.
    prose = CODE_SPAN.sub(lambda m: " " * len(m.group(0)), block)
    for pattern in (LINK, HTML_SRC):
        for match in pattern.finditer(prose):
            if reason := _broken_link(page, match.group(1)):
                yield match.start(), reason
    offset = 0
    for line in block.split("\n"):
        if (match := REFERENCE_DEF.match(line)) and (reason := _broken_link(page, match.group(1))):
            yield offset, reason
        offset += len(line) + 1


def _path_problems(page: str, block: str):
    for match in CODE_SPAN.finditer(block):
        token = " ".join(match.group(2).split())
        path = _repo_path(token)
        if path is not None and not path.exists():
            yield match.start(), f"`{token}`: no such path {path.relative_to(ROOT).as_posix()}"


def _hygiene_problems(pages: list[str]) -> list[str]:
    """Every line, code blocks included (a pasted transcript is where machine paths hide)."""
    failures = []
    for page in pages:
        for number, line, _ in _lines(page):
            failures += [f"{page}:{number}: machine path {m.group(0)!r}"
                         for m in MACHINE_PATH.finditer(line)]
            failures += [f"{page}:{number}: issue reference {m.group(0)!r}"
                         for m in ISSUE_REF.finditer(line)]
    return failures


def _report(failures: list[str], what: str) -> str:
    return f"{len(failures)} {what}:\n" + "\n".join(failures)


def test_relative_links_and_images_resolve():
    failures = _in_prose(CHECKED_PAGES, _link_problems)
    assert not failures, _report(failures, "broken links")


def test_backticked_repo_paths_exist():
    failures = _in_prose(CHECKED_PAGES, _path_problems)
    assert not failures, _report(failures, "backticked paths that do not exist")


def test_no_machine_paths_or_issue_numbers():
    failures = _hygiene_problems(PUBLIC_PAGES)
    assert not failures, _report(failures, "machine paths or issue references")


def test_the_checker_itself():
    """The rules catch what they are meant to and let the rest through."""
    assert _slug("Quality: slices, calibration, behaviour, model card") == (
        "quality-slices-calibration-behaviour-model-card")
    assert _slug("Benchmark (`make bench-serve`)") == "benchmark-make-bench-serve"
    assert _repo_path("civicsense/settings.py:Settings") == ROOT / "civicsense/settings.py"
    assert _repo_path("tests/code/test_layout.py::test_x") == ROOT / "tests/code/test_layout.py"
    assert _repo_path("data/ingest.py") == ROOT / "civicsense/data/ingest.py"
    assert _repo_path("tests/code/<stage>/") is None
    assert _repo_path("gs://bucket/prefix") is None
    assert _repo_path("make run") is None
    assert _broken_link("README.md", "https://example.com/x") is None
    assert _broken_link("README.md", "docs/no-such-page.md") is not None
    assert _broken_link("README.md", "#no-such-heading-anywhere") is not None
    assert MACHINE_PATH.search("home: /work/x/.civicsense") and not MACHINE_PATH.search("/var/tmp")
    assert ISSUE_REF.search("as issue 12 reported") and ISSUE_REF.search("fixed in #14")
    assert not ISSUE_REF.search("see [x](#14-days)") and not ISSUE_REF.search("&#8212;")
