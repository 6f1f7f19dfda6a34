"""Faster inference paths give the outputs of the plain forward: padding atoms to a multiple, and CUDA graphs.

The CUDA-graph tests need a GPU: they run on a machine with one
(`python -m pytest tests/unit/inference/test_inference_paths.py` there; the README gives the figures) and are
skipped here, where no CUDA device exists.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from moleblend_hf import MoleBlendConfig, MoleBlendForPropertyPrediction, MoleBlendProcessor
from moleblend_hf.cli import main
from moleblend_hf.inference.speed import (
    GRAPH_ATOM_MULTIPLE,
    CUDAGraphInference,
    atom_padding_multiple,
    copy_rows,
    graph_batch_size,
    pad_batch,
)
from moleblend_hf.modeling.modeling_moleblend import token_mask
from tests.conftest import saved_regression_model, tiny_model

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")


def _embeddings(source, directory, *options: str) -> np.ndarray:
    """`moleblend embed` of `source` into `directory` in batches of 8; the embeddings in input row order."""
    assert (
        main(
            [
                "embed",
                "--input",
                str(source),
                "--output-dir",
                str(directory),
                "--batch-size",
                "8",
                "--no-progress",
                *options,
            ]
        )
        == 0
    )
    return np.stack(pd.read_parquet(directory).sort_values("row")["embedding"].to_numpy())


def _predictions(source, model_dir, output, *options: str) -> np.ndarray:
    """`moleblend predict` of `source` with `model_dir` in batches of 8; the predictions in input row order."""
    assert (
        main(
            [
                "predict",
                str(source),
                "--model",
                str(model_dir),
                "--output",
                str(output),
                "--batch-size",
                "8",
                "--no-progress",
                *options,
            ]
        )
        == 0
    )
    return pd.read_csv(output)["prediction_LABEL_0"].to_numpy()


def _features(moses_conformers: pd.DataFrame, count: int) -> list[dict]:
    processor = MoleBlendProcessor()
    return [processor.featurize(block) for block in moses_conformers["molblock"].head(count)]


def test_padding_atoms_to_a_multiple_keeps_real_outputs(moses_conformers):
    processor, model = MoleBlendProcessor(), tiny_model()
    features = _features(moses_conformers, 6)
    tight = processor.pad(features)
    rounded = processor.pad(features, pad_to_multiple_of=GRAPH_ATOM_MULTIPLE)
    n = tight["attention_mask"].shape[1]
    assert rounded["attention_mask"].shape[1] == -(-n // 8) * 8 > n
    assert torch.equal(rounded["attention_mask"][:, :n], tight["attention_mask"])
    with torch.no_grad():
        expected = model(**tight).last_hidden_state
        got = model(**rounded).last_hidden_state
    torch.testing.assert_close(got[:, : n + 1], expected, atol=1e-5, rtol=1e-5)
    # never beyond max_atoms (the model refuses more), and a bad multiple is named
    capped = MoleBlendProcessor(max_atoms=n + 1).pad(features, pad_to_multiple_of=64)
    assert capped["attention_mask"].shape[1] == n + 1
    with pytest.raises(ValueError, match="pad_to_multiple_of must be a positive"):
        processor.pad(features, pad_to_multiple_of=0)


def test_cuda_graph_options_are_checked(tmp_path, capsys):
    for extra, message in (
        (["--cuda-graphs"], "--cuda-graphs needs a CUDA device"),
        (["--cuda-graphs", "--device", "cuda", "--compile"], "exclude each other"),
    ):
        with pytest.raises(SystemExit) as exited:  # an argument error: exit 2 with one line
            main(["embed", "--output-dir", str(tmp_path / "e"), *extra])
        assert exited.value.code == 2 and message in capsys.readouterr().err
    assert atom_padding_multiple(tiny_model()) is None  # plain models pad to the largest molecule only


@needs_cuda
def test_cuda_graphs_equal_eager_outputs_batch_after_batch(moses_conformers):
    """Several shapes, each replayed with other molecules; earlier outputs are not overwritten by later replays."""
    processor, model = MoleBlendProcessor(), tiny_model().cuda()
    graphed = CUDAGraphInference(model)
    features = _features(moses_conformers, 48)
    batches = [
        processor.pad(features[i : i + size], pad_to_multiple_of=8).to("cuda")
        for i, size in ((0, 8), (8, 8), (16, 5), (21, 8), (29, 5), (34, 14))
    ]
    with torch.inference_mode():
        expected = [model(**batch) for batch in batches]
        outputs = [graphed(**batch) for batch in batches]
    shapes = {(graph_batch_size(b["atom_features"].shape[0]), b["atom_features"].shape[1]) for b in batches}
    assert graphed.graphs == len(shapes) < len(batches) and graphed.eager_batches == 0
    for got, want in zip(outputs, expected):
        torch.testing.assert_close(got.last_hidden_state, want.last_hidden_state, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got.pooler_output, want.pooler_output, atol=1e-5, rtol=1e-5)


@needs_cuda
def test_cuda_graphs_under_autocast_replay_after_the_autocast_region(moses_conformers):
    """bf16 autocast: weights are cast inside the graph, so a replay in a later autocast region, after the first
    region's memory was freed and reused, still equals eager."""
    processor, model = MoleBlendProcessor(), tiny_model().cuda()
    graphed = CUDAGraphInference(model)
    first = processor.pad(_features(moses_conformers, 8)).to("cuda")
    second = {name: value.clone() for name, value in first.items()}  # same shape, other conformers
    second["positions"] += 0.3 * torch.randn_like(second["positions"])
    with torch.inference_mode():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            graphed(**first)  # captured here
        churn = [torch.randn(1 << 20, device="cuda") for _ in range(64)]  # reuse the freed memory
        with torch.autocast("cuda", dtype=torch.bfloat16):
            got = graphed(**second).last_hidden_state
            want = model(**second).last_hidden_state
    del churn
    assert graphed.graphs == 1
    torch.testing.assert_close(got.float(), want.float(), atol=2e-2, rtol=2e-2)


