"""The directions of dependencies hold (``gateway`` -> ``suppressors`` -> ``index``, ``gateway``
-> ``removal`` -> ``index``; nothing of the service imports ``evals``), and vLLM's worker, which
loads the plugin, never imports training code. Every import counts, inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

from gateway.spawn import REPO

ALLOWED = {
    "gateway": {"gateway", "suppressors", "index", "removal"},
    "suppressors": {"suppressors", "index"},
    "removal": {"removal", "index"},
    "index": {"index"},
}
PROJECT = {*ALLOWED, "evals"}
TRAINING = ("removal", "suppressors.assistant", "suppressors.artifacts", "peft", "accelerate")


def imported(path: Path) -> set[str]:
    """The absolute module names a file imports, anywhere in it."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def source(module: str) -> Path | None:
    """The project file of ``module`` (a package's ``__init__``), if it is one."""
    path = REPO.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def test_packages_import_only_downwards() -> None:
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in sorted((REPO / package).rglob("*.py")):
            for name in imported(path):
                top = name.split(".")[0]
                if top in PROJECT and top not in allowed:
                    wrong.append(f"{path.relative_to(REPO)} imports {name}")
    assert wrong == []


def test_the_vllm_plugin_imports_no_training_code() -> None:
    seen: set[str] = set()
    todo = ["suppressors.vllm_plugin.worker", "suppressors.vllm_plugin.logits",
            "suppressors.vllm_plugin.logits_v2"]  # fmt: skip
    while todo:
        module = todo.pop()
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
        parts = module.split(".")
        chain = [".".join(parts[: i + 1]) for i in range(len(parts))]
        for name in chain:
            if name in seen:
                continue
            seen.add(name)
            if (path := source(name)) is not None:
                todo += [m for m in imported(path) if m.split(".")[0] in PROJECT or
                         m.split(".")[0] in ("peft", "accelerate")]  # fmt: skip
    reached = sorted(m for m in seen if m.startswith(TRAINING))
    assert reached == [], f"the plugin reaches training code: {reached}"


def test_the_suites_fixtures_take_nothing_from_evals() -> None:
    """The benchmarks are one more client of the gateway; the suite's fixtures are not theirs."""
    names = imported(REPO / "tests" / "conftest.py")
    assert not [name for name in names if name.split(".")[0] == "evals"]
