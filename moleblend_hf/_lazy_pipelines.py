"""Register the molecule pipeline tasks as soon as `transformers.pipelines` is imported, without importing it.

`transformers.pipelines` imports every pipeline of the library (seconds); `import moleblend_hf` should stay fast,
yet `transformers.pipeline("molecule-property-prediction", ...)` must work right after it. A one-shot import hook
runs the registration right after that module finishes loading (or at once if it is already loaded).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

_TARGET = "transformers.pipelines"


def _register() -> None:
    from .pipelines import register_pipelines

    register_pipelines()


class _AfterPipelinesImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _TARGET:
            return None
        sys.meta_path.remove(self)  # one shot; also keeps find_spec below from recursing into this finder
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            _register()

        spec.loader.exec_module = exec_module
        return spec


def register_pipelines_on_import() -> None:
    if _TARGET in sys.modules:
        _register()
    elif not any(isinstance(finder, _AfterPipelinesImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterPipelinesImport())
