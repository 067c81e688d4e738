"""The documentation: links resolve, names exist, the quickstart runs, the API page is current."""

from __future__ import annotations

import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hybridpot._docgen.api import BEGIN, END, api_reference, format_signature, update_document

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*$", re.M)
_HTML_ANCHOR = re.compile(r'<a\s+(?:id|name)="([^"]+)"')
_DOTTED = re.compile(r"`(hybridpot(?:\.[A-Za-z_]\w*)+)")


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced code block, in page order."""
    return _FENCE.findall(text)


def prose(text: str) -> str:
    """The text without code blocks and inline code (links there are not links)."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors of a page (lower case, punctuation dropped, spaces to -)."""
    found, counts = set(), {}
    for heading in _HEADING.findall(_FENCE.sub("", text)):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = counts.get(slug, 0)
        counts[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found | set(_HTML_ANCHOR.findall(text))


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Relative links of ``page`` whose file (or heading anchor) does not exist."""
    text = page.read_text()
    broken = []
    for target in _LINK.findall(prose(text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(root)} -> {target}"
        if not file.exists():
            broken.append(f"{where} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            broken.append(f"{where} (no heading with anchor #{anchor})")
    return broken


def test_pages_exist():
    names = {p.name for p in PAGES}
    for page in ("index.md", "installation.md", "quickstart.md", "theory.md", "python-api.md"):
        assert page in names


def test_relative_links_resolve():
    broken = [problem for page in PAGES for problem in broken_links(page)]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_link_checker_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# A heading\n")
    page.write_text(
        "[ok](there.md#a-heading) [gone](missing.md) [bad anchor](there.md#nope) "
        "`[in code](missing2.md)` [web](https://example.org/x.md)\n"
    )
    assert broken_links(page, root=tmp_path) == [
        "page.md -> missing.md (no such file)",
        "page.md -> there.md#nope (no heading with anchor #nope)",
    ]


def _resolve(dotted: str) -> object:
    """Import the longest module prefix of ``dotted`` and get the rest as attributes."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


def test_every_dotted_hybridpot_name_in_the_docs_exists():
    missing = []
    for page in PAGES:
        for dotted in sorted(set(_DOTTED.findall(page.read_text()))):
            try:
                _resolve(dotted)
            except (ImportError, AttributeError):
                missing.append(f"{page.relative_to(ROOT)}: {dotted}")
    assert not missing, "names in the docs that do not exist:\n" + "\n".join(missing)


def quickstart_config() -> dict:
    blocks = fenced_blocks((DOCS / "quickstart.md").read_text())
    yaml_blocks = [code for lang, code in blocks if lang == "yaml"]
    assert len(yaml_blocks) == 1, "quickstart.md should hold exactly one YAML config"
    return yaml.safe_load(yaml_blocks[0])


def test_quickstart_config_validates():
    from hybridpot.train import config_from_dict

    config = config_from_dict(quickstart_config(), check_paths=False)
    assert config.data.train == "data/train.xyz"
    assert config.model["cutoff"] == 5.0
    # The data files are the ones the page tells the reader to generate.
    for path in (config.data.train, config.data.valid, config.data.test):
        assert Path(path).stem in ("train", "validation", "test", "test_large", "test_slab")


def test_api_reference_is_current():
    text = (DOCS / "python-api.md").read_text()
    committed = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert committed == "\n" + api_reference(), (
        "docs/python-api.md is out of date: run python -m hybridpot._docgen.api docs/python-api.md"
    )


def test_api_generator_refuses_undocumented_names_and_pages_without_markers(tmp_path):
    from hybridpot._docgen import api as apidocs

    def undocumented(x):
        return x

    with pytest.raises(ValueError, match="undocumented_thing has no docstring"):
        apidocs.document_object("somewhere.undocumented_thing", undocumented)
    page = tmp_path / "page.md"
    page.write_text("# no markers\n")
    with pytest.raises(ValueError, match="lacks the markers"):
        update_document(page)
    page.write_text(f"# API\n{BEGIN}\nold\n{END}\nafter\n")
    assert update_document(page) is True
    assert update_document(page) is False
    assert page.read_text().endswith(f"{END}\nafter\n")


def test_signature_formatting():
    def short(a: int, *, b: str = "x") -> None:
        """Short."""

    def long(first_argument: float, second_argument: float, third_argument: float = 1.0) -> int:
        """Long (91 characters on one line)."""

    assert format_signature("short", short) == "short(a: int, *, b: str = 'x') -> None"
    assert format_signature("long", long, prefix="x.").splitlines() == [
        "x.long(",
        "    first_argument: float,",
        "    second_argument: float,",
        "    third_argument: float = 1.0,",
        ") -> int",
    ]


def _run_page(page: Path, *, epochs: int, replace: dict[str, str] | None = None) -> None:
    """Run a page's YAML (saved as config.yaml), bash and Python blocks in page order.

    Only the hand-written part (before a generated reference) runs; each Python block in
    a fresh namespace, so every block must hold its own imports. ``hybridpot demo``
    lines are skipped (the demo has its own tests); training lines get
    ``epochs=<epochs>`` so that the run is short.
    """
    from hybridpot.cli import main

    for lang, code in fenced_blocks(page.read_text().split(BEGIN)[0]):
        for old, new in (replace or {}).items():
            code = code.replace(old, new)
        if lang == "yaml":
            Path("config.yaml").write_text(code)
        elif lang == "bash":
            for line in code.splitlines():
                words = shlex.split(line, comments=True)
                if not words or words[:2] == ["hybridpot", "demo"]:
                    continue
                if words[0] == "python":
                    done = subprocess.run([sys.executable, *words[1:]], capture_output=True)
                    assert done.returncode == 0, done.stderr.decode()
                    continue
                assert words[0] == "hybridpot", line
                if words[1] == "train":
                    words += [f"epochs={epochs}", "--quiet"]
                assert main(words[1:]) == 0, line
        elif lang == "python":
            exec(compile(code, f"{page.name} block", "exec"), {"__name__": "__docs__"})


@pytest.mark.slow  # ~1 min on 2 cores: data, three short trainings, evaluation, MD
def test_quickstart_and_api_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    _run_page(DOCS / "quickstart.md", epochs=2)
    assert Path("runs/nacl/model.pt").is_file() and Path("predictions.xyz").is_file()
    api = DOCS / "python-api.md"
    assert '"epochs=20"' in api.read_text()
    _run_page(api, epochs=1, replace={'"epochs=20"': '"epochs=1", "quiet=true"'})
    assert Path("runs/nacl-python/model.pt").is_file()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_hold_no_control_characters(page):
    """A LaTeX escape written through a non-raw Python string turns into a control
    character (\\f of \\frac, \\t of \\tilde): the formula silently loses its command."""
    for number, line in enumerate(page.read_text().splitlines(), 1):
        bad = [hex(ord(c)) for c in line if ord(c) < 32]
        assert not bad, f"{page.name}:{number} holds control characters {bad}: {line[:60]!r}"


def test_training_page_lists_exactly_the_config_keys_that_may_change_on_resume():
    from hybridpot.train.checkpoint import RESUMABLE_CHANGES

    text = (DOCS / "training.md").read_text()
    paragraph = text[text.index("## Checkpoints and resuming") :].split("\n\n")[1]
    listed = paragraph[paragraph.index("Only ") : paragraph.index("may differ")]
    assert set(re.findall(r"`([a-z_.]+)`", listed)) == RESUMABLE_CHANGES
