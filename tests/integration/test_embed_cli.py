"""`moleblend embed` end to end: real files, skipped rows reported, rows aligned, resume."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from moleblend_hf import MoleBlendProcessor
from moleblend_hf.cli import main
from moleblend_hf.inference.embed import embed_file, load_model_and_processor
from tests.conftest import DATA, saved_regression_model


def test_embed_cli_on_csv_with_invalid_rows(tmp_path, esol):
    frame = esol.head(30).copy()
    frame.loc[[3, 17], "smiles"] = ["not_a_smiles(", "[*]CC"]
    frame.loc[9, "smiles"] = None
    source = tmp_path / "mols.csv"
    frame.to_csv(source, index=False)
    out = tmp_path / "emb"
    assert (
        main(
            [
                "embed",
                "--input",
                str(source),
                "--output",
                str(out),
                "--batch-size",
                "8",
                "--chunk-size",
                "10",
                "--no-progress",
                "--per-atom",
            ]
        )
        == 0
    )
    table = pd.read_parquet(out).sort_values("row")
    assert table["row"].tolist() == [r for r in range(30) if r not in (3, 9, 17)]
    skipped = [json.loads(line) for line in (out / "_skipped.jsonl").read_text().splitlines()]
    assert [s["row"] for s in skipped] == [3, 9, 17]
    assert "not a valid SMILES" in skipped[0]["reason"] and "input is None" in skipped[1]["reason"]
    # embeddings belong to their rows: recompute row 20 alone with the same (seeded) model
    model, processor = load_model_and_processor(None, "tiny", seed=0)
    with torch.no_grad():
        expected = model.eval()(**processor([frame.smiles[20]])).last_hidden_state[0]
    got = table.set_index("row").loc[20]
    np.testing.assert_allclose(got["embedding"], expected[0].numpy(), atol=1e-5)
    assert len(got["atom_embeddings"]) == expected.shape[0] - 1
    summary = json.loads((out / "_summary.json").read_text())
    assert (summary["rows"], summary["embedded"], summary["skipped"]) == (30, 27, 3)
    # every row's embedding is the one of the molecule alone, though batches are formed by atom count
    with torch.no_grad():
        alone = [model(**processor([frame.smiles[r]])).last_hidden_state[0, 0].numpy() for r in table["row"]]
    np.testing.assert_allclose(np.stack(table["embedding"].to_numpy()), np.stack(alone), atol=1e-5)


def test_int8_quantized_embeddings_are_close_and_recorded(tmp_path, esol):
    source = tmp_path / "mols.csv"
    esol.head(40).to_csv(source, index=False)
    runs = {}
    for quantize in ("none", "int8"):
        out = tmp_path / quantize
        assert (
            main(
                [
                    "embed",
                    "--input",
                    str(source),
                    "--output-dir",
                    str(out),
                    "--preset",
                    "small",
                    "--no-progress",
                    "--quantize",
                    quantize,
                ]
            )
            == 0
        )
        runs[quantize] = np.stack(pd.read_parquet(out).sort_values("row")["embedding"].to_numpy())
        assert json.loads((out / "_run.json").read_text())["settings"]["quantize"] == quantize
    full, int8 = runs["none"], runs["int8"]
    cosine = (full * int8).sum(1) / np.linalg.norm(full, axis=1) / np.linalg.norm(int8, axis=1)
    assert cosine.min() > 0.99 and not np.allclose(full, int8, atol=1e-6)
    # a quantized rerun into the fp32 directory is a different setting: refused
    assert (
        main(
            [
                "embed",
                "--input",
                str(source),
                "--output-dir",
                str(tmp_path / "none"),
                "--preset",
                "small",
                "--no-progress",
                "--quantize",
                "int8",
            ]
        )
        == 1
    )


def test_embed_resumes_completed_parts(tmp_path):
    model, processor = load_model_and_processor(None, "tiny")
    source = DATA / "moses_200_conformers.parquet"
    out = tmp_path / "emb"
    first = embed_file(source, out, model, processor, chunk_size=64, progress=False)
    (out / "part-00002.parquet").unlink()  # as if the job died while writing part 2
    (out / "_part-00002.skipped.json").unlink()
    before = pd.read_parquet(out / "part-00000.parquet")
    second = embed_file(source, out, model, processor, chunk_size=64, progress=False)
    assert (second.parts_resumed, second.parts_written) == (first.parts_written - 1, 1)
    assert second.embedded == first.embedded == 200
    pd.testing.assert_frame_equal(pd.read_parquet(out / "part-00000.parquet"), before)
    assert pd.read_parquet(out)["has_3d"].all()  # molblocks carry conformers
    assert isinstance(processor, MoleBlendProcessor)


def test_embed_refuses_a_mismatched_resume_and_foreign_directories(tmp_path, capsys):
    source = DATA / "moses_200_conformers.parquet"
    out = tmp_path / "emb"
    common = ["embed", "--input", str(source), "--output-dir", str(out), "--chunk-size", "64", "--no-progress"]
    assert main(common) == 0
    first = pd.read_parquet(out)
    assert main(common) == 0  # same settings: resumes (every part done), same rows
    pd.testing.assert_frame_equal(pd.read_parquet(out), first)
    for changed in (["--per-atom"], ["--chunk-size", "32"], ["--seed", "1"]):
        assert main([*common, *changed]) == 1
        error = capsys.readouterr().err
        assert "made with other settings" in error and "--overwrite" in error
        assert "--resume" not in error and "--allow-changed-settings" not in error  # embed has neither flag
    assert main([*common, "--per-atom", "--overwrite"]) == 0
    assert "atom_embeddings" in pd.read_parquet(out).columns and len(pd.read_parquet(out)) == 200
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):
        assert main(["embed", "--input", str(source), "--output-dir", str(foreign), "--no-progress", *extra]) == 1
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_compiled_embeddings_equal_eager_ones(tmp_path, esol):
    """`--compile` (torch.compile with dynamic shapes, about a minute to compile on 2 cores)."""
    source = tmp_path / "mols.csv"
    esol.head(24).to_csv(source, index=False)
    tables = {}
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        assert (
            main(
                [
                    "embed",
                    "--input",
                    str(source),
                    "--output-dir",
                    str(tmp_path / name),
                    "--batch-size",
                    "8",
                    "--no-progress",
                    *extra,
                ]
            )
            == 0
        )
        tables[name] = np.stack(pd.read_parquet(tmp_path / name).sort_values("row")["embedding"].to_numpy())
    np.testing.assert_allclose(tables["compiled"], tables["eager"], atol=1e-5)


@pytest.mark.slow
def test_compiled_predictions_equal_eager_ones(tmp_path):
    """`moleblend predict --compile` (the same helper as embed)."""
    model_dir = saved_regression_model(tmp_path / "model")
    data = tmp_path / "mols.csv"
    pd.DataFrame({"smiles": ["CCO", "c1ccccc1O", "not a smiles(", "CC(=O)Nc1ccc(O)cc1"]}).to_csv(data, index=False)
    tables = {}
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        out = tmp_path / f"{name}.csv"
        assert (
            main(["predict", str(data), "--model", str(model_dir), "--output", str(out), "--no-progress", *extra]) == 0
        )
        tables[name] = pd.read_csv(out)
    np.testing.assert_allclose(
        tables["compiled"]["prediction_LABEL_0"], tables["eager"]["prediction_LABEL_0"], atol=1e-5
    )


def test_int8_quantized_predictions_are_close_and_only_on_the_cpu(tmp_path, esol, capsys):
    """`moleblend predict --quantize int8`: predictions of a regression model within a small fraction of their
    scale of fp32 (benchmarks/int8_accuracy.py measures the metric cost on a fine-tuned model)."""
    model_dir = saved_regression_model(tmp_path / "model")
    data = tmp_path / "mols.csv"
    esol.head(40).to_csv(data, index=False)
    tables = {}
    for quantize in ("none", "int8"):
        out = tmp_path / f"{quantize}.csv"
        assert (
            main(
                [
                    "predict",
                    str(data),
                    "--model",
                    str(model_dir),
                    "--output",
                    str(out),
                    "--no-progress",
                    "--quantize",
                    quantize,
                ]
            )
            == 0
        )
        tables[quantize] = pd.read_csv(out)["prediction_LABEL_0"].to_numpy()
    deviation = np.abs(tables["int8"] - tables["none"])
    assert 0 < deviation.max() < 0.05 * np.abs(tables["none"]).mean() + 0.05
    with pytest.raises(SystemExit) as exited:  # an argument error: exit 2 with one line
        main(
            [
                "predict",
                str(data),
                "--model",
                str(model_dir),
                "--output",
                str(tmp_path / "gpu.csv"),
                "--quantize",
                "int8",
                "--device",
                "cuda",
            ]
        )
    assert exited.value.code == 2 and "--quantize int8 runs on the CPU only" in capsys.readouterr().err
