"""`transformers.pipeline` tasks for molecules: property prediction and embeddings.

    from transformers import pipeline
    import moleblend_hf  # registers the tasks
    predict = pipeline("molecule-property-prediction", model="my-finetuned-model")
    predict(["CCO", "c1ccccc1O"])         # [{"label": ..., "score": ...} or {"value": ...}, ...]
    embed = pipeline("molecule-feature-extraction", model="my-pretrained-model")
    embed("CCO")                           # graph embedding (list of floats)

This file is also uploaded with every pushed model (config `custom_pipelines`), so that
`pipeline(task, model=repo_id, trust_remote_code=True)` works without this package. It therefore imports nothing
from the package: the processor comes with the model (its `preprocessor_config.json`), and the error types are
taken from the processor's own module.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from transformers import AutoModel, AutoModelForSequenceClassification, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

PROPERTY_TASK = "molecule-property-prediction"
FEATURE_TASK = "molecule-feature-extraction"


#: a list is read this many batches at a time, and each such window is run in batches of similar atom counts
BUCKET_BATCHES = 16


class _MoleculePipeline(Pipeline):
    """Shared input handling; the processor comes as `feature_extractor`.

    A list of molecules is featurized, padded and run `batch_size` molecules at a time (by our processor: the
    generic pipeline collation does not know the relation tensors), molecules of similar atom counts together
    (within windows of `BUCKET_BATCHES` batches), and results come back in input order.
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
            try:
                from moleblend_hf.processing import MoleBlendProcessor
            except ImportError as error:
                raise ValueError(
                    "this model has no preprocessor_config.json: pass feature_extractor=<its MoleBlendProcessor>"
                ) from error
            self.feature_extractor = MoleBlendProcessor.from_config(self.model.config)
        # the processor's module (installed package or the repo's remote code) defines the errors it raises
        self._processing = sys.modules[type(self.feature_extractor).__module__]
        self.skipped: list = []  # SkippedMolecule of the processor's module

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
        except self._processing.MoleculeError as error:
            if errors == "raise":
                raise
            self.skipped.append(
                self._processing.SkippedMolecule(index, self._processing.describe(molecule), error.reason)
            )
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
        """Windows of `BUCKET_BATCHES` batches: featurized, run in batches of similar atom counts (little
        padding), results given back in input order (memory bounded by one window, whatever the input's length)."""
        chunk: list[tuple[int, Any]] = []
        for index, molecule in enumerate(inputs):
            chunk.append((index, molecule))
            if len(chunk) == batch_size * BUCKET_BATCHES:
                yield from self._run_window(chunk, batch_size, preprocess_params, forward_params, postprocess_params)
                chunk = []
        if chunk:
            yield from self._run_window(chunk, batch_size, preprocess_params, forward_params, postprocess_params)

    def _run_window(self, chunk, batch_size, preprocess_params, forward_params, postprocess_params):
        prepared = [self.preprocess(molecule, index=index, **preprocess_params) for index, molecule in chunk]
        good = sorted(
            (i for i, p in enumerate(prepared) if "features" in p),
            key=lambda i: prepared[i]["features"][0]["num_atoms"],
        )
        rows: dict[int, Any] = {}
        for start in range(0, len(good), batch_size):
            members = good[start : start + batch_size]
            features = [prepared[i]["features"][0] for i in members]
            rows.update(zip(members, self._rows(self.forward({"features": features}, **forward_params), features)))
        for i, item in enumerate(prepared):
            yield None if "skipped" in item else self.postprocess(rows[i], **postprocess_params)


