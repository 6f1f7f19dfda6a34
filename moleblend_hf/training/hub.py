"""Model cards and publishing to the Hugging Face Hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from ..modeling import MoleBlendConfig


def _parameters(directory: Path) -> int | None:
    index = directory / "model.safetensors"
    if not index.exists():
        return None
    from safetensors import safe_open

    total = 0
    with safe_open(str(index), "pt") as handle:
        for key in handle.keys():
            shape = handle.get_slice(key).get_shape()
            count = 1
            for size in shape:
                count *= size
            total += count
    return total


def write_model_card(directory: str | Path, config: MoleBlendConfig, pretraining: dict[str, Any] | None = None,
                     base_model: str | None = None, license: str = "mit") -> ModelCard:
    """Write README.md (a `huggingface_hub.ModelCard`) describing a saved MoleBLEND model in `directory`."""
    directory = Path(directory)
    parameters = _parameters(directory)
    data = ModelCardData(library_name="transformers", license=license, tags=["chemistry", "molecules", "moleblend",
                                                                             "graph-transformer", "3d"],
                         pipeline_tag="feature-extraction", base_model=base_model)
    size = f"{parameters / 1e6:.1f}M parameters" if parameters else "see config.json"
    lines = [
        "---", data.to_yaml(), "---", "",
        "# MoleBLEND model", "",
        "A MoleBLEND encoder (Yu et al., *Multimodal Molecular Pretraining via Modality Blending*, ICLR 2024): a "
        "Transformer over heavy atoms with per-head attention biases from shortest-path distances, the bonds along "
        "shortest paths and 3D distances. Built with [moleblend-hf](https://github.com/).", "",
        "## Architecture", "",
        f"- {config.num_hidden_layers} layers, hidden {config.hidden_size}, {config.num_attention_heads} heads, "
        f"FFN {config.intermediate_size}; {size}",
        f"- relations: 2D {'on' if config.use_2d_relations else 'off'}, 3D {'on' if config.use_3d_relations else 'off'};"
        f" {config.num_gaussian_kernels} Gaussian kernels, {config.max_path_hops}-hop paths",
        f"- at most {config.max_atoms} atoms per molecule", "",
    ]
    if pretraining:
        lines += ["## Pretraining", "", "```json", json.dumps(pretraining, indent=2, default=str), "```", ""]
    lines += [
        "## Intended use and limits", "",
        "Molecule and atom embeddings, and fine-tuning on molecular property data. Inputs are RDKit-parsable "
        "molecules; dummy/query atoms are rejected; molecules larger than `max_atoms` are rejected; molecules "
        "without a conformer use 2D relations only (the processor can generate conformers with ETKDGv3 + MMFF94).",
        "",
        "## Usage", "",
        "```python",
        "from transformers import AutoModel, AutoProcessor",
        "",
        f'model = AutoModel.from_pretrained("{directory.name}", trust_remote_code=True)',
        f'processor = AutoProcessor.from_pretrained("{directory.name}", trust_remote_code=True)',
        'outputs = model(**processor(["CCO", "c1ccccc1O"]))',
        "embeddings = outputs.pooler_output  # one vector per molecule",
        "```", "",
    ]
    card = ModelCard("\n".join(lines))
    card.save(directory / "README.md")
    return card


def push_directory(directory: str | Path, repo_id: str, private: bool = False,
                   commit_message: str = "Upload MoleBLEND model") -> str:
    """Upload a saved model directory (model, processor, card, remote code) to the Hub; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(directory), repo_id=repo_id, commit_message=commit_message)
    return str(info)
