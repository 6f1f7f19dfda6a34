"""Every number in the tables of docs/benchmarks.md and in the README's results table equals its stored file.

Each table is found by the heading above it and has an explicit mapping: (row label, column header) -> the stored
values the cell shows, in order (a cell "0.670 ± 0.007" shows two). A number is compared at the precision it is
shown with (0.778 against round(value, 3), 1,342 against round(value), 1.2e-6 against two significant digits).
Every table on the page must be mapped and every numeric cell of a mapped table must have a mapping, so a figure
cannot be added without a source; the text between a heading and its table must name the table's file.
"""

from __future__ import annotations

import json
import math
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
PAYOFF = "pretraining_payoff/"
COMPUTE = "pretraining_compute/pretraining_compute.json"
NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?:e-?\d+)?(?![\w])")


@cache
def _read(name: str):
    path = RESULTS / name
    if name.endswith(".json"):
        return json.loads(path.read_text())
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return path.read_text()


# --- ways a cell is derived from a stored file -------------------------------------------------------------------


def J(name: str, *keys):
    """A value at a key path of a JSON file."""

    def get():
        value = _read(name)
        for key in keys:
            value = value[key]
        return value

    get.source = name
    return get


def RATIO(numerator, denominator):
    def get():
        return numerator() / denominator()

    get.source = numerator.source
    return get


def SCALE(factor, spec):
    def get():
        return factor * spec()

    get.source = spec.source
    return get


def LOG(name: str, pattern: str):
    """The first group of a regular expression in a text log."""

    def get():
        return float(re.search(pattern, _read(name), re.MULTILINE).group(1))

    get.source = name
    return get


def JSONL(name: str, reduce, key: str, where=lambda record: True):
    """`reduce` over `key` of the records of a JSON-lines log that have it and pass `where`."""

    def get():
        return reduce([r[key] for r in _read(name) if key in r and where(r)])

    get.source = name
    return get


def LINES(name: str):
    def get():
        return len([line for line in _read(name).splitlines() if line.strip()])

    get.source = name
    return get


def AFTER_FIRST(values):
    return values[1:]


# --- the mapping ----------------------------------------------------------------------------------------------------


def _encoder(name: str, ms: bool, variants: dict[str, str]) -> dict:
    """Encoder tables: rows of forward + backward and inference figures, columns = the variants shown."""
    per_batch = "median_seconds_per_batch"
    cells = {}
    for header, key in variants.items():
        if key in _read(name)["forward_backward"][per_batch]:
            if ms:
                cells[("forward + backward, ms per batch", header)] = [
                    SCALE(1000, J(name, "forward_backward", per_batch, key))
                ]
            else:
                cells[("forward + backward, molecules/s", header)] = [
                    J(name, "forward_backward", "molecules_per_second", key)
                ]
            if key != "official":
                cells[("forward + backward, time ratio", header)] = [
                    J(name, "forward_backward", "time_ratio_vs_official", key)
                ]
        cells[("inference, molecules/s", header)] = [J(name, "inference", "molecules_per_second", key)]
        if key != "official":
            cells[("inference, throughput ratio", header)] = [
                RATIO(
                    J(name, "inference", "molecules_per_second", key),
                    J(name, "inference", "molecules_per_second", "official"),
                )
            ]
    return cells


def _step(name: str, batches: list[str]) -> dict:
    cells = {}
    for batch in batches:
        b, o = ("batches", batch, "bilinear"), ("batches", batch, "outer_product")
        cells.update(
            {
                (batch, "bilinear (ms)"): [SCALE(1000, J(name, *b, "median_step_seconds"))],
                (batch, "bilinear (molecules/s)"): [J(name, *b, "molecules_per_s")],
                (batch, "explicit (ms)"): [SCALE(1000, J(name, *o, "median_step_seconds"))],
                (batch, "explicit (molecules/s)"): [J(name, *o, "molecules_per_s")],
                (batch, "step-time ratio"): [J(name, "batches", batch, "step_time_ratio")],
                (batch, "peak memory, bilinear (MiB)"): [J(name, *b, "peak_step_memory_mb")],
                (batch, "peak memory, explicit (MiB)"): [J(name, *o, "peak_step_memory_mb")],
                (batch, "memory ratio"): [J(name, "batches", batch, "peak_memory_ratio")],
            }
        )
    return cells


