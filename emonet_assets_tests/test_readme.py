"""The README renders as intended: every table row inside a table, no Markdown table line left as raw text."""

import re
from pathlib import Path

from markdown_it import MarkdownIt

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_table_line_of_the_readme_renders_inside_a_table():
    html = MarkdownIt("commonmark").enable("table").render(README.read_text(encoding="utf-8"))
    raw = re.findall(r"<p>(\|[^\n]*)", html)
    assert not raw, f"{len(raw)} table line(s) render as text, first: {raw[0][:80]}"
    table_lines = [line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("|")]
    separators = [line for line in table_lines if re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line)]
    assert html.count("<tr>") == len(table_lines) - len(separators)