@needs_cuda
def test_cuda_graphs_beyond_the_limit_run_eagerly(moses_conformers):
    processor, model = MoleBlendProcessor(), tiny_model().cuda()
    graphed = CUDAGraphInference(model, max_graphs=1)
    features = _features(moses_conformers, 12)
    batches = [processor.pad(features[:4]).to("cuda"), processor.pad(features[4:12]).to("cuda")]
    with torch.inference_mode():
        outputs = [graphed(**batch).pooler_output for batch in batches]
        expected = [model(**batch).pooler_output for batch in batches]
    assert graphed.graphs == 1 and graphed.eager_batches == 1
    for got, want in zip(outputs, expected):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@needs_cuda
def test_cuda_graphs_keep_the_3d_only_check(moses_conformers):
    """A 3D-only model refuses a molecule without a conformer with its own message, graphs or not."""
    processor = MoleBlendProcessor()
    graphed = CUDAGraphInference(tiny_model(use_2d_relations=False).cuda())
    batch = processor.pad(_features(moses_conformers, 4)).to("cuda")
    with torch.inference_mode():
        graphed(**batch)  # captured with conformers
        batch["has_3d"][1] = False
        with pytest.raises(ValueError, match="3D relations only"):
            graphed(**batch)


@needs_cuda
def test_embed_and_predict_with_cuda_graphs_equal_eager(tmp_path, esol):
    source = tmp_path / "mols.csv"
    esol.head(40).to_csv(source, index=False)
    tables = {
        name: _embeddings(source, tmp_path / name, "--device", "cuda", *extra)
        for name, extra in (("eager", []), ("graphs", ["--cuda-graphs"]))
    }
    np.testing.assert_allclose(tables["graphs"], tables["eager"], atol=1e-5)

    model_dir = saved_regression_model(tmp_path / "model")
    predictions = {
        name: _predictions(source, model_dir, tmp_path / f"{name}.csv", "--device", "cuda", *extra)
        for name, extra in (("eager", []), ("graphs", ["--cuda-graphs"]))
    }
    np.testing.assert_allclose(predictions["graphs"], predictions["eager"], atol=1e-5)


