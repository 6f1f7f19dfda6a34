"""Model cards of MoleBLEND models: a `huggingface_hub.ModelCard` (metadata with a `model-index`, and a body
describing architecture, pretraining, evaluation, limits and usage) built from a saved directory.

Evaluation results (`metrics.json`)
-----------------------------------
When the directory holds a `metrics.json`, the card's metadata gets a `model-index` with its results. The file
is one object, or a list of them::

    {"task": "regression",            # task type, free text (e.g. "regression", "classification")
     "dataset": "esol",               # dataset id (a Hub dataset id where there is one) or short name
     "dataset_name": "ESOL",          # optional, human-readable (default: "dataset")
     "split": "test",                 # optional
     "metrics": {"rmse": 0.61, "mae": 0.45}}   # metric name -> number

The result file of `moleblend finetune` (with `problem_type`, `data` and `test` metrics) is read as well.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..modeling import MoleBlendConfig

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
CARD_FILE = "README.md"
PROCESSOR_FILE = "preprocessor_config.json"
DEFAULT_TAGS = ("chemistry", "molecules", "moleblend", "graph-transformer", "3d", "molecular-representation")
# Trainer bookkeeping in a fine-tuning result, not evaluation metrics.
_NOT_METRICS = {"runtime", "samples_per_second", "steps_per_second", "epoch"}
_CITATION = """@inproceedings{yu2024moleblend,
  title     = {Multimodal Molecular Pretraining via Modality Blending},
  author    = {Yu, Qiying and Zhang, Yudi and Ni, Yuyan and Feng, Shikun and Lan, Yanyan and Zhou, Hao and
               Liu, Jingjing},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2024}
}"""


def load_metrics(source: str | Path | dict | list | None) -> list[dict[str, Any]]:
    """Evaluation results in the `metrics.json` format (see the module docstring), validated; [] for None."""
    if source is None:
        return []
    if isinstance(source, (str, Path)):
        source = json.loads(Path(source).read_text())
    entries = source if isinstance(source, list) else [source]
    for entry in entries:
        if not isinstance(entry, dict) or not {"task", "dataset", "metrics"} <= set(entry):
            raise ValueError(f"metrics entries need 'task', 'dataset' and 'metrics' keys, got {entry!r}")
        if not isinstance(entry["metrics"], dict) or not entry["metrics"]:
            raise ValueError(f"'metrics' must map metric names to numbers, got {entry['metrics']!r}")
        for name, value in entry["metrics"].items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"metric {name!r} must be a number, got {value!r}")
    return entries


def _from_finetune_result(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The `metrics.json` that `moleblend finetune` writes (problem_type, data, test metrics) in this format."""
    metrics = {
        name: value
        for name, value in result["test"].items()
        if name not in _NOT_METRICS and isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    if not metrics:
        return []
    return [
        {
            "task": result["problem_type"],
            "dataset": Path(str(result.get("data", "dataset"))).stem,
            "split": "test",
            "metrics": metrics,
        }
    ]


def directory_metrics(directory: str | Path) -> list[dict[str, Any]]:
    """The evaluation results of `directory/metrics.json` ([] without one).

    Accepts the format of the module docstring and the result file of `moleblend finetune`; a file in another
    format is ignored with a warning (a card is still written, without a model-index).
    """
    path = Path(directory) / METRICS_FILE
    if not path.exists():
        return []
    content = json.loads(path.read_text())
    try:
        return load_metrics(content)
    except ValueError as error:
        if isinstance(content, dict) and "problem_type" in content and isinstance(content.get("test"), dict):
            return _from_finetune_result(content)
        logger.warning("%s is not in the metrics format of moleblend_hf.publishing (%s): no model-index", path, error)
        return []


def _eval_results(entries: list[dict[str, Any]]) -> list[EvalResult]:
    return [
        EvalResult(
            task_type=entry["task"],
            task_name=entry.get("task_name"),
            dataset_type=entry["dataset"],
            dataset_name=entry.get("dataset_name", entry["dataset"]),
            dataset_split=entry.get("split"),
            metric_type=name,
            metric_name=name,
            metric_value=value,
        )
        for entry in entries
        for name, value in entry["metrics"].items()
    ]


def count_parameters(directory: str | Path) -> int | None:
    """Number of parameters in the safetensors weights of a saved model (single file or sharded), if any."""
    directory = Path(directory)
    index = directory / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (directory / "model.safetensors").exists():
        shards = ["model.safetensors"]
    else:
        return None
    from safetensors import safe_open

    total = 0
    for shard in shards:
        with safe_open(str(directory / shard), "np") as handle:
            for key in handle.keys():
                count = 1
                for size in handle.get_slice(key).get_shape():
                    count *= size
                total += count
    return total


def _architecture_lines(config: MoleBlendConfig, parameters: int | None) -> list[str]:
    architecture = (config.architectures or ["MoleBlendModel"])[0]
    size = f"{parameters / 1e6:.2f}M parameters" if parameters else "size: see config.json"
    lines = [
        f"- class `{architecture}`; {size}",
        f"- {config.num_hidden_layers} post-LN Transformer layers, hidden size {config.hidden_size}, "
        f"{config.num_attention_heads} attention heads, feed-forward {config.intermediate_size}",
        f"- relations: 2D (shortest paths, bonds along them up to {config.max_path_hops} hops) "
        f"{'on' if config.use_2d_relations else 'off'}; 3D ({config.num_gaussian_kernels} Gaussian kernels over "
        f"interatomic distances) {'on' if config.use_3d_relations else 'off'}",
    ]
    if architecture == "MoleBlendForPreTraining":
        lines.append(
            "- this checkpoint also holds the pretraining heads (relation prediction, denoising); "
            "`AutoModel` loads the encoder alone, `AutoModelForPreTraining` the full model"
        )
    return lines


def _pretraining_lines(pretraining: dict[str, Any]) -> list[str]:
    def show(value: Any) -> str:
        return f"`{json.dumps(value, default=str)}`" if isinstance(value, (list, dict)) else f"{value}"

    return [f"- **{key}**: {show(value)}" for key, value in pretraining.items() if value not in (None, [], {})]


def _evaluation_lines(entries: list[dict[str, Any]]) -> list[str]:
    lines = ["| task | dataset | split | metric | value |", "|---|---|---|---|---|"]
    for entry in entries:
        for name, value in entry["metrics"].items():
            lines.append(
                f"| {entry['task']} | {entry.get('dataset_name', entry['dataset'])} | "
                f"{entry.get('split', '')} | {name} | {value:.4g} |"
            )
    return lines


def _limits_lines(config: MoleBlendConfig, processor: dict[str, Any]) -> list[str]:
    max_atoms = min(config.max_atoms, processor.get("max_atoms", config.max_atoms))
    policy = processor.get("conformers", "given")
    policies = {
        "given": "uses a 3D conformer present in the input (molblock, SDF, RDKit Mol with a conformer) and "
        "otherwise falls back to 2D relations only; SMILES inputs are therefore 2D-only unless you "
        'load the processor with `conformers="generate"`',
        "generate": "uses a given 3D conformer, otherwise generates one (RDKit ETKDGv3 + MMFF94); when that "
        "fails the molecule falls back to 2D relations only",
        "none": "never uses 3D coordinates (2D relations only)",
    }
    hydrogens = (
        "hydrogens are kept as atoms" if processor.get("keep_hydrogens") else "hydrogens are removed (heavy atoms only)"
    )
    return [
        f"- **Molecule size**: at most {max_atoms} atoms per molecule; larger molecules are rejected with a "
        '`MoleculeError` (`processor(molecules, errors="skip")` leaves bad molecules out and records why).',
        f"- **Conformers**: the saved processor's policy is `{policy}`: it {policies.get(policy, policy)}. "
        "Embeddings of the same molecule with and without 3D coordinates differ.",
        f"- **Atoms**: {hydrogens}. Elements are featurized with the OGB vocabulary (atomic numbers 1-118); "
        "dummy/query atoms (`*`, atomic number 0) and inputs RDKit cannot parse or sanitize are rejected.",
        "- **Scope**: small organic molecules as in the pretraining data; proteins, polymers, periodic "
        "materials and reactions are out of scope. The embeddings are not validated for any safety-critical "
        "use; fine-tune and evaluate on your task.",
    ]


def _usage_lines(repo_id: str) -> list[str]:
    return [
        "```python",
        "import torch",
        "from transformers import AutoModel, AutoProcessor",
        "",
        f'model = AutoModel.from_pretrained("{repo_id}", trust_remote_code=True).eval()',
        f'processor = AutoProcessor.from_pretrained("{repo_id}", trust_remote_code=True)',
        'inputs = processor(["CCO", "c1ccccc1O"])  # SMILES, molblocks, RDKit Mols or .sdf paths',
        "with torch.no_grad():",
        "    outputs = model(**inputs)",
        "embeddings = outputs.pooler_output  # [2, hidden_size]: one vector per molecule",
        "atom_states = outputs.last_hidden_state  # [2, 1 + atoms, hidden_size]; position 0 is the graph token",
        "```",
        "",
        "`trust_remote_code=True` runs the modeling and processing code stored in this repository (written by "
        "`moleblend-hf`); with `pip install moleblend-hf` and `import moleblend_hf` the classes are registered "
        "locally instead.",
    ]


def build_model_card(
    config: MoleBlendConfig,
    *,
    repo_id: str | None = None,
    processor_config: dict[str, Any] | None = None,
    parameters: int | None = None,
    pretraining: dict[str, Any] | None = None,
    metrics: list[dict[str, Any]] | None = None,
    datasets: list[str] | None = None,
    base_model: str | None = None,
    license: str = "mit",
    tags: list[str] | None = None,
) -> ModelCard:
    """A `ModelCard` (metadata + body) for a MoleBLEND model; nothing is written. See `write_model_card`."""
    name = repo_id or "MoleBLEND"
    results = _eval_results(metrics or [])
    data = ModelCardData(
        library_name="transformers",
        license=license,
        tags=list(dict.fromkeys([*DEFAULT_TAGS, *(tags or [])])),
        datasets=list(datasets) if datasets else None,
        base_model=base_model,
        pipeline_tag="feature-extraction",
        model_name=name.split("/")[-1] if results else None,
        eval_results=results or None,
    )
    body = [
        f"# {name.split('/')[-1]}",
        "",
        "A MoleBLEND encoder (Yu et al., *Multimodal Molecular Pretraining via Modality Blending*, ICLR 2024): a "
        "Transformer over the atoms of a molecule whose attention is biased, per head, by 2D relations "
        "(shortest-path distances, the bonds along shortest paths, degrees) and 3D relations (interatomic "
        "distances). Pretraining blends the three relation types into one attention bias and predicts them back. "
        "Implemented with `transformers` by `moleblend-hf`.",
        "",
        "## Architecture",
        "",
        *_architecture_lines(config, parameters),
        "",
    ]
    if pretraining:
        body += ["## Pretraining", "", *_pretraining_lines(pretraining), ""]
    if metrics:
        body += ["## Evaluation", "", *_evaluation_lines(metrics), ""]
    body += [
        "## Intended use",
        "",
        "Molecule-level embeddings (`pooler_output`, the graph token) and atom-level embeddings "
        "(`last_hidden_state`) for retrieval, clustering and property-prediction probes, and a starting point "
        "for fine-tuning on molecular property data.",
        "",
        "## Limitations",
        "",
        *_limits_lines(config, processor_config or {}),
        "",
        "## Usage",
        "",
        *_usage_lines(name),
        "",
        "## Citation",
        "",
        "```bibtex",
        _CITATION,
        "```",
        "",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def card_for_directory(
    directory: str | Path,
    config: MoleBlendConfig | None = None,
    *,
    processor_config: dict[str, Any] | None = None,
    **card_options: Any,
) -> ModelCard:
    """`build_model_card` with what a saved directory tells: config, processor settings, size, `metrics.json`."""
    directory = Path(directory)
    config = config or MoleBlendConfig.from_pretrained(directory)
    if card_options.get("metrics") is None:
        card_options["metrics"] = directory_metrics(directory)
    return build_model_card(
        config,
        processor_config=processor_config or _read_json(directory / PROCESSOR_FILE),
        parameters=count_parameters(directory),
        **card_options,
    )


def write_model_card(
    directory: str | Path,
    config: MoleBlendConfig,
    pretraining: dict[str, Any] | None = None,
    base_model: str | None = None,
    license: str = "mit",
    *,
    repo_id: str | None = None,
    datasets: list[str] | None = None,
    metrics: str | Path | dict | list | None = None,
    tags: list[str] | None = None,
) -> ModelCard:
    """Write `README.md` (a `huggingface_hub.ModelCard`) describing the MoleBLEND model saved in `directory`.

    Metadata: library_name, license, tags, datasets, base_model, pipeline_tag and, when `metrics` is given or
    `directory/metrics.json` exists, a `model-index`. Body: architecture and size, pretraining data and budget
    (`pretraining`), evaluation results, intended use, limits (max atoms, conformer policy, unsupported atoms),
    a usage snippet for `repo_id` (default: the directory name) and the citation.
    """
    directory = Path(directory)
    card = card_for_directory(
        directory,
        config,
        repo_id=repo_id or directory.name,
        pretraining=pretraining,
        base_model=base_model,
        license=license,
        datasets=datasets,
        metrics=load_metrics(metrics) if metrics is not None else None,
        tags=tags,
    )
    card.save(directory / CARD_FILE)
    return card
