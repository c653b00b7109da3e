"""The README renders as intended (every table row inside a table, no Markdown table line left as raw text), says
how to run `emonet`, names every place the demo writes, and says nothing a user cannot place."""

import re
from pathlib import Path

from markdown_it import MarkdownIt

from emonet_assets.profiles import load_profile

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_table_line_of_the_readme_renders_inside_a_table():
    html = MarkdownIt("commonmark").enable("table").render(README.read_text(encoding="utf-8"))
    raw = re.findall(r"<p>(\|[^\n]*)", html)
    assert not raw, f"{len(raw)} table line(s) render as text, first: {raw[0][:80]}"
    table_lines = [line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("|")]
    separators = [line for line in table_lines if re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line)]
    assert html.count("<tr>") == len(table_lines) - len(separators)


def section(title: str) -> str:
    """The Markdown of one `## title` section, up to the next second-level heading."""
    text = README.read_text(encoding="utf-8")
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_says_how_to_run_emonet_from_the_virtual_environment():
    quick_start = section("Quick start")
    assert "`.venv/bin/emonet" in quick_start and "`source .venv/bin/activate`" in quick_start


def test_where_data_lands_names_everything_the_demo_writes(demo_run):
    lands = section("Where data lands")
    named = set(re.findall(r"<root>/([^/\s]+)", lands))
    written = {path.name for path in demo_run.root.iterdir()}
    assert written and written <= named, f"the demo writes {sorted(written - named)}, which the README leaves out"
    for folder in ("reports", "exports"):
        inside = {path.name for path in (demo_run.root / folder).iterdir()}
        listed = set(re.findall(rf"<root>/{folder}/([^/\s]+)", lands))
        assert inside <= listed, f"{folder}/{sorted(inside - listed)} left out"
    tiny = load_profile("tiny", env={})
    for models in (tiny.generation.model, tiny.embedding.source):
        assert f"`{models}/`" in lands


def test_the_readme_says_nothing_about_how_it_was_built():
    text = README.read_text(encoding="utf-8")
    for phrase in ("was lent", "this task", "the issue", "this session", "this machine", "ran here", "checked here"):
        assert phrase not in text.lower(), phrase