def test_aligned_attention_bias_keeps_values_and_gradients():
    """The bias handed to SDPA on CUDA: same values, rows padded to 8 elements in storage (no per-layer copy)."""
    from moleblend_hf.modeling.modeling_moleblend import aligned_attention_bias

    bias = torch.randn(2, 3, 27, 27, requires_grad=True)
    aligned = aligned_attention_bias(bias, torch.float32)
    assert torch.equal(aligned, bias) and all(stride % 8 == 0 for stride in aligned.stride()[:-1])
    (aligned * torch.arange(27.0)).sum().backward()
    assert torch.equal(bias.grad, torch.arange(27.0).expand_as(bias))
    half = aligned_attention_bias(bias.detach(), torch.bfloat16)
    assert half.dtype == torch.bfloat16 and torch.equal(half, bias.detach().to(torch.bfloat16))


def test_label_statistics_set_after_a_forward_are_used(moses_conformers):
    torch.manual_seed(0)
    model = MoleBlendForPropertyPrediction(
        MoleBlendConfig.from_preset("tiny", num_labels=1, problem_type="regression")
    ).eval()
    batch = MoleBlendProcessor().pad(_features(moses_conformers, 3))
    with torch.no_grad():
        before = model(**batch).logits
        model.set_label_statistics(torch.tensor([[1.0], [3.0], [5.0]]))  # mean 3, std 2
        after = model(**batch).logits
    torch.testing.assert_close(after, before * 2 + 3)


@needs_cuda
def test_cuda_forward_equals_cpu_forward(moses_conformers):
    """On CUDA the QKV projections run as one product and the bias is aligned for SDPA: the function is the same."""
    processor, model = MoleBlendProcessor(), tiny_model()
    batch = processor.pad(_features(moses_conformers, 8))
    real = token_mask(batch["attention_mask"].bool())  # padding rows: zero on the CPU, computed on CUDA
    with torch.no_grad():
        expected = model(**batch).last_hidden_state[real]
        got = model.cuda()(**batch.to("cuda")).last_hidden_state.cpu()[real]
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@needs_cuda
@pytest.mark.slow
def test_compiled_inference_on_cuda_equals_eager(moses_conformers):
    """`--compile` on a GPU (dynamic shapes, Triton kernels): two batch shapes, one compilation."""
    from moleblend_hf.inference.speed import compile_for_inference

    processor, model = MoleBlendProcessor(), tiny_model().cuda()
    compiled = compile_for_inference(model)
    features = _features(moses_conformers, 16)
    with torch.inference_mode():
        for batch in (processor.pad(features[:8]).to("cuda"), processor.pad(features[8:13]).to("cuda")):
            torch.testing.assert_close(
                compiled(**batch).last_hidden_state, model(**batch).last_hidden_state, atol=1e-4, rtol=1e-4
            )


def test_embed_and_predict_in_bf16_autocast_are_close_to_fp32(tmp_path, esol, capsys):
    """`--mixed-precision bf16` (meant for GPUs; autocast works the same on the CPU): outputs in float32, close to
    the fp32 ones, and the setting recorded so that an fp32 directory is not resumed in bf16."""
    source = tmp_path / "mols.csv"
    esol.head(24).to_csv(source, index=False)
    tables = {
        precision: _embeddings(source, tmp_path / precision, "--mixed-precision", precision)
        for precision in ("no", "bf16")
    }
    assert tables["bf16"].dtype == np.float32 and not np.array_equal(tables["bf16"], tables["no"])
    cosine = (
        (tables["bf16"] * tables["no"]).sum(1)
        / np.linalg.norm(tables["bf16"], axis=1)
        / np.linalg.norm(tables["no"], axis=1)
    )
    assert cosine.min() > 0.99
    assert (
        main(
            [
                "embed",
                "--input",
                str(source),
                "--output-dir",
                str(tmp_path / "no"),
                "--no-progress",
                "--batch-size",
                "8",
                "--mixed-precision",
                "bf16",
            ]
        )
        == 1
    )  # a different setting: refused
    assert "mixed_precision" in capsys.readouterr().err

    model_dir = saved_regression_model(tmp_path / "model")
    predictions = {
        precision: _predictions(source, model_dir, tmp_path / f"{precision}.csv", "--mixed-precision", precision)
        for precision in ("no", "bf16")
    }
    np.testing.assert_allclose(predictions["bf16"], predictions["no"], atol=0.05 * np.abs(predictions["no"]).mean())
    with pytest.raises(SystemExit):
        main(
            [
                "predict",
                str(source),
                "--model",
                str(model_dir),
                "--output",
                str(tmp_path / "q.csv"),
                "--quantize",
                "int8",
                "--mixed-precision",
                "bf16",
            ]
        )


