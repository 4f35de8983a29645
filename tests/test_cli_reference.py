"""The manual's command pages are generated from the CLI: every command has one, every option is on it."""

from __future__ import annotations

import typer

from headstart.cli import app
from headstart.cli_reference import command_pages, index_markdown


def _leaves(command, words=()):
    subs = getattr(command, "commands", None)
    if subs is None:
        return [(words, command)]
    return [leaf for name, sub in subs.items() for leaf in _leaves(sub, (*words, name))]


def test_every_command_has_a_page_listing_each_of_its_options():
    pages = {p.words: p for p in command_pages(app)}
    leaves = _leaves(typer.main.get_command(app))
    assert set(pages) == {words for words, _ in leaves}
    for words, command in leaves:
        for param in command.params:
            if param.name != "help" and not getattr(param, "hidden", False):
                first = param.opts[0]
                assert f"`{first}" in pages[words].markdown or f", {first}" in pages[words].markdown, (words, first)


def test_the_index_links_every_page():
    pages = command_pages(app)
    index = index_markdown(app, pages)
    assert [p.filename for p in pages] == [line.split("](")[1].split(")")[0] for line in index.splitlines() if line.startswith("- [")]


def test_help_text_cannot_inject_html_or_emphasis():
    train = next(p for p in command_pages(app) if p.name == "train")
    assert "runs/&lt;data name&gt;" in train.markdown  # '<data name>' would vanish as an unknown HTML tag
