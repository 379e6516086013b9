"""House rules read from the source with `ast` (fast; imports nothing of the project):

- no function body in the project's source is over 60 lines (signature and docstring not counted; tests,
  benchmarks and scripts excepted);
- the Hub files `*_music_clip.py` import only each other, the standard library and third-party packages (they
  travel alone to the Hub);
- the training layer's `markers.py` and `ood_eval.py` do not reach into the dataset builder;
- nothing outside the tests imports `fcntl` (POSIX only: the project runs on Windows too; `filelock` locks; a
  test may use it to probe filelock's POSIX lock).

Each rule is a function of source text, so each test also shows its rule catching a violation.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_BODY_LINES = 60
NOT_SOURCE = ("tests/", "benchmarks/", "scripts/")  # outside the function-length rule
HUB_SUFFIX = "_music_clip"
BUILDER = ("music_clip_data", "build_dataset")
KEPT_FROM_BUILDER = ("music_clip_train/markers.py", "music_clip_train/ood_eval.py")


def python_files() -> list[str]:
    """Every .py file of the checkout, tracked or new (not ignored), relative to the root."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "*.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return sorted(path for path in set(listed) if (ROOT / path).is_file())


def project_source() -> list[str]:
    return [path for path in python_files() if not path.startswith(NOT_SOURCE)]


def parse(path: str) -> ast.Module:
    return ast.parse((ROOT / path).read_text(encoding="utf-8"), path)


def long_functions(tree: ast.Module, limit: int = MAX_BODY_LINES) -> list[str]:
    """`name:line (N lines)` of every function or method whose body, after its docstring, spans over `limit`
    lines (nested functions count inside their parent and again on their own)."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = node.body[1:] if ast.get_docstring(node, clean=False) is not None else node.body
        if body and (lines := node.end_lineno - body[0].lineno + 1) > limit:
            found.append(f"{node.name}:{node.lineno} ({lines} lines)")
    return found


def imported_modules(tree: ast.Module) -> set[str]:
    """The top-level name of every module an import names, anywhere in the file (function-level imports and
    both arms of try/except included); a relative import gives its module ("." + name for `from . import name`)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module.split(".")[0]] if node.module else [alias.name for alias in node.names]
            names.update(f".{module}" for module in modules)
    return names


def project_modules(files: list[str]) -> set[str]:
    """Top-level names a project file can be imported by: its packages and root modules."""
    return {path.split("/")[0].removesuffix(".py") for path in files}


def hub_import_violations(tree: ast.Module, project: set[str]) -> set[str]:
    """What a Hub file imports that is neither another Hub file nor outside the project (stdlib, third party)."""
    bad = set()
    for name in imported_modules(tree):
        module = name.lstrip(".")
        if name.startswith("."):  # relative: the Hub files sit side by side at the root
            if not module.endswith(HUB_SUFFIX):
                bad.add(name)
        elif module in project and not module.endswith(HUB_SUFFIX):
            bad.add(name)
    return bad


def test_no_function_body_over_60_lines() -> None:
    too_long = {path: found for path in project_source() if (found := long_functions(parse(path)))}
    assert not too_long, f"function bodies over {MAX_BODY_LINES} lines (split them): {too_long}"


def test_the_length_rule_catches_a_long_function() -> None:
    docstring = '    """A docstring of\n    two lines does not count."""\n'
    fits = "def f():\n" + docstring + "    x = 1\n" * MAX_BODY_LINES
    too_long = (
        "class C:\n    def g(self):\n        y = [\n" + "            1,\n" * MAX_BODY_LINES + "        ]\n"
    )
    assert long_functions(ast.parse(fits)) == []
    assert long_functions(ast.parse(too_long)) == [f"g:2 ({MAX_BODY_LINES + 2} lines)"]


def test_hub_files_import_only_each_other_and_outside_packages() -> None:
    files = python_files()
    hub = [path for path in files if path.endswith(f"{HUB_SUFFIX}.py")]
    assert len(hub) >= 8, hub  # the rule must see the Hub files (a rename would otherwise pass it silently)
    project = project_modules(files)
    bad = {path: found for path in hub if (found := hub_import_violations(parse(path), project))}
    assert not bad, f"Hub files import project modules outside the Hub files: {bad}"


@pytest.mark.parametrize(
    "source",
    [
        "from music_clip_common.files import atomic_write\n",
        "def f():\n    import space.config\n",
        "try:\n    from .music_clip_data import decode\nexcept ImportError:\n    pass\n",
        "from . import build_dataset\n",
    ],
)
def test_the_hub_rule_catches_a_project_import(source: str) -> None:
    project = project_modules(python_files())
    assert {"music_clip_common", "space", "build_dataset", "music_clip_data"} <= project
    allowed = "import os, numpy\nimport torch.nn\nfrom .audio_music_clip import load_audio\nimport processing_music_clip\n"
    assert hub_import_violations(ast.parse(allowed), project) == set()
    assert hub_import_violations(ast.parse(allowed + source), project)


def test_training_markers_and_ood_eval_do_not_import_the_builder() -> None:
    reached = {path: imported_modules(parse(path)) & set(BUILDER) for path in KEPT_FROM_BUILDER}
    assert not any(reached.values()), f"the training layer imports the dataset builder: {reached}"
    assert imported_modules(ast.parse("def f():\n    from music_clip_data.files import x\n")) & set(BUILDER)


def test_nothing_imports_fcntl() -> None:
    importing = [
        path
        for path in python_files()
        if not path.startswith("tests/") and "fcntl" in imported_modules(parse(path))
    ]
    assert not importing, f"fcntl is POSIX-only (use filelock): {importing}"
    assert "fcntl" in imported_modules(ast.parse("if True:\n    import fcntl as lock\n"))