def test_partial_batches_are_padded_with_repeats_and_cut_back(moses_conformers):
    """CUDA graphs pad a partial batch to the next power of two (repeats of its first molecule): the real rows'
    outputs are those of the unpadded batch, and only they come back."""
    assert [graph_batch_size(n) for n in (1, 2, 3, 5, 8, 9, 64)] == [1, 2, 4, 8, 8, 16, 64]
    model = tiny_model()
    batch = dict(MoleBlendProcessor().pad(_features(moses_conformers, 5)))
    padded = pad_batch(batch, 8)
    assert all(value.shape[0] == 8 for value in padded.values())
    assert all(torch.equal(padded[name][5:], value[:1].expand_as(padded[name][5:])) for name, value in batch.items())
    with torch.no_grad():
        expected = model(**batch)
        got = copy_rows(model(**padded), 5)
    assert got.last_hidden_state.shape[0] == got.pooler_output.shape[0] == 5
    real = token_mask(batch["attention_mask"].bool())
    torch.testing.assert_close(got.last_hidden_state[real], expected.last_hidden_state[real], atol=1e-5, rtol=1e-5)


def test_sdpa_receives_the_aligned_bias_unchanged(moses_conformers, monkeypatch):
    """The bias goes to SDPA as its attention mask, as given: an aligned bias is not made contiguous again (as
    transformers' `position_bias` path would, in every layer)."""
    from moleblend_hf.modeling.modeling_moleblend import TokenRows, aligned_attention_bias

    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording(*args, attn_mask=None, **kwargs):
        seen.append(attn_mask)
        return sdpa(*args, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
    model = tiny_model()
    batch = MoleBlendProcessor().pad(_features(moses_conformers, 4))
    tokens = batch["attention_mask"].shape[1] + 1
    bias = aligned_attention_bias(torch.zeros(4, model.config.num_attention_heads, tokens, tokens), torch.float32)
    rows = torch.randn(4 * tokens, model.config.hidden_size)
    with torch.no_grad():
        model.layers[0].self_attn(rows, bias, TokenRows(4, tokens, None))
    assert seen and seen[0].data_ptr() == bias.data_ptr() and seen[0].stride() == bias.stride()
    assert bias.stride(2) % 8 == 0


def test_label_statistics_survive_inference_mode_and_keep_float32(moses_conformers):
    """A forward under `torch.inference_mode` (pipelines, predict) before training must not leave inference tensors
    behind for backward; under bf16 autocast, regression outputs in large label units keep float32 resolution."""
    torch.manual_seed(0)
    model = MoleBlendForPropertyPrediction(MoleBlendConfig.from_preset("tiny", num_labels=1, problem_type="regression"))
    model.config.label_mean, model.config.label_std = [-411.3], [40.0]
    batch = MoleBlendProcessor().pad(_features(moses_conformers, 3))
    with torch.inference_mode():
        model.eval()(**batch)
    model.train()
    model(**batch, labels=torch.tensor([[-400.0], [-420.0], [-410.0]])).loss.backward()  # no inference-tensor error
    model.eval()
    with torch.no_grad():
        fp32 = model(**batch).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(**batch).logits
    assert bf16.dtype == torch.float32
    # within the head's own bf16 error times std (bf16 values near 411 step by 2: rounding there was off by ~0.9)
    assert (bf16 - fp32).abs().max() < 0.1
