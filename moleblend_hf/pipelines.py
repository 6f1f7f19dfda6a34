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

from .processing import MoleBlendProcessor


class _MoleculePipeline(Pipeline):
    """Shared input handling: one molecule per call of `preprocess`; the processor comes as `feature_extractor`."""

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.feature_extractor is None:
            self.feature_extractor = MoleBlendProcessor(max_atoms=self.model.config.max_atoms,
                                                        max_path_hops=self.model.config.max_path_hops)

    def preprocess(self, molecule: Any) -> dict[str, torch.Tensor]:
        return dict(self.feature_extractor([molecule], return_tensors="pt"))

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> Any:
        return self.model(**model_inputs)


class MoleculePropertyPipeline(_MoleculePipeline):
    """Predictions of a fine-tuned `MoleBlendForPropertyPrediction` for SMILES (or any processor input).

    Regression: `{"value": ...}` per target (original units); binary tasks: `{"label": task, "score": p}` per task;
    multi-class: the classes sorted by probability (`top_k`, default all).
    """

    def _sanitize_parameters(self, top_k: int | None = None, **kwargs):
        return {}, {}, ({"top_k": top_k} if top_k is not None else {})

    def postprocess(self, model_outputs, top_k: int | None = None):
        logits = model_outputs.logits[0].float()
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

    def _sanitize_parameters(self, atoms: bool | None = None, **kwargs):
        return {}, {}, ({"atoms": atoms} if atoms is not None else {})

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> Any:
        return {"hidden": self.model(**model_inputs).last_hidden_state,
                "atoms": int(model_inputs["attention_mask"].sum())}

    def postprocess(self, model_outputs, atoms: bool = False):
        hidden = model_outputs["hidden"][0].float()
        if not atoms:
            return hidden[0].tolist()
        return {"molecule": hidden[0].tolist(), "atoms": hidden[1: 1 + model_outputs["atoms"]].tolist()}


def register_pipelines() -> None:
    PIPELINE_REGISTRY.register_pipeline(
        "molecule-property-prediction", pipeline_class=MoleculePropertyPipeline,
        pt_model=AutoModelForSequenceClassification, type="multimodal")
    PIPELINE_REGISTRY.register_pipeline(
        "molecule-feature-extraction", pipeline_class=MoleculeFeatureExtractionPipeline, pt_model=AutoModel,
        type="multimodal")
