"""`moleblend embed`: molecules in, a parquet dataset of graph (and optionally atom) embeddings out.

Output is a directory of parquet parts (`part-00000.parquet`, ...; read them with `pandas.read_parquet(DIR)`),
each covering `chunk_size` input rows and written atomically, so an interrupted job resumes at the first missing
part. Molecules that cannot be featurized are listed in `_skipped.jsonl` (underscore files are ignored by parquet
readers) with row, identifier and reason; the embedding rows keep the input row number, so nothing shifts.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from ..arguments import BUNDLED_QM9, EmbedArguments
from ..modeling import MoleBlendConfig, MoleBlendModel
from ..processing import MoleBlendProcessor, MoleculeError
from ..publishing.checkpoints import load_model, load_processor, resolve_model
from ..sources.files import MoleculeRecord, read_table
from ..training.run_directory import open_run, read_run
from .speed import apply_inference_options, atom_padding_multiple, inference_autocast

logger = logging.getLogger(__name__)
EMBED_RUN_FILE = "_run.json"  # parquet readers skip names starting with "_": pd.read_parquet(DIR) reads the parts


@dataclass
class EmbedSummary:
    input: str
    output: str
    rows: int
    embedded: int
    skipped: int
    parts_written: int
    parts_resumed: int
    skip_reasons: dict[str, int]


def load_model_and_processor(
    model_path: str | None, preset: str = "tiny", seed: int = 0, conformers: str | None = None
) -> tuple[MoleBlendModel, MoleBlendProcessor]:
    """A saved model (+ its processor when saved alongside), or a freshly initialised preset model."""
    if model_path is None:
        torch.manual_seed(seed)
        model = MoleBlendModel(MoleBlendConfig.from_preset(preset))
        processor = MoleBlendProcessor.from_config(model.config)
    else:
        from transformers import AutoModel

        model = load_model(AutoModel, model_path)
        processor = load_processor(MoleBlendProcessor, resolve_model(model_path), model.config)
    if conformers is not None:
        processor.conformers = conformers
    return model, processor


def _embed_chunk(
    model: MoleBlendModel,
    processor: MoleBlendProcessor,
    records: list[MoleculeRecord],
    batch_size: int,
    per_atom: bool,
    device: torch.device,
    mixed_precision: str = "no",
) -> tuple[pa.Table, list[dict]]:
    """Embeddings of one chunk in input order; batches are formed by atom count (little padding)."""
    columns: dict[str, list] = {"row": [], "id": [], "embedding": [], "has_3d": [], "conformer_source": []}
    if per_atom:
        columns["atom_embeddings"] = []
    skipped, features, kept = [], [], []
    for record in records:
        try:
            features.append(processor.featurize(record.molecule, record.row))
            kept.append(record)
        except MoleculeError as error:
            skipped.append({"row": record.row, "id": record.identifier, "reason": error.reason})
    graph: list = [None] * len(features)
    atoms: list = [None] * len(features)
    order = sorted(range(len(features)), key=lambda i: features[i]["num_atoms"])
    for start in range(0, len(order), batch_size):
        positions = order[start : start + batch_size]
        batch = processor.pad([features[i] for i in positions], pad_to_multiple_of=atom_padding_multiple(model)).to(
            device
        )
        with torch.inference_mode(), inference_autocast(device, mixed_precision):
            hidden = model(**batch).last_hidden_state.float().cpu()
        for row, i in enumerate(positions):
            graph[i] = hidden[row, 0].numpy()
            if per_atom:
                atoms[i] = hidden[row, 1 : 1 + features[i]["num_atoms"]].numpy().tolist()
    for i, (record, feature) in enumerate(zip(kept, features)):
        columns["row"].append(record.row)
        columns["id"].append(record.identifier)
        columns["embedding"].append(graph[i])
        columns["has_3d"].append(bool(feature["has_3d"]))
        columns["conformer_source"].append(feature["conformer_source"])
        if per_atom:
            columns["atom_embeddings"].append(atoms[i])
    table = pa.table(
        {
            "row": pa.array(columns["row"], pa.int64()),
            "id": pa.array(columns["id"], pa.string()),
            "embedding": pa.array([e.tolist() for e in columns["embedding"]], pa.list_(pa.float32())),
            "has_3d": pa.array(columns["has_3d"], pa.bool_()),
            "conformer_source": pa.array(columns["conformer_source"], pa.string()),
            **(
                {"atom_embeddings": pa.array(columns["atom_embeddings"], pa.list_(pa.list_(pa.float32())))}
                if per_atom
                else {}
            ),
        }
    )
    return table, skipped


def embed_file(
    input_path: str | Path,
    output_dir: str | Path,
    model: MoleBlendModel,
    processor: MoleBlendProcessor,
    batch_size: int = 64,
    chunk_size: int = 2048,
    per_atom: bool = False,
    device: str = "cpu",
    smiles_column: str | None = None,
    molblock_column: str | None = None,
    progress: bool = True,
    mixed_precision: str = "no",
    record: Callable[..., None] | None = None,
) -> EmbedSummary:
    """Embed every molecule of `input_path` into parquet parts under `output_dir` (resumes existing parts).
    `record`: called with the names of the files about to be written (a run directory's manifest)."""
    record = record or (lambda *names: None)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    torch_device = torch.device(device)
    model = model.to(torch_device).eval()
    records = read_table(input_path, smiles_column=smiles_column, molblock_column=molblock_column)
    rows = embedded = written = resumed = 0
    reasons: dict[str, int] = {}
    all_skipped: list[dict] = []
    bar = tqdm(desc="embedding", unit="mol", disable=not progress)
    for part in itertools.count():
        chunk = list(itertools.islice(records, chunk_size))
        if not chunk:
            break
        rows += len(chunk)
        part_path = output_dir / f"part-{part:05d}.parquet"
        skip_path = output_dir / f"_part-{part:05d}.skipped.json"
        if part_path.exists() and skip_path.exists():
            skipped = json.loads(skip_path.read_text())
            embedded += pq.ParquetFile(part_path).metadata.num_rows
            resumed += 1
        else:
            record(part_path.name, skip_path.name, f"_part-{part:05d}.tmp")
            table, skipped = _embed_chunk(model, processor, chunk, batch_size, per_atom, torch_device, mixed_precision)
            tmp = output_dir / f"_part-{part:05d}.tmp"
            pq.write_table(table, tmp)
            skip_path.write_text(json.dumps(skipped))
            tmp.replace(part_path)  # the part exists only once complete
            embedded += table.num_rows
            written += 1
        all_skipped.extend(skipped)
        for item in skipped:
            key = item["reason"].split(" (")[0].split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
        bar.update(len(chunk))
        bar.set_postfix(embedded=embedded, skipped=len(all_skipped))
    bar.close()
    record("_skipped.jsonl", "_summary.json")
    with open(output_dir / "_skipped.jsonl", "w") as handle:
        for item in all_skipped:
            handle.write(json.dumps(item) + "\n")
    summary = EmbedSummary(
        str(input_path), str(output_dir), rows, embedded, len(all_skipped), written, resumed, reasons
    )
    (output_dir / "_summary.json").write_text(json.dumps(asdict(summary), indent=2))
    return summary


def embed(args: EmbedArguments) -> EmbedSummary:
    """`moleblend embed`: the output directory records what it holds (`run.json`: input size and modification
    time, model, chunk size, per-atom, processor settings). A rerun with the same settings resumes at the first
    missing part; different settings are refused (`--overwrite` replaces the embeddings), and a non-empty
    directory that is not an embed output is never written into."""
    source = Path(args.input or BUNDLED_QM9)
    if not source.exists():
        raise FileNotFoundError(f"{source} not found")
    model, processor = load_model_and_processor(args.model, args.preset, args.seed, args.conformers)
    model = apply_inference_options(model, args.quantize, args.compile, args.cuda_graphs)
    stat = source.stat()
    settings = {
        "input": str(source.resolve()),
        "input_bytes": stat.st_size,
        "input_mtime_ns": stat.st_mtime_ns,
        "model": args.model,
        "preset": args.preset if args.model is None else None,
        "seed": args.seed if args.model is None else None,
        "chunk_size": args.chunk_size,
        "per_atom": args.per_atom,
        "quantize": args.quantize,
        "smiles_column": args.smiles_column,
        "molblock_column": args.molblock_column,
        "processor": processor.to_dict(),
        # recorded only when used, so that directories written before the option still resume
        **({"mixed_precision": args.mixed_precision} if args.mixed_precision != "no" else {}),
    }
    previous = read_run(args.output_dir, EMBED_RUN_FILE)
    resume = previous is not None and previous.job == "embed" and not args.overwrite
    changed = (
        {
            k: (previous.settings.get(k), v)
            for k, v in json.loads(json.dumps(settings, default=str)).items()
            if previous.settings.get(k) != v
        }
        if resume
        else {}
    )
    if changed:  # embed resumes by itself: no --resume or --allow-changed-settings to advise
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise ValueError(
            f"{args.output_dir} holds embeddings made with other settings ({listed}); a rerun with "
            "the same settings continues them. Pass --overwrite to replace them, or choose another "
            "--output-dir"
        )
    with open_run(
        args.output_dir,
        "embed",
        settings,
        resume=resume,
        overwrite=args.overwrite,
        run_file=EMBED_RUN_FILE,
        inputs=[source, args.model],
        resume_hint="",
    ) as run:
        summary = embed_file(
            source,
            args.output_dir,
            model,
            processor,
            batch_size=args.batch_size,
            chunk_size=args.chunk_size,
            per_atom=args.per_atom,
            device=args.device,
            smiles_column=args.smiles_column,
            molblock_column=args.molblock_column,
            progress=args.progress,
            mixed_precision=args.mixed_precision,
            record=run.record,
        )
        run.finish()
    return summary
