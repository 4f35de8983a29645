"""Each command's reference page, generated from the command line itself.

The manual (``docs/``, built by MkDocs) renders these pages at build time from the Typer
app, so a new command or option appears there by itself and no option list is written
by hand; ``tests/test_cli_reference.py`` checks that every command has one.

Example:
    >>> from headstart.cli import app
    >>> pages = command_pages(app)
    >>> [p.name for p in pages][:2]
    ['train', 'evaluate']
    >>> pages[0].markdown.splitlines()[0]
    '# headstart train'
"""

from __future__ import annotations

import html
import inspect
from dataclasses import dataclass
from typing import Any

import typer


@dataclass(frozen=True)
class CommandPage:
    """One command's page: its words after ``headstart`` and the Markdown to publish."""

    words: tuple[str, ...]  # ("cache", "clear")
    summary: str  # the first line of its help
    markdown: str

    @property
    def name(self) -> str:
        return " ".join(self.words)

    @property
    def filename(self) -> str:
        """The page's file name, e.g. ``cache-clear.md``."""
        return "-".join(self.words) + ".md"


def command_pages(app: typer.Typer, program: str = "headstart") -> list[CommandPage]:
    """A page per command (sub-commands of a group included), in the order ``--help`` lists them."""
    root = typer.main.get_command(app)
    context = root.context_class(root, info_name=program)
    return list(_walk(root, context, ()))


def index_markdown(app: typer.Typer, pages: list[CommandPage], program: str = "headstart") -> str:
    """The commands' index: the program's own help and a line per command linking to its page."""
    root = typer.main.get_command(app)
    lines = [f"# {program} commands", "", _text(root.help or ""), ""]
    lines += [f"- [`{program} {p.name}`]({p.filename}): {_text(p.summary)}" for p in pages]
    lines += ["", f"Generated from `{program} --help` and each command's `--help` when the manual is built."]
    return "\n".join(lines) + "\n"


def _walk(command: Any, context: Any, words: tuple[str, ...]):
    subcommands = getattr(command, "commands", None)
    if subcommands is not None:  # a group: its commands, not itself
        for name, sub in subcommands.items():
            if not getattr(sub, "hidden", False):
                yield from _walk(sub, sub.context_class(sub, info_name=name, parent=context), (*words, name))
        return
    yield CommandPage(words, _summary(command), _render(command, context, words))


def _summary(command: Any) -> str:
    help_text = inspect.cleandoc(command.help or "")
    return command.short_help or help_text.split("\n\n")[0].replace("\n", " ")


def _render(command: Any, context: Any, words: tuple[str, ...]) -> str:
    program = context.find_root().info_name
    lines = [f"# {program} {' '.join(words)}", "", _text(inspect.cleandoc(command.help or "")), ""]
    lines += ["```text", command.get_usage(context), "```", ""]
    for kind, title in (("argument", "Arguments"), ("option", "Options")):
        records = [
            p.get_help_record(context)
            for p in command.get_params(context)
            if p.param_type_name == kind and not getattr(p, "hidden", False) and p.name != "help"
        ]
        records = [r for r in records if r is not None]
        if records:
            lines += [f"## {title}", ""]
            lines += [f"- `{flags}`" + (f": {_text(help_text)}" if help_text else "") for flags, help_text in records]
            lines.append("")
    lines.append(f"Generated from `{program} {' '.join(words)} --help`.")
    return "\n".join(lines) + "\n"


def _text(text: str) -> str:
    """Help text as Markdown that shows it verbatim: no raw HTML (``<data name>``), no emphasis."""
    return html.escape(text, quote=False).replace("*", r"\*").replace("`", r"\`")