RESULT_COLUMNS = {
    "from scratch": "scratch",
    "pretrained": "pretrained",
    "pretrained + descriptors": "pretrained+features",
    "no blending": "no_blending",
    "chemprop 2": "chemprop",
    "random forest (Morgan r=2, 2048)": "random_forest",
}
RESULT_TASKS = ["bbbp", "bace", "clintox", "hiv", "esol", "freesolv", "lipo", "qm9_gap", "qm9_homo", "qm9_lumo"]


def results_table(name: str) -> dict:
    """The downstream table of `moleblend benchmark`: mean ± std per task and column (and the number of seeds where
    fewer than the budget's finished), then the mean ranks and the median wall time per run where stored. A column
    the file does not hold and a cell without runs ("—") have no mapping."""
    stored, cells = _read(name), {}
    seeds = len(stored["budget"]["seeds"])
    for header, key in RESULT_COLUMNS.items():
        if key not in stored["columns"]:
            continue
        for task in RESULT_TASKS:
            value = stored["table"][task].get(key)
            if isinstance(value, dict):
                cells[(task, header)] = [J(name, "table", task, key, "mean"), J(name, "table", task, key, "std")] + (
                    [J(name, "table", task, key, "n")] if value["n"] < seeds else []
                )
        cells[("mean rank (1 = best)", header)] = [J(name, "mean_rank", key)]
        if (stored.get("median_wall_time_s") or {}).get(key) is not None:
            cells[("median wall time per run (s)", header)] = [J(name, "median_wall_time_s", key)]
    return cells


def compared_columns_table(name: str, headers: dict[str, tuple[str, int | None]]) -> dict:
    """A table of `recipes.compare_columns`: a row per task and the mean rank; a header shows an arm's mean (index
    None; "± std" too where the arm pools several columns) or one of its columns' values (index)."""
    stored, cells = _read(name), {}
    for header, (arm, index) in headers.items():
        for task, row in stored["table"].items():
            if index is not None:
                cells[(task, header)] = [J(name, "table", task, arm, "runs", index)]
            else:
                cells[(task, header)] = [J(name, "table", task, arm, "mean")] + (
                    [J(name, "table", task, arm, "std")] if row[arm]["n"] > 1 else []
                )
        if index is None:
            cells[("mean rank (1 = best)", header)] = [J(name, "mean_rank", arm)]
    return cells


DESCRIPTORS = "finetune_recipe/molecule_features_on_valid.json"
ABLATION = "blending_ablation/blending_over_pretraining_runs.json"
SHARED_MASK = "blending_ablation/shared_batch_mask.json"


CPU_ENCODER = "encoder_speed_cpu.json"
INT8 = "int8_accuracy.json"
STEP_CPU = "pretraining_step_cpu_fp32.json"
STEP_H200 = "pretraining_step_cuda_bf16_h200.json"
COMPILED = "encoder_speed_cuda_bf16_compiled.json"
PROFILE = "gpu_encoder_profile_h100.log"
STEP_PROFILE = "gpu_step_profile_h200.log"
SWEEP = PAYOFF + "finetune_sweep.json"
RECIPE = "finetune_recipe/"
RECIPE_ROWS = {
    "base": "base",
    "encoder at 0.1×": "enc0.1",
    "encoder at 0.3×": "enc0.3",
    "graph token + atom mean": "graph_mean",
    "+ RDKit 2D + Morgan counts": "feat",
    "graph token + atom mean, 20 epochs, patience 8": "gm_long20",
    "+ head alone for the first 2 epochs": "gm_long20_lp2",
}
DEFAULTS_SWEEP = RECIPE + "sweep_on_defaults.json"
DEFAULTS_ROWS = {
    "the defaults": "gm_long20_lp2",
    "+ moving average of the weights (0.99)": "defaults_ema0.99",
    "+ layer-wise decay 0.8": "defaults_llrd0.8",
    "+ 2 hidden layers, dropout 0.1": "defaults_head2_do0.1",
    "+ weight decay 0.01": "defaults_wd0.01",
    "+ batch 64": "defaults_bs64",
    "+ no gradient clipping": "defaults_noclip",
}
SWEEP_TASKS = {
    "BBBP": "bbbp",
    "BACE": "bace",
    "ClinTox": "clintox",
    "HIV": "hiv",
    "ESOL": "esol",
    "FreeSolv": "freesolv",
    "Lipo": "lipo",
}
GPU_VARIANTS = {
    "official": "official",
    "ours (SDPA)": "ours",
    "ours, CUDA graphs": "ours_cuda_graphs",
    "official, CUDA graphs": "official_cuda_graphs",
}


