"""MkDocs hook: each command's reference page, generated from the CLI at build time.

The pages come from ``headstart.cli_reference`` (which walks the Typer app), go under
``reference/cli/`` and replace the placeholder nav entry ``reference/cli/index.md``
with a section holding the index and one page per command, in ``--help`` order.
"""

from __future__ import annotations

from mkdocs.structure.files import File, Files, InclusionLevel
from mkdocs.structure.nav import Navigation, Section

from headstart.cli import app
from headstart.cli_reference import command_pages, index_markdown

FOLDER = "reference/cli"


def on_files(files: Files, config) -> Files:
    pages = command_pages(app)
    placeholder = files.get_file_from_path(f"{FOLDER}/index.md")  # the committed stand-in for readers of the repository
    if placeholder is not None:
        files.remove(placeholder)
    files.append(File.generated(config, f"{FOLDER}/index.md", content=index_markdown(app, pages)))
    for page in pages:
        # Not in mkdocs.yml's nav (on_nav below puts them there), so not reported as omitted.
        files.append(File.generated(config, f"{FOLDER}/{page.filename}", content=page.markdown, inclusion=InclusionLevel.NOT_IN_NAV))
    return files


def on_nav(nav: Navigation, config, files: Files) -> Navigation:
    index = files.get_file_from_path(f"{FOLDER}/index.md").page
    children = [files.get_file_from_path(f"{FOLDER}/{p.filename}").page for p in command_pages(app)]
    section = Section("Commands", [index, *children])
    holder = _holding(nav.items, index, None)
    if holder is None:
        raise ValueError(f"mkdocs.yml nav needs an entry for {FOLDER}/index.md (the generated commands section goes there)")
    items, parent = holder
    items[items.index(index)] = section
    section.parent = parent
    for child in section.children:
        child.parent = section
    nav.pages = list(_pages(nav.items))
    for i, page in enumerate(nav.pages):  # previous/next links in the new order
        page.previous_page = nav.pages[i - 1] if i else None
        page.next_page = nav.pages[i + 1] if i + 1 < len(nav.pages) else None
    return nav


def _holding(items: list, page, parent: Section | None):
    """(the list holding ``page``, its section) anywhere in the nav, or None."""
    if page in items:
        return items, parent
    for item in items:
        if isinstance(item, Section):
            found = _holding(item.children, page, item)
            if found is not None:
                return found
    return None


def _pages(items: list):
    for item in items:
        if isinstance(item, Section):
            yield from _pages(item.children)
        elif getattr(item, "is_page", False):
            yield item
