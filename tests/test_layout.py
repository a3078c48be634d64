"""The package's layering, read from the source: who may import whom (imports inside functions count).

    config, errors, disk   pure: no JAX, nothing of the project above them
    data/                  NumPy pipeline: never the model, the engine, the run directory or JAX
    model/                 FlaxBertForPreTraining; of the engine, only the Task type (engine/step.py)
    engine/                steps, sharding, checkpoints, loop: generic over a Task, never the model
    run/                   the run directory and its logs: no JAX (`bert-flax report` needs none)
    cli/                   imported by nothing else
"""

from __future__ import annotations

import ast
import importlib
import sys
import warnings
from pathlib import Path

import pytest
from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "bert_flax"
JAX_STACK = ("jax", "jaxlib", "flax", "optax", "orbax")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it (absolute names; `from a import b` gives a and a.b)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


MODULES = {_module_name(path): _imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def _within(name: str, *prefixes: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _project_imports(module: str) -> set[str]:
    return {name for name in MODULES[module] if name in MODULES}


def _reachable(module: str) -> set[str]:
    """The project modules `module` imports, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        for name in _project_imports(todo.pop()) - seen:
            seen.add(name)
            todo.append(name)
    return seen


def _violations(modules: list[str], forbidden: tuple[str, ...], transitive: bool = False) -> dict[str, list[str]]:
    found = {}
    for module in modules:
        names = set(MODULES[module])
        if transitive:
            for other in _reachable(module):
                names |= {f"{name} (via {other})" for name in MODULES[other]}
        bad = sorted(name for name in names if _within(name.split(" ")[0], *forbidden))
        if bad:
            found[module] = bad
    return found


def _in(*packages: str) -> list[str]:
    return [module for module in MODULES if _within(module, *packages)]


def test_the_layout_reads_like_the_architecture() -> None:
    top = sorted(p.name for p in PACKAGE.iterdir() if not p.name.startswith(("_", ".")) and p.name != "__pycache__")
    assert [name for name in top if (PACKAGE / name).is_dir()] == [
        "cli", "data", "engine", "finetune", "interop", "model", "run"
    ]
    assert len(top) <= 15, f"bert_flax/ is growing flat again: {top}"


def test_config_and_the_pure_modules_import_no_jax_and_nothing_above_them() -> None:
    pure = ["bert_flax.config", "bert_flax.errors", "bert_flax.disk"]
    assert _violations(pure, JAX_STACK, transitive=True) == {}
    for module in pure:
        assert _reachable(module) <= {"bert_flax.errors"}, module


def test_data_never_imports_the_model_the_engine_the_run_dir_or_jax() -> None:
    forbidden = ("bert_flax.model", "bert_flax.engine", "bert_flax.run", "bert_flax.finetune", *JAX_STACK)
    assert _violations(_in("bert_flax.data"), forbidden, transitive=True) == {}


def test_the_engine_is_generic_over_tasks() -> None:
    forbidden = ("bert_flax.model", "bert_flax.interop", "bert_flax.finetune", "bert_flax.pretrain")
    assert _violations(_in("bert_flax.engine"), forbidden, transitive=True) == {}


def test_the_model_uses_only_the_task_type_of_the_engine() -> None:
    imported = {name for module in _in("bert_flax.model") for name in _project_imports(module)}
    engine = {name for name in imported if _within(name, "bert_flax.engine")}
    assert engine <= {"bert_flax.engine.step", "bert_flax.engine.step.Task"}


def test_the_run_directory_needs_no_jax() -> None:
    forbidden = (*JAX_STACK, "bert_flax.engine", "bert_flax.model")
    assert _violations(_in("bert_flax.run"), forbidden, transitive=True) == {}


def test_nothing_imports_the_cli() -> None:
    outside = [module for module in MODULES if not _within(module, "bert_flax.cli")]
    assert _violations(outside, ("bert_flax.cli",)) == {}


def test_the_rules_can_fail() -> None:
    """The checks above see imports inside functions and through other modules."""
    assert "bert_flax.data.bench" in _in("bert_flax.data")
    assert "jax" in {n.split(" ")[0] for n in sum(_violations(["bert_flax.pretrain"], ("jax",), True).values(), [])}
    assert _violations(["bert_flax.cli.train_verbs"], ("bert_flax.pretrain",)) != {}  # a lazy import


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("bert_flax.train_step", "bert_flax.engine.step"),
        ("bert_flax.train", "bert_flax.pretrain"),
        ("bert_flax.sources", "bert_flax.interop.sources"),
        ("bert_flax.throughput", "bert_flax.bench"),
    ],
)
def test_old_import_paths_still_work(old: str, new: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new):
        moved = importlib.import_module(old)
    assert moved is importlib.import_module(new)


def test_old_paths_of_split_and_replaced_modules() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from bert_flax.interop import to_torch_state
        from bert_flax.model import build_model
        from bert_flax.run_dir import check_run_dir, read_metrics
    from bert_flax.interop.torch_state import to_torch_state as torch_state
    from bert_flax.model.pretraining import build_model as pretraining_build
    from bert_flax.run.layout import check_run_dir as layout_check
    from bert_flax.run.metrics import read_metrics as metrics_reader

    assert (build_model, to_torch_state, read_metrics) == (pretraining_build, torch_state, metrics_reader)
    assert check_run_dir is layout_check
