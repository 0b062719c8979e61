"""Imports run one way: `model/` at the bottom, `data/` on it, `training/` and `eval/` beside
each other on both, the command lines (`predict.py`, `pipeline.py`) on top.

Every import statement counts, including those inside functions, because a lazy import of
the wrong layer is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALLOWED: dict[str, set[str]] = {
    "model": {"model"},
    "data": {"model", "data"},
    "training": {"model", "data", "training"},
    "eval": {"model", "data", "eval"},
}
PROJECT = {"model", "data", "training", "eval", "predict", "pipeline"}


def project_imports(path: Path) -> set[str]:
    """Top-level project packages a file imports (absolute imports only; we use no others)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {n.split(".")[0] for n in names} & PROJECT
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_what_is_below_or_beside_it(layer: str) -> None:
    bad = {
        f"{p.relative_to(ROOT)} imports {sorted(project_imports(p) - ALLOWED[layer])}"
        for p in sorted((ROOT / layer).rglob("*.py"))
        if project_imports(p) - ALLOWED[layer]
    }
    assert not bad, "\n".join(sorted(bad))


def test_the_walker_sees_imports_inside_functions(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f():\n    from eval.harness import evaluate\n    import training.runner\n"
    )
    assert project_imports(probe) == {"eval", "training"}
