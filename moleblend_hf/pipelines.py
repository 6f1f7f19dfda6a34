"""`transformers.pipeline` tasks for molecules: property prediction and embeddings.

    from transformers import pipeline
    import moleblend_hf  # registers the tasks
    predict = pipeline("molecule-property-prediction", model="my-finetuned-model")
    predict(["CCO", "c1ccccc1O"])         # [{"label": ..., "score": ...} or {"value": ...}, ...]
    embed = pipeline("molecule-feature-extraction", model="my-pretrained-model")
    embed("CCO")                           # graph embedding (list of floats)
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoModel, AutoModelForSequenceClassification, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .processing import MoleBlendProcessor, MoleculeError, SkippedMolecule
from .processing.processing_moleblend import describe


class _MoleculePipeline(Pipeline):
    """Shared input handling; the processor comes as `feature_extractor`.

    A list of molecules is featurized, padded and run `batch_size` molecules at a time (by our processor: the
    generic pipeline collation does not know the relation tensors), and results come back in input order.
    `errors="raise"` (default) stops at the first bad molecule with a `MoleculeError` naming its index in the
    input; `errors="skip"` returns `None` in its place and records it in `pipeline.skipped` (index, input, reason).
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.feature_extractor is None:
            self.feature_extractor = MoleBlendProcessor.from_config(self.model.config)
        self.skipped: list[SkippedMolecule] = []

    def _sanitize_parameters(self, errors: str | None = None, **kwargs):
        if errors is not None and errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
        preprocess = {"errors": errors} if errors is not None else {}
        return preprocess, {}, self._postprocess_parameters(**kwargs)

    def _postprocess_parameters(self, **kwargs) -> dict:
        if kwargs:
            raise TypeError(f"unexpected pipeline argument(s) {sorted(kwargs)}")
        return {}

    def __call__(self, inputs, *args, **kwargs):
        self.skipped = []
        return super().__call__(inputs, *args, **kwargs)

    def preprocess(self, molecule: Any, errors: str = "raise", index: int = 0) -> dict[str, Any]:
        try:
            return {"features": [self.feature_extractor.featurize(molecule, index)]}
        except MoleculeError as error:
            if errors == "raise":
                raise
            self.skipped.append(SkippedMolecule(index, describe(molecule), error.reason))
            return {"skipped": error.reason}

    def forward(self, model_inputs: dict[str, Any], **forward_params) -> Any:
        if "skipped" in model_inputs:
            return model_inputs
        batch = self.feature_extractor.pad(model_inputs["features"], return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.inference_mode():
            return self._forward(batch, **forward_params)

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> Any:
        return self.model(**model_inputs)

    def _rows(self, outputs: Any, batch: dict[str, Any]) -> list[Any]:
        """Split the outputs of a padded batch into per-molecule outputs of batch size 1."""
        raise NotImplementedError

    def run_single(self, inputs, preprocess_params, forward_params, postprocess_params):
        outputs = self.forward(self.preprocess(inputs, **preprocess_params), **forward_params)
        return None if "skipped" in outputs else self.postprocess(outputs, **postprocess_params)

    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params):
        return self._iterate(inputs, batch_size or 1, preprocess_params, forward_params, postprocess_params)

    def _iterate(self, inputs, batch_size, preprocess_params, forward_params, postprocess_params):
        chunk: list[tuple[int, Any]] = []
        for index, molecule in enumerate(inputs):
            chunk.append((index, molecule))
            if len(chunk) == batch_size:
                yield from self._run_chunk(chunk, preprocess_params, forward_params, postprocess_params)
                chunk = []
        if chunk:
            yield from self._run_chunk(chunk, preprocess_params, forward_params, postprocess_params)

    def _run_chunk(self, chunk, preprocess_params, forward_params, postprocess_params):
        prepared = [self.preprocess(molecule, index=index, **preprocess_params) for index, molecule in chunk]
        good = [p["features"][0] for p in prepared if "features" in p]
        rows = iter(self._rows(self.forward({"features": good}, **forward_params), good) if good else [])
        for item in prepared:
            yield None if "skipped" in item else self.postprocess(next(rows), **postprocess_params)


class MoleculePropertyPipeline(_MoleculePipeline):
    """Predictions of a fine-tuned `MoleBlendForPropertyPrediction` for SMILES (or any processor input).

    Regression: `{"value": ...}` per target (original units); binary tasks: `{"label": task, "score": p}` per task;
    multi-class: the classes sorted by probability (`top_k`, default all).
    """

    def _postprocess_parameters(self, top_k: int | None = None, **kwargs) -> dict:
        super()._postprocess_parameters(**kwargs)
        return {"top_k": top_k} if top_k is not None else {}

    def _rows(self, outputs, batch):
        return [{"logits": outputs.logits[i: i + 1]} for i in range(len(batch))]

    def postprocess(self, model_outputs, top_k: int | None = None):
        logits = model_outputs["logits"][0].float()
        config = self.model.config
        names = [config.id2label.get(i, f"LABEL_{i}") for i in range(config.num_labels)]
        if config.problem_type == "regression":
            return [{"label": name, "value": float(v)} for name, v in zip(names, logits)]
        if config.problem_type == "multi_label_classification":
            return [{"label": name, "score": float(p)} for name, p in zip(names, torch.sigmoid(logits))]
        probabilities = torch.softmax(logits, dim=-1)
        ranked = sorted(zip(names, probabilities.tolist()), key=lambda item: -item[1])
        return [{"label": name, "score": p} for name, p in ranked[: top_k or len(ranked)]]


class MoleculeFeatureExtractionPipeline(_MoleculePipeline):
    """Graph embedding (the graph token) of each molecule; `atoms=True` adds the per-atom embeddings."""

    def _postprocess_parameters(self, atoms: bool | None = None, **kwargs) -> dict:
        super()._postprocess_parameters(**kwargs)
        return {"atoms": atoms} if atoms is not None else {}

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> Any:
        return {"hidden": self.model(**model_inputs).last_hidden_state,
                "atoms": model_inputs["attention_mask"].sum(1).tolist()}

    def _rows(self, outputs, batch):
        return [{"hidden": outputs["hidden"][i: i + 1], "atoms": [outputs["atoms"][i]]} for i in range(len(batch))]

    def postprocess(self, model_outputs, atoms: bool = False):
        hidden = model_outputs["hidden"][0].float()
        if not atoms:
            return hidden[0].tolist()
        return {"molecule": hidden[0].tolist(), "atoms": hidden[1: 1 + int(model_outputs["atoms"][0])].tolist()}


def register_pipelines() -> None:
    PIPELINE_REGISTRY.register_pipeline(
        "molecule-property-prediction", pipeline_class=MoleculePropertyPipeline,
        pt_model=AutoModelForSequenceClassification, type="multimodal")
    PIPELINE_REGISTRY.register_pipeline(
        "molecule-feature-extraction", pipeline_class=MoleculeFeatureExtractionPipeline, pt_model=AutoModel,
        type="multimodal")
