"""Register MoleBLEND with transformers' Auto classes and pipelines when transformers loads them.

`import moleblend_hf` must stay light (the `moleblend` command answers `--help` without importing torch), yet
`AutoModel.from_pretrained(dir)` and `pipeline("molecule-property-prediction", ...)` must work right after it.
Each registration therefore runs once, right after the transformers module it needs has finished loading (or at
once if it is already loaded): the config when `configuration_auto` loads, the models when `modeling_auto` loads
(which transformers only does once `modeling_utils` is complete, so the model classes can be imported), the
processor with `feature_extraction_auto` / `processing_auto`, and the pipeline tasks with `transformers.pipelines`.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable


def _register_config() -> None:
    from transformers import AutoConfig

    from .modeling import MoleBlendConfig

    AutoConfig.register(MoleBlendConfig.model_type, MoleBlendConfig, exist_ok=True)


def _register_models() -> None:
    from transformers import AutoModel, AutoModelForPreTraining, AutoModelForSequenceClassification

    from .modeling import MoleBlendConfig, MoleBlendForPreTraining, MoleBlendForPropertyPrediction, MoleBlendModel

    AutoModel.register(MoleBlendConfig, MoleBlendModel, exist_ok=True)
    AutoModelForPreTraining.register(MoleBlendConfig, MoleBlendForPreTraining, exist_ok=True)
    AutoModelForSequenceClassification.register(MoleBlendConfig, MoleBlendForPropertyPrediction, exist_ok=True)


def _register_processor() -> None:
    from transformers import AutoFeatureExtractor, AutoProcessor

    from .modeling import MoleBlendConfig
    from .processing import MoleBlendProcessor

    AutoFeatureExtractor.register(MoleBlendConfig, MoleBlendProcessor, exist_ok=True)
    AutoProcessor.register(MoleBlendConfig, MoleBlendProcessor, exist_ok=True)


def _register_pipelines() -> None:
    from .inference.pipelines import register_pipelines

    register_pipelines()


#: (transformers module that must be loaded, registration); each runs once
REGISTRATIONS: list[tuple[str, Callable[[], None]]] = [
    ("transformers.models.auto.configuration_auto", _register_config),
    ("transformers.models.auto.modeling_auto", _register_models),
    ("transformers.models.auto.feature_extraction_auto", _register_processor),
    ("transformers.models.auto.processing_auto", _register_processor),
    ("transformers.pipelines", _register_pipelines),
]
#: modules whose loading may make a registration possible
# the model code (`moleblend_hf.modeling`) is watched too: registrations that waited for it to finish loading run
# right after it, so the model code itself never imports this module
_WATCHED = {name for name, _ in REGISTRATIONS} | {
    "transformers.modeling_utils",
    "moleblend_hf.modeling",
    "moleblend_hf.inference.pipelines",
}
_done: set[int] = set()


def _initializing(name: str) -> bool:
    module = sys.modules.get(name)
    return module is not None and bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


def sync(just_loaded: str | None = None) -> None:
    """Run every registration whose transformers module is loaded, unless a module the model code imports is
    still loading (then a later load of a watched module, e.g. the end of `moleblend_hf.modeling`, runs it).
    `just_loaded` has finished executing though the import system still flags it as loading."""
    # the model code imports from all over transformers: register only when no module of it (or of ours) is mid-import
    if any(
        _initializing(name)
        for name in list(sys.modules)
        if name != just_loaded
        and name.startswith(("transformers.", "moleblend_hf.modeling", "moleblend_hf.inference.pipelines"))
    ):
        return
    for index, (name, register) in enumerate(REGISTRATIONS):
        if index not in _done and name in sys.modules:
            _done.add(index)
            register()


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls `sync()` right after a watched module finishes executing."""

    def find_spec(self, name, path, target=None):
        if name not in _WATCHED:
            return None
        sys.meta_path.remove(self)  # find the real spec without answering again
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            sync(just_loaded=name)

        spec.loader.exec_module = exec_module
        return spec


def register_when_loaded() -> None:
    """Register now with what transformers has loaded; the rest when it loads."""
    if not any(isinstance(finder, _AfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())
    sync()