def _job_rates(name: str) -> dict:
    return {
        "lowest molecules/s": [JSONL(name, lambda v: min(AFTER_FIRST(v)), "molecules_per_s")],
        "highest molecules/s": [JSONL(name, lambda v: max(AFTER_FIRST(v)), "molecules_per_s")],
    }


TABLES: dict[str, dict] = {
    "Processor throughput": {
        ("moleblend-hf MoleBlendProcessor (canonical tie-break, the default)", "molecules/s"): [
            J("processor_throughput.json", "moleblend_molecules_per_s")
        ],
        (
            "OGB smiles2graph + Graphormer preprocess_item + GraphormerDataCollator (transformers 4.x, Cython)",
            "molecules/s",
        ): [J("processor_throughput.json", "graphormer_molecules_per_s")],
        ("ratio (×)", "molecules/s"): [J("processor_throughput.json", "speedup")],
    },
    "Processor throughput, both tie-breaks": {
        ('path_tie_break="canonical"', "molecules/s"): [
            J("processor_throughput_both_tie_breaks.json", "moleblend_molecules_per_s")
        ],
        ('path_tie_break="canonical"', "ratio to Graphormer (×)"): [
            J("processor_throughput_both_tie_breaks.json", "speedup")
        ],
        ('path_tie_break="official"', "molecules/s"): [
            J("processor_throughput_both_tie_breaks.json", "moleblend_official_tie_break_molecules_per_s")
        ],
        ('path_tie_break="official"', "ratio to Graphormer (×)"): [
            J("processor_throughput_both_tie_breaks.json", "speedup_official_tie_break")
        ],
        ("OGB + Graphormer pipeline", "molecules/s"): [
            J("processor_throughput_both_tie_breaks.json", "graphormer_molecules_per_s")
        ],
    },
    "Encoder on the CPU": _encoder(
        CPU_ENCODER,
        ms=False,
        variants={
            "official": "official",
            "ours (SDPA, default)": "ours",
            "ours, eager attention": "ours_eager_attention",
            "ours, int8 dynamic": "ours_int8",
        },
    ),
    "Encoder output agreement and int8 deviation": {
        ("largest absolute output difference, ours vs the official formulation (fp32)", "value"): [
            J(CPU_ENCODER, "max_abs_difference_vs_official")
        ],
        ("int8: largest absolute embedding deviation from fp32", "value"): [
            J(CPU_ENCODER, "int8_accuracy", "max_abs_deviation")
        ],
        ("int8: mean absolute embedding deviation", "value"): [J(CPU_ENCODER, "int8_accuracy", "mean_abs_deviation")],
        ("mean absolute embedding value (fp32)", "value"): [
            J(CPU_ENCODER, "int8_accuracy", "embedding_scale_mean_abs")
        ],
        ("int8: lowest cosine similarity to fp32", "value"): [J(CPU_ENCODER, "int8_accuracy", "min_cosine_similarity")],
    },
    "int8 on a fine-tuned model": {
        ("ESOL test RMSE (113 test molecules)", "fp32"): [J(INT8, "test_metric", "fp32", "rmse")],
        ("ESOL test RMSE (113 test molecules)", "int8"): [J(INT8, "test_metric", "int8", "rmse")],
        ("largest absolute prediction difference", "int8"): [J(INT8, "prediction_deviation", "max_abs")],
        ("mean absolute prediction difference", "int8"): [J(INT8, "prediction_deviation", "mean_abs")],
        ("largest absolute embedding difference", "int8"): [J(INT8, "embedding_deviation", "max_abs")],
        ("lowest embedding cosine similarity to fp32", "int8"): [
            J(INT8, "embedding_deviation", "min_cosine_similarity")
        ],
        ("prediction speed-up over fp32 (×)", "int8"): [J(INT8, "int8_speedup")],
    },
    "Encoder on an H100, fp32": _encoder("encoder_speed_cuda.json", ms=True, variants=GPU_VARIANTS),
    "Encoder on an H100, bf16": _encoder("encoder_speed_cuda_bf16.json", ms=True, variants=GPU_VARIANTS),
    "Encoder on an H100, bf16, torch.compile": {
        ("official, eager", "ms per batch"): [
            SCALE(1000, J(COMPILED, "forward_backward", "median_seconds_per_batch", "official"))
        ],
        **{
            (row, header): spec
            for key, row in (
                ("ours", "ours, eager"),
                ("official_compiled", "official, compiled"),
                ("ours_compiled", "ours, compiled"),
            )
            for header, spec in (
                ("ms per batch", [SCALE(1000, J(COMPILED, "forward_backward", "median_seconds_per_batch", key))]),
                ("time ratio", [J(COMPILED, "forward_backward", "time_ratio_vs_official", key)]),
            )
        },
        ("official, compiled", "compile + warm-up (s)"): [
            J(COMPILED, "forward_backward", "warmup_seconds", "official_compiled")
        ],
        ("ours, compiled", "compile + warm-up (s)"): [
            J(COMPILED, "forward_backward", "warmup_seconds", "ours_compiled")
        ],
    },
    "GPU kernels per forward": {
        (f"{who}, {dtype}", header): [
            LOG(
                PROFILE,
                rf"^== {who} {dtype}: (\d+) kernels"
                if header.startswith("CUDA")
                else rf"^== {who} {dtype}: \d+ kernels, ([\d.]+) ms",
            )
        ]
        for who in ("official", "ours")
        for dtype in ("fp32", "bf16")
        for header in ("CUDA kernels per forward", "GPU ms per forward")
    },
    "Pretraining step on the CPU": {
        ("64", "bilinear step (s)"): [J(STEP_CPU, "batches", "64", "bilinear", "median_step_seconds")],
        ("64", "explicit step (s)"): [J(STEP_CPU, "batches", "64", "outer_product", "median_step_seconds")],
        ("64", "step-time ratio"): [J(STEP_CPU, "batches", "64", "step_time_ratio")],
        ("64", "pair heads alone, bilinear (s)"): [J(STEP_CPU, "batches", "64", "bilinear", "pair_heads_seconds")],
        ("64", "pair heads alone, explicit (s)"): [J(STEP_CPU, "batches", "64", "outer_product", "pair_heads_seconds")],
        ("64", "ratio if the bilinear heads were free"): [
            J(STEP_CPU, "batches", "64", "step_time_ratio_with_free_bilinear_heads")
        ],
        ("64", "peak step memory, bilinear (MiB)"): [J(STEP_CPU, "batches", "64", "bilinear", "peak_step_memory_mb")],
        ("64", "peak step memory, explicit (MiB)"): [
            J(STEP_CPU, "batches", "64", "outer_product", "peak_step_memory_mb")
        ],
        ("64", "memory ratio"): [J(STEP_CPU, "batches", "64", "peak_memory_ratio")],
    },
    "Pretraining step on an H100": _step("pretraining_step_cuda_bf16.json", ["64", "256", "1024"]),
    "Pretraining step on an H200": {
        key: spec
        for key, spec in _step(STEP_H200, ["64", "256", "1024"]).items()
        if key[1] in ("bilinear (molecules/s)", "explicit (molecules/s)", "step-time ratio", "memory ratio")
    },
    "Where a GPU step's time goes (H200)": {
        ("eager", "molecules/s at batch 64"): [LOG(STEP_PROFILE, r'^\{"batch": 64, .*"molecules_per_s": ([\d.]+)')],
        ("torch.compile", "molecules/s at batch 64"): [
            LOG(STEP_PROFILE, r'^compiled \{"batch": 64, .*"molecules_per_s": ([\d.]+)')
        ],
        ("torch.compile", "molecules/s at batch 256"): [
            LOG(STEP_PROFILE, r'^compiled \{"batch": 256, .*"molecules_per_s": ([\d.]+)')
        ],
        ('torch.compile(mode="reduce-overhead") (CUDA graphs)', "molecules/s at batch 64"): [
            LOG(STEP_PROFILE, r'^compiled reduce-overhead \(CUDA graphs\) \{"batch": 64, .*"molecules_per_s": ([\d.]+)')
        ],
    },
    "The moleblend pretrain job on an H200": {
        **{("batch 128", h): s for h, s in _job_rates("pretrain_job_cuda_bf16_train_log.jsonl").items()},
        **{("batch 256", h): s for h, s in _job_rates("pretrain_job_cuda_bf16_batch256_train_log.jsonl").items()},
    },
    "Fine-tuned against chemprop 2 and the forest": results_table("moleculenet_benchmark/results.json"),
    "Downstream results": results_table(PAYOFF + "results.json"),
    "Test molecules kept out of pretraining": {
        ("test molecules in the exclusion list (canonical SMILES)", "dropped as excluded"): [
            LINES(PAYOFF + "excluded_test_molecules.smi")
        ],
        ("building the MOSES conformer corpus", "dropped as excluded"): [
            J(PAYOFF + "moses_conformers_corpus.json", "counts", "excluded")
        ],
        **{
            (f"the pretraining stream, {run} run", header): [J(PAYOFF + f"pretrain_{name}_summary.json", *keys)]
            for run, name in (("blended", "blend"), ("no-blending", "noblend"))
            for header, keys in (
                ("molecules drawn", ("molecules_seen",)),
                ("dropped as excluded", ("skipped", "excluded (--exclude)")),
            )
        },
    },
    "Held-out pretraining loss": {
        (run, f"loss at step {shown}"): [
            JSONL(
                PAYOFF + f"pretrain_{name}_eval_log.jsonl",
                lambda v: v[0],
                "loss",
                where=lambda r, step=step: r["step"] == step,
            )
        ]
        for run, name in (("blended", "blend"), ("no blending", "noblend"))
        for step, shown in ((500, "500"), (4000, "4,000"))
    },
    "Fine-tuning defaults": {
        (row, header): [J(SWEEP, key, "valid", task) if task else J(SWEEP, key, "mean_rank")]
        for row, key in (
            ("learning rate 5e-4", "lr5e-4"),
            ("5e-4, encoder at 0.3×", "lr5e-4_enc0.3"),
            ("2e-4", "lr2e-4"),
        )
        for header, task in (
            ("BBBP ROC-AUC", "bbbp"),
            ("ESOL RMSE", "esol"),
            ("FreeSolv RMSE", "freesolv"),
            ("mean rank", None),
        )
    },
    "Frozen embeddings against fine-tuning": {
        (task, header): [
            J(RECIPE + "probe.json", task, pooling, part)
            if pooling
            else J(RECIPE + "sweep.json", "runs", "base", task, "valid")
        ]
        for task in ("bbbp", "bace", "clintox", "hiv", "esol", "freesolv", "lipo", "qm9_gap", "qm9_homo", "qm9_lumo")
        for header, pooling, part in (
            ("frozen, graph token (valid)", "graph", "valid"),
            ("frozen, graph token + atom mean (valid)", "both", "valid"),
            ("frozen, graph token + atom mean (test)", "both", "test"),
            ("fine-tuned, base (valid)", None, None),
        )
        if pooling or task in _read(RECIPE + "sweep.json")["runs"]["base"]
    },
    "Fine-tuning recipe study": {
        (row, header): [
            J(RECIPE + "sweep.json", "runs", key, task, "valid")
            if task
            else J(RECIPE + "sweep.json", "mean_valid_rank_vs_base", key)
        ]
        for row, key in RECIPE_ROWS.items()
        for header, task in (
            ("BBBP", "bbbp"),
            ("BACE", "bace"),
            ("ClinTox", "clintox"),
            ("HIV", "hiv"),
            ("ESOL", "esol"),
            ("FreeSolv", "freesolv"),
            ("Lipo", "lipo"),
            ("mean rank vs base", None),
        )
        # cells shown as "—" (not run) have no figure
        if (
            task in _read(RECIPE + "sweep.json")["runs"][key]
            if task
            else key in _read(RECIPE + "sweep.json")["mean_valid_rank_vs_base"]
        )
    }
    | {
        (row, "mean rank vs the setting it changes"): [
            J(RECIPE + "sweep.json", "mean_valid_rank_vs_reference", key, "rank")
        ]
        for row, key in RECIPE_ROWS.items()
        if key in _read(RECIPE + "sweep.json")["mean_valid_rank_vs_reference"]
    },
    "Knobs on top of the defaults": {
        (row, header): [J(DEFAULTS_SWEEP, "runs", key, task, "valid")]
        for row, key in DEFAULTS_ROWS.items()
        if key in _read(DEFAULTS_SWEEP)["runs"]
        for header, task in SWEEP_TASKS.items()
        if task in _read(DEFAULTS_SWEEP)["runs"][key]
    }
    | {
        (row, "mean rank vs the defaults"): [J(DEFAULTS_SWEEP, "mean_valid_rank_vs_reference", key, "rank")]
        for row, key in DEFAULTS_ROWS.items()
        if key in _read(DEFAULTS_SWEEP)["mean_valid_rank_vs_reference"]
    },
    "Which molecule descriptors": compared_columns_table(
        DESCRIPTORS,
        {"none": ("none", None), "RDKit 2D": ("rdkit2d", None), "RDKit 2D + Morgan counts": ("rdkit2d_morgan", None)},
    ),
    "Blended against no blending over pretraining runs": compared_columns_table(
        ABLATION,
        {
            "blended, run 1 (shipped)": ("blended", 0),
            "blended, run 2": ("blended", 1),
            "blended, mean ± std": ("blended", None),
            "no blending, run 1": ("no_blending", 0),
            "no blending, run 2": ("no_blending", 1),
            "no blending, mean ± std": ("no_blending", None),
        },
    ),
    "The official shared-batch mask": compared_columns_table(
        SHARED_MASK,
        {
            "blended, mean ± std (2 runs)": ("blended", None),
            "no blending, mean ± std (2 runs)": ("no_blending", None),
            "shared-batch mask (1 run)": ("shared_batch", None),
        },
    ),
    "Does more pretraining pay?": {
        (task, header): [J(COMPUTE, "tasks", task, "points", index, "valid")]
        for task in _read(COMPUTE)["tasks"]
        for index, header in enumerate(("0 (scratch)", "500", "1,000", "2,000", "4,000"))
    },
    "Ensembles of seeds": {
        (task, header): [J(RECIPE + "seed_ensembles.json", task, part, kind, metric)]
        for task, record in _read(RECIPE + "seed_ensembles.json").items()
        for metric in [record["metric"]]
        for header, part, kind in (
            ("members, mean (valid)", "valid", "members_mean"),
            ("ensemble (valid)", "valid", "ensemble"),
            ("members, mean (test)", "test", "members_mean"),
            ("ensemble (test)", "test", "ensemble"),
        )
    },
}
# Columns of row labels (not figures) per table; every other column's numbers are figures.
LABEL_COLUMNS = {
    "Downstream results": 2,
    "Fine-tuned against chemprop 2 and the forest": 2,
    "Ensembles of seeds": 2,
    "Does more pretraining pay?": 2,
}


