"""The arguments of every job, one dataclass each: the single source of the `moleblend` flags, their defaults,
help and choices (parsed by `transformers.HfArgumentParser`, see `moleblend_hf/cli/`), and of the Python API
(`pretrain(PretrainArguments(...))`). Standard library only, so `moleblend ... --help` needs no torch.
"""

from .benchmark import CHEMPROP, HARTREE_TO_EV, MOLECULENET, QM9_ENERGIES, QM9_UNITS, RANDOM_FOREST, BenchmarkArguments
from .common import (
    BUNDLED_QM9,
    MOLECULE_FEATURE_SETS,
    OUTPUT_ALIASES,
    SET_HELP,
    Conformers,
    FinetuneTask,
    JobArguments,
    LogLevel,
    Modality,
    Pooling,
    Preset,
    SplitMethod,
    option,
)
from .corpus import CorpusArguments
from .finetune import FinetuneArguments
from .inference import CUDA_GRAPHS_HELP, INFERENCE_PRECISION_HELP, QUANTIZE_HELP, EmbedArguments, PredictArguments
from .pretrain import PretrainArguments
from .publishing import ConvertArguments, PushArguments

__all__ = [
    "BUNDLED_QM9",
    "CHEMPROP",
    "MOLECULE_FEATURE_SETS",
    "Pooling",
    "CUDA_GRAPHS_HELP",
    "HARTREE_TO_EV",
    "INFERENCE_PRECISION_HELP",
    "MOLECULENET",
    "OUTPUT_ALIASES",
    "QM9_ENERGIES",
    "QM9_UNITS",
    "QUANTIZE_HELP",
    "RANDOM_FOREST",
    "SET_HELP",
    "BenchmarkArguments",
    "Conformers",
    "ConvertArguments",
    "CorpusArguments",
    "EmbedArguments",
    "FinetuneArguments",
    "FinetuneTask",
    "JobArguments",
    "LogLevel",
    "Modality",
    "PredictArguments",
    "Preset",
    "PretrainArguments",
    "PushArguments",
    "SplitMethod",
    "option",
]
