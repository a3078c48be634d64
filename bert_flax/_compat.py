"""The import paths of bert_flax before its modules were grouped into subpackages, kept importable.

`import bert_flax.train_step` (say) still works: it warns once (DeprecationWarning) and gives the
module that now holds that code, so monkeypatching through either name patches the same object.
An old module whose public names now live in several modules gives a forwarding module.
Remove an entry once nothing outside the project uses its old path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Any

# old module → the module(s) that now hold its public names, searched in order
MOVED: dict[str, tuple[str, ...]] = {
    "bert_flax.architectures": ("bert_flax.model.architectures",),
    "bert_flax.checkpoint": ("bert_flax.engine.checkpoint",),
    "bert_flax.export": ("bert_flax.interop.export",),
    "bert_flax.flops": ("bert_flax.model.flops",),
    "bert_flax.loop": ("bert_flax.engine.loop",),
    "bert_flax.losses": ("bert_flax.model.losses",),
    "bert_flax.optim": ("bert_flax.engine.optim",),
    "bert_flax.parallel": ("bert_flax.engine.parallel",),
    "bert_flax.pmap": ("bert_flax.engine.pmap",),
    "bert_flax.predict": ("bert_flax.interop.predict",),
    "bert_flax.predict_heads": ("bert_flax.interop.predict_heads",),
    "bert_flax.preemption": ("bert_flax.engine.preemption",),
    "bert_flax.prefetch": ("bert_flax.engine.prefetch",),
    "bert_flax.progress": ("bert_flax.run.progress",),
    "bert_flax.reference": ("bert_flax.cli.reference",),
    "bert_flax.report": ("bert_flax.run.report",),
    "bert_flax.run_dir": ("bert_flax.run.layout", "bert_flax.run.metrics", "bert_flax.disk"),
    "bert_flax.sources": ("bert_flax.interop.sources",),
    "bert_flax.tensorboard": ("bert_flax.run.tensorboard",),
    "bert_flax.throughput": ("bert_flax.bench",),
    "bert_flax.train": ("bert_flax.pretrain",),
    "bert_flax.train_step": ("bert_flax.engine.step",),
    "bert_flax.verify": ("bert_flax.interop.verify",),
    "bert_flax.wandb_log": ("bert_flax.run.wandb_log",),
}


class _Forwarding(types.ModuleType):
    """An old module split over several new ones: attributes are looked up in each, in order."""

    def __init__(self, name: str, targets: tuple[str, ...]) -> None:
        super().__init__(name, f"moved to {', '.join(targets)}")
        self._targets = targets

    def __getattr__(self, attribute: str) -> Any:
        for target in self._targets:
            module = importlib.import_module(target)
            if hasattr(module, attribute):
                return getattr(module, attribute)
        raise AttributeError(f"module {self.__name__!r} (moved to {', '.join(self._targets)}) has no {attribute!r}")


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.machinery.ModuleSpec(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        targets = MOVED[module.__name__]
        warnings.warn(
            f"{module.__name__} moved to {' and '.join(targets)}; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        # The import system returns whatever sys.modules holds under the name after this call.
        sys.modules[module.__name__] = (
            importlib.import_module(targets[0]) if len(targets) == 1 else _Forwarding(module.__name__, targets)
        )


def install() -> None:
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())


def forward_attributes(package: str, target: str, names: frozenset[str]) -> Any:
    """A module `__getattr__` for a package that replaced a module of the same name: `names` (the old
    module's public names) come from `target`, with a DeprecationWarning; nothing else is imported."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        message = f"{package}.{name} moved to {target}.{name}; import it from there"
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(target), name)

    return __getattr__
