"""The package's layering is one-way: a module imports only from its own layer or the layers below it.

Read from the source (every ``import`` statement, at module level or inside a function, and ``__import__`` of a
constant), so a lazy import cannot hide an upward dependency. Inference (``api``) never imports training.
"""
from __future__ import annotations

import ast
from pathlib import Path

import occrecon

ROOT = Path(occrecon.__file__).resolve().parent

#: Bottom to top. A unit is a top-level module or sub-package of ``occrecon``.
LAYERS = (
    ("__init__", "_C", "assets", "device"),
    ("ops",),
    ("render",),
    ("morphable",),
    ("nets",),
    ("checkpoint",),
    ("losses",),
    ("data",),
    ("fit",),
    ("train",),
    ("eval",),
    ("api",),
    ("demo", "cli"),  # the applications
)
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
#: ``python -m`` entry points sit above everything.
ENTRY_POINTS = ("__main__",)
#: What the package root (``occrecon/__init__.py``, at the bottom: every layer may import it) loads itself: the
#: compiled extension and the ``occrecon.ops`` it exposes.
ROOT_IMPORTS = ("_C", "ops")


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path, module: str | None = None) -> list[tuple[str, int]]:
    """``(imported occrecon module, line)`` of the file ``path``, which is the module ``module`` (default: named
    by its place in the package)."""
    if module is None:
        module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
    package = module[: -len(".__init__")] if module.endswith(".__init__") else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                if node.module:
                    targets = [".".join(base + [node.module])]
                else:  # ``from .. import x``: a sub-module, or a name of the package itself
                    for a in node.names:
                        sub = ROOT.parent.joinpath(*base, a.name)
                        is_module = sub.is_dir() or sub.with_suffix(".py").is_file()
                        targets.append(".".join(base + [a.name]) if is_module else ".".join(base))
            elif node.module:
                targets = [node.module]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            targets = [node.args[0].value]
        out.extend((t, node.lineno) for t in targets if t == "occrecon" or t.startswith("occrecon."))
    return out


def _violations() -> list[str]:
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.stem in ENTRY_POINTS:
            continue
        rel = path.relative_to(ROOT.parent).with_suffix("")
        src = _unit(".".join(rel.parts))
        assert src in RANK, f"{path}: unit {src!r} has no layer in tests/test_layers.py"
        for target, line in _imports(path):
            dst = _unit(target)
            assert dst in RANK, f"{path}:{line}: imports {target}, whose unit {dst!r} has no layer"
            if src == "__init__" and path.parent == ROOT and dst in ROOT_IMPORTS:
                continue
            if RANK[dst] > RANK[src]:
                bad.append(f"{path.relative_to(ROOT.parent)}:{line}: {src} imports {target} (a higher layer)")
    return bad


def test_every_import_goes_down_the_layers():
    bad = _violations()
    assert not bad, "\n".join(bad)


def test_inference_does_not_import_training():
    api = [t for t, _ in _imports(ROOT / "api.py")]
    assert api and not [t for t in api if _unit(t) in ("train", "eval", "cli", "demo")], api


def test_the_reader_sees_lazy_relative_and_dunder_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import os\n"
                     "def f():\n    from ..api import Reconstructor\n    from . import camera\n"
                     "    return __import__('occrecon.train')\n", encoding="utf-8")
    found = [t for t, _ in _imports(probe, "occrecon.render.probe")]
    assert found == ["occrecon.api", "occrecon.render.camera", "occrecon.train"]
    assert RANK[_unit(found[0])] > RANK["render"]  # would be reported as an upward import