class MoleculePropertyPipeline(_MoleculePipeline):
    """Predictions of a fine-tuned `MoleBlendForPropertyPrediction` for SMILES (or any processor input).

    Regression: `{"label": target, "value": ...}` per target (original units); binary and multi-label tasks:
    `{"label": task, "score": p}` per task; multi-class: the classes sorted by probability (`top_k`, default all).
    `ensemble=[model, ...]`: further members (e.g. the seeds or folds of `moleblend finetune --seeds` /
    `--kfold`, see `moleblend_hf.pipeline`); each result is then the members' mean, with their standard
    deviation as `"std"`.
    `calibration`: what `moleblend finetune` fitted on its validation split (its ensemble.json / calibration.json;
    `moleblend_hf.pipeline` passes it): regression ensembles add `"calibrated_std"` (std x the fitted scale),
    classification ensembles `"calibrated_score"` (the temperature-scaled mean logit's probability), conformal
    intervals `"lower"` and `"upper"`.
    """

    def __init__(self, *args, ensemble: list | tuple = (), calibration: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.calibration = calibration or {}
        for member in (self.model, *ensemble):
            if getattr(member, "has_trained_head", True) is False:  # remote code of older versions lacks it
                architecture = (member.config.architectures or ["encoder"])[0]
                raise ValueError(
                    f"{member.config.name_or_path or 'the model'}: no trained property head (a "
                    f"{architecture} checkpoint, e.g. from pretraining): its predictions would come "
                    "from randomly initialised weights; fine-tune it first"
                )
        reference = self._task_of(self.model.config)
        for member in ensemble:
            if self._task_of(member.config) != reference:
                raise ValueError(
                    f"ensemble members predict different things: {self._task_of(member.config)} vs "
                    f"{reference}; an ensemble needs models of one task"
                )
        self.members = [self.model, *(member.to(self.device).eval() for member in ensemble)]

    @staticmethod
    def _task_of(config) -> tuple:
        return config.problem_type, config.num_labels, dict(config.id2label)

    def _postprocess_parameters(self, top_k: int | None = None, **kwargs) -> dict:
        super()._postprocess_parameters(**kwargs)
        return {"top_k": top_k} if top_k is not None else {}

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> Any:
        problem_type = self.model.config.problem_type
        logits = torch.stack([member(**model_inputs).logits.float() for member in self.members])
        if problem_type == "single_label_classification":
            return {"values": logits.softmax(-1), "logits": logits}
        if problem_type == "multi_label_classification":
            return {"values": logits.sigmoid(), "logits": logits}
        return {"values": logits, "logits": logits}  # regression heads return label units

    def _rows(self, outputs, batch):
        return [{"values": outputs["values"][:, i], "logits": outputs["logits"][:, i]} for i in range(len(batch))]

    def _calibrated(self, logits: torch.Tensor) -> dict[str, list[float]]:
        """The calibrated outputs of one molecule's member logits [members, outputs] (the same arithmetic as
        moleblend_hf.inference.calibration.apply_calibration, which this file, shipped alone, cannot import)."""
        logits, found = logits.double(), {}
        mean = logits.mean(0)
        std = logits.std(0, unbiased=False) if len(logits) > 1 else None
        if "std_scale" in self.calibration and std is not None:
            found["calibrated_std"] = std * torch.tensor(self.calibration["std_scale"], dtype=std.dtype)
        if "temperature" in self.calibration:
            scaled = mean / torch.tensor(self.calibration["temperature"], dtype=mean.dtype)
            found["calibrated_score"] = (
                scaled.softmax(-1)
                if self.model.config.problem_type == "single_label_classification"
                else scaled.sigmoid()
            )
        conformal = self.calibration.get("conformal")
        if conformal and (std is not None or conformal["score"] == "|y - mean|"):
            half = torch.tensor([float(q) for q in conformal["quantiles"]], dtype=mean.dtype)
            half = half if conformal["score"] == "|y - mean|" else half * std.clamp_min(1e-8)
            found["lower"], found["upper"] = mean - half, mean + half
        return {key: value.tolist() for key, value in found.items()}

    def postprocess(self, model_outputs, top_k: int | None = None):
        values = model_outputs["values"]  # [members, outputs]
        mean = values.mean(0)
        std = values.std(0, unbiased=False) if len(values) > 1 else None
        config = self.model.config
        names = [config.id2label.get(i, f"LABEL_{i}") for i in range(config.num_labels)]
        key = "value" if config.problem_type == "regression" else "score"
        calibrated = self._calibrated(model_outputs["logits"]) if self.calibration else {}
        rows = [
            {
                "label": name,
                key: float(mean[i]),
                **({"std": float(std[i])} if std is not None else {}),
                **{k: float(v[i]) for k, v in calibrated.items()},
            }
            for i, name in enumerate(names)
        ]
        if config.problem_type == "single_label_classification":
            rows = sorted(rows, key=lambda row: -row["score"])[: top_k or len(rows)]
        return rows


class MoleculeFeatureExtractionPipeline(_MoleculePipeline):
    """Graph embedding (the graph token) of each molecule; `atoms=True` adds the per-atom embeddings."""

    def _postprocess_parameters(self, atoms: bool | None = None, **kwargs) -> dict:
        super()._postprocess_parameters(**kwargs)
        return {"atoms": atoms} if atoms is not None else {}

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> Any:
        return {
            "hidden": self.model(**model_inputs).last_hidden_state,
            "atoms": model_inputs["attention_mask"].sum(1).tolist(),
        }

    def _rows(self, outputs, batch):
        return [{"hidden": outputs["hidden"][i : i + 1], "atoms": [outputs["atoms"][i]]} for i in range(len(batch))]

    def postprocess(self, model_outputs, atoms: bool = False):
        hidden = model_outputs["hidden"][0].float()
        if not atoms:
            return hidden[0].tolist()
        return {"molecule": hidden[0].tolist(), "atoms": hidden[1 : 1 + int(model_outputs["atoms"][0])].tolist()}


def register_pipelines() -> None:
    PIPELINE_REGISTRY.register_pipeline(
        PROPERTY_TASK,
        pipeline_class=MoleculePropertyPipeline,
        pt_model=AutoModelForSequenceClassification,
        type="multimodal",
    )
    PIPELINE_REGISTRY.register_pipeline(
        FEATURE_TASK, pipeline_class=MoleculeFeatureExtractionPipeline, pt_model=AutoModel, type="multimodal"
    )


def custom_pipelines(architectures: list[str] | None) -> dict[str, dict[str, Any]]:
    """The `custom_pipelines` entry of a pushed model's config.json (this file is uploaded as `pipelines.py`):
    embeddings for every MoleBLEND model, and property prediction for fine-tuned ones. An encoder repo has one task,
    so `pipeline(model=repo_id, trust_remote_code=True)` needs no task name; a fine-tuned repo needs it."""
    tasks = {
        FEATURE_TASK: {
            "impl": f"pipelines.{MoleculeFeatureExtractionPipeline.__name__}",
            "pt": ["AutoModel"],
            "tf": [],
            "type": "multimodal",
        }
    }
    if "MoleBlendForPropertyPrediction" in (architectures or []):
        tasks[PROPERTY_TASK] = {
            "impl": f"pipelines.{MoleculePropertyPipeline.__name__}",
            "pt": ["AutoModelForSequenceClassification"],
            "tf": [],
            "type": "multimodal",
        }
    return tasks
