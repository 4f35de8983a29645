"""The README's promises that a script can check: its test command is CI's, its size a front door's."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands(text: str) -> list[str]:
    lines = text.splitlines()
    return [lines[i + 1] for i, line in enumerate(lines[:-1]) if line.strip() == "```bash"]


def test_the_readme_test_command_is_the_last_line_of_ci():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    first_two = _commands((ROOT / "README.md").read_text())[:2]
    assert first_two[1] == ci
    assert first_two[0] == "python3 -m venv .venv && .venv/bin/pip install -e '.[train]' && .venv/bin/headstart demo"


def test_the_readme_stays_a_front_door():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_every_manual_page_the_readme_links_exists():
    text = (ROOT / "README.md").read_text()
    links = [part.split(")")[0] for part in text.split("](docs/")[1:]]
    missing = [link for link in links if not (ROOT / "docs" / link).is_file()]
    assert links and not missing, missing
