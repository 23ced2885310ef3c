"""The import rules between the project's packages, checked on every module's source (imports at any
depth, inside functions too, relative ones resolved, literal `__import__`/`importlib.import_module`).

- reenact_common imports nothing else of the project (every layer may import it);
- models imports only reenact_common; export only models and reenact_common;
- training never imports the app (reenact_app);
- the GUI (reenact_app/gui) never imports models, export, torch or onnxruntime: it reaches models only
  through the engines' facade (reenact_app.engines.EngineOpener);
- the engines sit below the session, pipeline, GUI, commands and benchmark harness, never importing them.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from conftest import REPO

PACKAGES = ("reenact_common", "models", "export", "training", "reenact_app")


@dataclass(frozen=True)
class Rule:
    scope: str  # the modules the rule binds: this module and everything under it
    forbidden: tuple[str, ...]  # modules (and everything under them) they may not import
    why: str


RULES = (
    Rule("reenact_common", ("models", "export", "training", "reenact_app"), "the bottom layer imports nothing else of the project"),
    Rule("models", ("export", "training", "reenact_app"), "models imports only reenact_common"),
    Rule("export", ("training", "reenact_app"), "export imports only models and reenact_common"),
    Rule("training", ("reenact_app",), "training never imports the app"),
    Rule("reenact_app.gui", ("models", "export", "torch", "onnxruntime"),
         "the GUI reaches models only through reenact_app.engines' facade"),
    Rule("reenact_app.engines", ("reenact_app.session", "reenact_app.pipeline", "reenact_app.gui",
                                 "reenact_app.commands", "reenact_app.benchmarking", "reenact_app.cli"),
         "the engines sit below everything that drives them"),
)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, module) for every import in the tree; `from a import b` yields a and a.b (b may be a module)."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)] if node.level > 1 else anchor
                base = ".".join([*anchor, *([base] if base else [])])
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if called in ("__import__", "import_module") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def violations(root: Path, rules: tuple[Rule, ...] = RULES) -> list[str]:
    """One line per broken rule: where, what it imports, and why that is not allowed."""
    problems = []
    for top in PACKAGES:
        for path in sorted((root / top).rglob("*.py")) if (root / top).is_dir() else []:
            module = module_name(path, root)
            binding = [rule for rule in rules if _within(module, rule.scope)]
            if not binding:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            reported: set[tuple[int, Rule]] = set()  # `from a import b, c` is one import: one line
            for line, name in imported_names(tree, module, path.name == "__init__.py"):
                for rule in binding:
                    if (line, rule) not in reported and any(_within(name, f) for f in rule.forbidden):
                        reported.add((line, rule))
                        problems.append(f"{path.relative_to(root)}:{line} imports {name}: {rule.why}")
    return problems


def test_the_project_keeps_its_layering():
    problems = violations(REPO)  # about 0.2 s of CPU for the whole project
    assert problems == [], "\n".join(problems)


def _plant(root: Path, relative: str, source: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    for folder in [path.parent, *path.parent.parents]:
        if folder == root:
            break
        (folder / "__init__.py").touch()
    path.write_text(source)


def test_planted_violations_are_caught(tmp_path):
    _plant(tmp_path, "reenact_app/gui/panel.py", "import json\n\ndef load():\n    if True:\n        import torch.nn\n")
    _plant(tmp_path, "reenact_app/gui/export_button.py", "def go():\n    from export.onnx_export import export_onnx\n")
    _plant(tmp_path, "reenact_app/gui/lazy.py", "import importlib\nrt = importlib.import_module('onnxruntime')\n")
    _plant(tmp_path, "models/errors_user.py", "from reenact_app.video_io import iter_frames\n")
    _plant(tmp_path, "reenact_common/helper.py", "from models import load_checkpoint\n")
    _plant(tmp_path, "export/frames.py", "from training.media import find_sources\n")
    _plant(tmp_path, "training/transport.py", "from reenact_app import drive\n")
    _plant(tmp_path, "reenact_app/engines/harness.py", "from .. import session\n")
    _plant(tmp_path, "reenact_app/gui/fine.py", "from reenact_app.engines import EngineOpener\nimport mediapipe\n")
    _plant(tmp_path, "models/fine.py", "from reenact_common.errors import ConfigError\nfrom . import config\n")
    found = violations(tmp_path)
    expected = {
        "reenact_app/gui/panel.py:5 imports torch.nn",
        "reenact_app/gui/export_button.py:2 imports export.onnx_export",
        "reenact_app/gui/lazy.py:2 imports onnxruntime",
        "models/errors_user.py:1 imports reenact_app.video_io",
        "reenact_common/helper.py:1 imports models",
        "export/frames.py:1 imports training.media",
        "training/transport.py:1 imports reenact_app",
        "reenact_app/engines/harness.py:1 imports reenact_app.session",
    }
    where_and_what = {line.split(": ", 1)[0] for line in found}
    assert expected <= where_and_what, found
    assert not [line for line in found if "fine.py" in line]
    assert all(line.split(": ", 1)[1] for line in found)  # each says why