# --- reading the pages ---------------------------------------------------------------------------------------------


def _clean(cell: str) -> str:
    return cell.strip().replace("**", "").replace("`", "").strip()


def parse_tables(text: str) -> list[dict]:
    """Markdown tables with the heading above each and the text between that heading and the table."""
    tables, heading, prose, lines = [], None, [], text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading, prose = _clean(line.lstrip("#")), []
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append([_clean(c) for c in lines[i].strip().strip("|").split("|")])
                i += 1
            tables.append({"heading": heading, "prose": "\n".join(prose), "header": block[0], "rows": block[2:]})
            continue
        else:
            prose.append(line)
        i += 1
    return tables


def shown_equals(shown: str, value: float) -> bool:
    """Whether `value` rounds to the number as written (its decimals, or its significant digits in e-notation)."""
    text = shown.replace(",", "")
    if "e" in text:
        mantissa = text.split("e")[0]
        digits = len(mantissa.split(".")[1]) if "." in mantissa else 0
        return math.isclose(float(f"{value:.{digits}e}"), float(text), rel_tol=1e-12)
    decimals = len(text.split(".")[1]) if "." in text else 0
    return math.isclose(round(value, decimals), float(text), abs_tol=10 ** -(decimals + 6))


def check_table(table: dict, cells: dict, label_columns: int = 1) -> list[str]:
    """Every mismatch (or unmapped number) of one table, as readable lines."""
    problems, header = [], table["header"]
    sources = {spec.source for specs in cells.values() for spec in specs}
    for source in sorted(sources):
        named = table["prose"] + "\n".join("|".join(row) for row in table["rows"])
        if Path(source).name not in named:
            problems.append(f"{table['heading']}: neither the text above the table nor the table names {source}")
    seen = set()
    for row in table["rows"]:
        label = row[0]
        if len(row) != len(header):
            problems.append(f"{table['heading']}: row {label!r} has {len(row)} cells for {len(header)} columns")
        for column, cell in zip(header[label_columns:], row[label_columns:]):
            numbers = NUMBER.findall(cell)
            key = (label, column)
            if not numbers:
                continue
            if key not in cells:
                problems.append(f"{table['heading']}: {key} shows {cell!r} but has no stored source")
                continue
            seen.add(key)
            specs = cells[key]
            if len(specs) != len(numbers):
                problems.append(f"{table['heading']}: {key} shows {numbers}, mapped to {len(specs)} values")
                continue
            for shown, spec in zip(numbers, specs):
                value = spec()
                if not shown_equals(shown, value):
                    problems.append(f"{table['heading']}: {key} shows {shown}, {spec.source} says {value}")
    for key in sorted(set(cells) - seen):
        problems.append(f"{table['heading']}: mapped cell {key} is not in the table")
    return problems


