"""The README's layout tree is the package as it is: every module listed, nothing listed that is gone."""

from __future__ import annotations

import re

from tests.conftest import PROJECT_ROOT


def layout_modules() -> set[str]:
    """deepfake/ paths of the modules the README's layout tree names (folders by their indentation)."""
    section = PROJECT_ROOT.joinpath("README.md").read_text().split("## Layout", 1)[1]
    tree = section.split("```", 2)[1]
    listed, folders = set(), []
    for line in tree.splitlines():
        match = re.match(r"^( *)(\S+)", line)
        if not match:
            continue
        depth, name = len(match.group(1)) // 2, match.group(2)
        folders = folders[:depth]
        if name.endswith("/"):
            folders.append(name.rstrip("/"))
        elif name.endswith(".py") and folders[:1] == ["deepfake"]:
            listed.add("/".join([*folders, name]))
    return listed


def test_the_readme_layout_lists_every_module_of_the_package():
    modules = {
        path.relative_to(PROJECT_ROOT).as_posix()
        for path in (PROJECT_ROOT / "deepfake").rglob("*.py")
        if path.name != "__init__.py"
    }
    assert len(layout_modules()) > 20
    assert layout_modules() == modules
