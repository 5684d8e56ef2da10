"""DVC deps that cannot drift: every module a stage imports, directly or not, is a dependency of that stage
in dvc.yaml (a file, or a folder above it), and the import rule flows -> stages -> deepfake holds."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

PACKAGES = ("deepfake", "stages", "flows")


def module_file(name: str) -> Path | None:
    """The project file a dotted module name resolves to (package __init__ or module), else None."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = PROJECT_ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Every module named by an import statement anywhere in the file, function-level imports included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return names


def import_closure(path: Path) -> set[Path]:
    """The project files `path` needs when run: its imports, theirs, and the packages they sit in."""
    seen: set[Path] = set()
    todo = [path]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for name in imported_modules(current):
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__.py and a/b/__init__.py too
                found = module_file(".".join(parts[:depth]))
                if found is not None:
                    todo.append(found)
    return seen


def stages() -> dict:
    """Each stage's definition; a `foreach` stage's by its `do:` template (the same cmd and deps for every item)."""
    defined = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    return {name: spec.get("do", spec) for name, spec in defined.items()}


def covered(path: Path, deps: list[str]) -> bool:
    relative = path.relative_to(PROJECT_ROOT)
    return any(relative == Path(dep) or Path(dep) in relative.parents for dep in deps)


@pytest.mark.parametrize("stage", sorted(stages()))
def test_every_module_a_stage_imports_is_one_of_its_deps(stage):
    spec = stages()[stage]
    entry = PROJECT_ROOT / (spec["cmd"].split("-m ", 1)[1].split()[0].replace(".", "/") + ".py")
    closure = import_closure(entry)
    assert len(closure) > 3  # the scanner follows imports: a stage reaches well into the library
    missing = sorted(str(p.relative_to(PROJECT_ROOT)) for p in closure if not covered(p, spec["deps"]))
    assert missing == [], f"dvc.yaml stage {stage!r} does not list {missing}: a change there would not rerun it"


def test_register_depends_on_all_the_code_the_registered_model_bundles():
    # log_detector bundles the whole deepfake package as the model's code.
    assert "deepfake" in stages()["register"]["deps"]


def test_the_scanner_sees_function_level_and_transitive_imports():
    closure = {str(p.relative_to(PROJECT_ROOT)) for p in import_closure(PROJECT_ROOT / "stages" / "train.py")}
    assert {
        "deepfake/model/training.py",
        "deepfake/model/augment.py",
        "deepfake/images.py",
        "deepfake/tracking.py",
        "deepfake/model/__init__.py",
        "deepfake/__init__.py",
    } <= closure
    assert not any(path.startswith("deepfake/serving") for path in closure)  # training never loads the inference stack


def test_imports_point_one_way_flows_stages_library():
    for path in sorted((PROJECT_ROOT / "deepfake").rglob("*.py")):
        upward = {n for n in imported_modules(path) if n.split(".")[0] in ("stages", "flows")}
        assert not upward, f"{path.relative_to(PROJECT_ROOT)} imports {upward}"
    for path in sorted((PROJECT_ROOT / "stages").glob("*.py")):
        upward = {n for n in imported_modules(path) if n.split(".")[0] == "flows"}
        assert not upward, f"{path.relative_to(PROJECT_ROOT)} imports {upward}"


def test_bytecode_caches_do_not_count_as_a_change_of_a_package_dep():
    ignored = (PROJECT_ROOT / ".dvcignore").read_text().splitlines()
    assert "__pycache__/" in ignored and "*.pyc" in ignored
