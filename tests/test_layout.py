"""The package's layering, read from the source: who may import whom, directly or through other modules
(imports inside functions count).

Layers, bottom up; a module may reach (transitively) only its own layer and those below it:

    config, errors, disk, hub, formats,  pure utilities: no JAX, nothing of the project but errors
    storage                              (storage: errors and disk, the local half of its writes)
    data/                                NumPy pipeline: never JAX
    run/                                 the run directory and its logs: no JAX (`bert-flax report` needs none)
    engine/                              steps, sharding, checkpoints, loop: generic over a Task
    model/                               FlaxBertForPreTraining and the fast impl; of the engine, the Task type
    interop/                             model sources, export, inference with the pre-training heads
    finetune/                            task heads, their data, loop and inference
    pretrain, evaluate, bench/           orchestration: none imports another
    cli/                                 imported by nothing else
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "bert_flax"
JAX_STACK = ("jax", "jaxlib", "flax", "optax", "orbax")
LAYERS = (
    (
        "bert_flax",
        "bert_flax.config",
        "bert_flax.errors",
        "bert_flax.disk",
        "bert_flax.hub",
        "bert_flax.formats",
        "bert_flax.storage",
    ),
    ("bert_flax.data",),
    ("bert_flax.run",),
    ("bert_flax.engine",),
    ("bert_flax.model",),
    ("bert_flax.interop",),
    ("bert_flax.finetune",),
    ("bert_flax.pretrain", "bert_flax.evaluate", "bert_flax.bench"),
    ("bert_flax.cli",),
)
ORCHESTRATORS = LAYERS[-2]

Graph = dict[str, set[str]]  # module → the modules it names in its imports (project and third-party)


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


GRAPH: Graph = {_module_name(path): _imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def _within(name: str, *prefixes: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _group(module: str, groups: tuple[tuple[str, ...], ...]) -> int:
    """The index of the group (layer) holding `module`: the one with the longest matching prefix."""
    matches = [(len(prefix), index) for index, group in enumerate(groups) for prefix in group if _within(module, prefix)]
    return max(matches)[1]


def _reachable(graph: Graph, module: str) -> dict[str, str]:
    """Every project module `module` imports directly or through others → the chain that gets there."""
    chains: dict[str, str] = {}
    todo = [(module, module)]
    while todo:
        current, chain = todo.pop()
        for name in sorted(graph[current]):
            if name in graph and name not in chains and name != module:
                chains[name] = f"{chain} → {name}"
                todo.append((name, chains[name]))
    return chains


def _orchestrator(module: str) -> str | None:
    return next((prefix for prefix in ORCHESTRATORS if _within(module, prefix)), None)


def upward_imports(graph: Graph) -> list[str]:
    """The import chains that reach a module of a higher layer, or from one orchestrator into another."""
    found = []
    for module in graph:
        for target, chain in _reachable(graph, module).items():
            if _group(target, LAYERS) > _group(module, LAYERS):
                found.append(chain)
            elif _orchestrator(module) and _orchestrator(target) not in (None, _orchestrator(module)):
                found.append(chain)
    return sorted(found)


def third_party_reach(graph: Graph, modules: list[str], forbidden: tuple[str, ...]) -> list[str]:
    """Chains from `modules` to a forbidden third-party package, directly or through project modules."""
    found = []
    for module in modules:
        for via, chain in {module: module, **_reachable(graph, module)}.items():
            found += [f"{chain} → {name}" for name in sorted(graph[via]) if _within(name, *forbidden)]
    return sorted(set(found))


def _in(*packages: str) -> list[str]:
    return [module for module in GRAPH if _within(module, *packages)]


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = [m for m in GRAPH if not any(_within(m, p) for group in LAYERS for p in group)]
    assert unplaced == []
    top = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    assert top == ["bench", "cli", "data", "engine", "finetune", "interop", "model", "run"]


def test_imports_only_point_down() -> None:
    assert upward_imports(GRAPH) == []


def test_the_pure_modules_import_no_jax_and_only_errors() -> None:
    pure = [m for m in GRAPH if _group(m, LAYERS) == 0]
    assert third_party_reach(GRAPH, pure, JAX_STACK) == []
    assert {target for m in pure if m != "bert_flax.storage" for target in _reachable(GRAPH, m)} <= {"bert_flax.errors"}
    assert set(_reachable(GRAPH, "bert_flax.storage")) <= {"bert_flax.errors", "bert_flax.disk"}


def test_data_and_run_need_no_jax() -> None:
    assert third_party_reach(GRAPH, _in("bert_flax.data", "bert_flax.run"), JAX_STACK) == []


def test_the_model_uses_only_the_task_type_of_the_engine() -> None:
    imported = {name for module in _in("bert_flax.model") for name in GRAPH[module]}
    assert {name for name in imported if _within(name, "bert_flax.engine")} <= {
        "bert_flax.engine.step",
        "bert_flax.engine.step.Task",
    }


def test_the_cli_parser_imports_no_jax() -> None:
    """`bert-flax --help` and every verb's parser build without importing JAX (verbs import it when run)."""
    code = "import sys; from bert_flax.cli import build_parser; build_parser(); print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'transformers')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert out.stdout.strip() == "[]"


def test_the_rules_fail_on_the_chains_they_forbid() -> None:
    """Each chain a past layout had, in a small graph: the checks above name it."""
    graph: Graph = {
        "bert_flax.model.pretraining": {"bert_flax.interop.sources"},
        "bert_flax.interop.sources": {"bert_flax.engine.checkpoint"},
        "bert_flax.engine.checkpoint": {"bert_flax.data.pipeline"},
        "bert_flax.data.pipeline": {"numpy"},
        "bert_flax.interop.predict_heads": {"bert_flax.finetune.squad"},
        "bert_flax.finetune.squad": set(),
        "bert_flax.evaluate": {"bert_flax.pretrain"},
        "bert_flax.pretrain": {"bert_flax.run.layout"},
        "bert_flax.run.layout": {"bert_flax.engine.loop"},
        "bert_flax.engine.loop": {"jax"},
        "bert_flax.bench.run": {"bert_flax.bench.timing"},
        "bert_flax.bench.timing": set(),
    }
    found = upward_imports(graph)
    assert "bert_flax.model.pretraining → bert_flax.interop.sources" in found  # model → interop
    assert "bert_flax.interop.predict_heads → bert_flax.finetune.squad" in found  # interop → finetune
    assert "bert_flax.evaluate → bert_flax.pretrain" in found  # orchestrator → orchestrator
    assert "bert_flax.run.layout → bert_flax.engine.loop" in found
    assert not [chain for chain in found if chain.startswith("bert_flax.bench.run")]  # inside one orchestrator
    assert not [chain for chain in found if chain.startswith("bert_flax.interop.sources →")]  # engine, data: down
    reach = third_party_reach(graph, ["bert_flax.pretrain"], JAX_STACK)
    assert reach == ["bert_flax.pretrain → bert_flax.run.layout → bert_flax.engine.loop → jax"]  # transitive
    assert "bert_flax.cli.train_verbs" in GRAPH and "bert_flax.pretrain" in GRAPH["bert_flax.cli.train_verbs"]