def check_page(text: str) -> list[str]:
    problems = []
    tables = parse_tables(text)
    headings = [t["heading"] for t in tables]
    for table in tables:
        if table["heading"] not in TABLES:
            problems.append(f"table under {table['heading']!r} has no mapping to stored files")
            continue
        if headings.count(table["heading"]) > 1:
            problems.append(f"more than one table under {table['heading']!r}")
        problems += check_table(table, TABLES[table["heading"]], LABEL_COLUMNS.get(table["heading"], 1))
    problems += [f"mapped table {h!r} is not on the page" for h in TABLES if h not in headings]
    return problems


def readme_results_block(text: str) -> str:
    match = re.search(r"<!-- results:start -->(.*?)<!-- results:end -->", text, re.DOTALL)
    assert match, "README.md has no <!-- results:start --> ... <!-- results:end --> block"
    return match.group(1)


def check_readme(text: str) -> list[str]:
    block = readme_results_block(text)
    files = re.findall(r"benchmarks/results/([\w/.-]+?results\.json)", block)
    if not files:
        return ["README results block names no benchmarks/results/.../results.json"]
    tables = parse_tables("# README results\n" + block)
    if len(tables) != 1:
        return [f"README results block holds {len(tables)} tables, not one"]
    return check_table(tables[0], results_table(files[0]), label_columns=2)


