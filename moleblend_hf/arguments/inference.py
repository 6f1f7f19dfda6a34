"""The arguments of the inference jobs, `moleblend predict` and `moleblend embed`, and their speed options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .common import OUTPUT_ALIASES, Conformers, JobArguments, Preset, _positive, option

QUANTIZE_HELP = (
    "int8: dynamic int8 quantization of the linear layers (CPU only; faster, slightly different "
    "outputs: see benchmarks/int8_accuracy.py)"
)


CUDA_GRAPHS_HELP = (
    "replay each batch shape's kernels as a CUDA graph (CUDA only; atoms padded to a multiple of 8 "
    "so that few shapes occur; same outputs; where kernel launches dominate, e.g. batch 64 with "
    "--mixed-precision bf16, 2.4x the eager throughput on an H100)"
)
INFERENCE_PRECISION_HELP = "autocast dtype of the forward (e.g. bf16 on a GPU); outputs are written in float32"


def _inference_options(arguments: Any) -> None:
    """int8 runs on the CPU, CUDA graphs on CUDA; each replaces the other speed options."""
    if arguments.quantize == "int8" and arguments.device != "cpu":
        raise ValueError("--quantize int8 runs on the CPU only (--device cpu)")
    if arguments.mixed_precision != "no" and arguments.quantize == "int8":
        raise ValueError("--quantize int8 computes in int8/fp32; leave --mixed-precision at no")
    if arguments.cuda_graphs:
        if not arguments.device.startswith("cuda"):
            raise ValueError(f"--cuda-graphs needs a CUDA device (--device cuda), got --device {arguments.device}")
        if arguments.compile:
            raise ValueError("--cuda-graphs and --compile exclude each other (choose one)")


@dataclass
class PredictArguments(JobArguments):
    """Every option of `moleblend predict` (see `inference/predict.py`)."""

    data: str = option(
        None,
        ".csv, .parquet, .smi, .sdf or .sdf.gz of molecules: a file, an http(s) URL or a Hub "
        "dataset, hf://datasets/ORG/NAME[@REVISION][/PATH]",
        positional=True,
    )
    model: list[str] = option(
        [],
        "fine-tuned model directories (several: an ensemble) or an ensemble directory "
        "written by `moleblend finetune --seeds`",
        required=True,
    )
    output: str = option(
        "predictions.csv", "the predictions file (.csv or .parquet): one row per input row, in input order"
    )
    overwrite: bool = option(False, "replace an existing --output file")
    smiles_column: str | None = option(None, "column of SMILES (default: detected)")
    molblock_column: str | None = option(None, "column of molblocks")
    batch_size: int = option(64, "molecules per forward pass")
    device: str = option("cpu", "torch device")
    quantize: Literal["none", "int8"] = option("none", QUANTIZE_HELP)
    compile: bool = option(False, "torch.compile the models (dynamic shapes; compiling takes a minute or more)")
    cuda_graphs: bool = option(False, CUDA_GRAPHS_HELP)
    mixed_precision: Literal["no", "fp16", "bf16"] = option("no", INFERENCE_PRECISION_HELP)
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self) -> None:
        _inference_options(self)
        if not self.data:
            raise ValueError("give the data file (a .csv, .parquet, .smi, .sdf or .sdf.gz)")
        if not self.model:
            raise ValueError("give --model (one or more fine-tuned model directories)")
        if not self.output.endswith((".csv", ".parquet")):
            raise ValueError(f"--output must end in .csv or .parquet, got {self.output!r}")
        _positive(self, "batch_size")


@dataclass
class EmbedArguments(JobArguments):
    """Every option of `moleblend embed` (see `inference/embed.py`)."""

    input: str | None = option(
        None, "a .smi, .csv, .parquet, .sdf, .sdf.gz or .mol file (default: the bundled QM9 subset)"
    )
    output_dir: str = option("outputs/embeddings", "output directory of parquet parts", aliases=OUTPUT_ALIASES)
    overwrite: bool = option(False, "replace the embeddings in a non-empty --output-dir")
    model: str | None = option(
        None,
        "a saved model directory, Hub id or shipped checkpoint name (default: a "
        "randomly initialised --preset model, a demo)",
    )
    preset: Preset = option("tiny", "model size without --model")
    seed: int = option(0, "seed of the random model without --model")
    batch_size: int = option(64, "molecules per forward pass")
    chunk_size: int = option(2048, "rows per output part (the resume unit)")
    per_atom: bool = option(False, "also write per-atom embeddings")
    quantize: Literal["none", "int8"] = option("none", QUANTIZE_HELP)
    compile: bool = option(
        False,
        "torch.compile the model (dynamic shapes; compiling takes a minute or more, then "
        "each batch runs the compiled graph)",
    )
    cuda_graphs: bool = option(False, CUDA_GRAPHS_HELP)
    mixed_precision: Literal["no", "fp16", "bf16"] = option("no", INFERENCE_PRECISION_HELP)
    conformers: Conformers | None = option(None, "conformer policy (default: the saved processor's, else given)")
    smiles_column: str | None = option(None, "column of SMILES (default: detected)")
    molblock_column: str | None = option(None, "column of molblocks")
    device: str = option("cpu", "torch device")
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self) -> None:
        _positive(self, "batch_size", "chunk_size")
        _inference_options(self)