BENCHMARKS_PAGE = ROOT / "docs" / "benchmarks.md"


def test_every_figure_of_the_benchmarks_page_equals_its_stored_file():
    problems = check_page(BENCHMARKS_PAGE.read_text())
    assert not problems, "\n".join(problems)


def test_the_readme_results_table_equals_its_stored_file():
    problems = check_readme((ROOT / "README.md").read_text())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "change",
    [
        ("| 64 | 5.00 | 9.97 | 0.50 |", "| 64 | 5.00 | 9.97 | 0.51 |"),  # a ratio off by one in its last digit
        ("| bace | ROC-AUC | 0.692 ± 0.023 |", "| bace | ROC-AUC | 0.692 ± 0.024 |"),  # a standard deviation
        ("| 0.0686 |", "| 0.071 |"),  # the figure the old README showed
        ("| ratio (×) | 4.5 |", "| ratio (×) | 4.5 | 7 |"),  # a number without a source
        ("file: `benchmarks/results/int8_accuracy.json`", "file: (none)"),  # the source no longer named
    ],
)
def test_the_check_finds_a_figure_that_differs_from_its_file(change):
    old, new = change
    text = BENCHMARKS_PAGE.read_text()
    assert old in text
    assert check_page(text.replace(old, new, 1))


def test_the_readme_check_finds_a_changed_result():
    text = (ROOT / "README.md").read_text()
    block = readme_results_block(text)
    changed = block.replace("0.711 ± 0.004", "0.712 ± 0.004", 1)
    assert changed != block
    assert check_readme(text.replace(block, changed))


def test_numbers_are_compared_at_the_precision_shown():
    assert shown_equals("0.778", 0.7781694)
    assert not shown_equals("0.77", 0.7647)
    assert shown_equals("1,342", 1342.117)
    assert shown_equals("1.2e-6", 1.1920928955078125e-06)
    assert not shown_equals("3e-7", 1.1920928955078125e-06)
