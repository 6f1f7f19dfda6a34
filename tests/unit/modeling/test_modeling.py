"""MoleBlendModel: save/load, remote code, invariances, attention backends, padding, mixed precision."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from rdkit import Chem
from transformers import AutoConfig, AutoModel

from moleblend_hf import MoleBlendConfig, MoleBlendModel, MoleBlendProcessor
from tests.conftest import tiny_model

ATOL = 1e-4


def _graph_output(model, batch):
    with torch.no_grad():
        return model(**batch).pooler_output


@pytest.fixture(scope="module")
def qm9_batch(qm9):
    return MoleBlendProcessor()(qm9["molblock"].head(8).tolist())


@pytest.fixture(scope="module")
def drug_batch(esol):
    return MoleBlendProcessor(conformers="generate")(esol["smiles"].head(6).tolist())


def test_tiny_config_gives_valid_model():
    config = MoleBlendConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=64)
    model = MoleBlendModel(config).eval()
    batch = MoleBlendProcessor()(["CCO", "c1ccccc1"])
    out = model(**batch)
    assert out.last_hidden_state.shape == (2, 7, 64) and out.pooler_output.shape == (2, 64)
    torch.testing.assert_close(out.pooler_output, out.last_hidden_state[:, 0])


def test_base_defaults_are_the_papers_model():
    config = MoleBlendConfig()
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.intermediate_size) == (
        12,
        768,
        32,
        768,
    )
    assert (config.num_gaussian_kernels, config.max_path_hops, config.max_atoms) == (128, 5, 512)
    assert (config.drop_path_rate, config.attention_probs_dropout_prob, config.activation_dropout) == (0.1, 0.1, 0.1)


@pytest.mark.parametrize(
    "bad", [dict(hidden_size=63), dict(use_2d_relations=False, use_3d_relations=False), dict(num_spatial=100)]
)
def test_invalid_configs_are_rejected(bad):
    with pytest.raises(ValueError):
        MoleBlendConfig.from_preset("tiny", **bad)


def test_save_and_auto_load_give_identical_outputs(tmp_path, qm9_batch):
    model = tiny_model(seed=1)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    assert isinstance(AutoConfig.from_pretrained(tmp_path), MoleBlendConfig)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, MoleBlendModel)
    torch.testing.assert_close(_graph_output(loaded, qm9_batch), _graph_output(model, qm9_batch), rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("saved", ["encoder", "pretraining"])
def test_remote_code_loads_without_the_package(tmp_path, qm9, qm9_batch, saved):
    """A saved checkpoint + processor load with trust_remote_code=True where moleblend_hf cannot be imported;
    a pretraining checkpoint also loads as the plain encoder (AutoModel)."""
    model = tiny_model(seed=2)
    processor = MoleBlendProcessor()
    if saved == "pretraining":
        from moleblend_hf import MoleBlendForPreTraining

        full = MoleBlendForPreTraining(model.config)
        full.moleblend.load_state_dict(model.state_dict())
        full.save_pretrained(tmp_path)
    else:
        model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    for name in ("configuration_moleblend.py", "modeling_moleblend.py", "processing_moleblend.py", "graph.py"):
        assert (tmp_path / name).exists(), name
    molblocks = tmp_path / "molblocks.txt"
    molblocks.write_text("\n$$$$\n".join(qm9["molblock"].head(8)))
    torch.save(_graph_output(model, qm9_batch), tmp_path / "expected.pt")
    script = textwrap.dedent(f"""
        import sys
        sys.modules["moleblend_hf"] = None  # any import of the package now fails
        import torch
        from transformers import AutoModel, AutoProcessor
        model = AutoModel.from_pretrained({str(tmp_path)!r}, trust_remote_code=True).eval()
        processor = AutoProcessor.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
        assert "transformers_modules" in type(model).__module__, type(model).__module__
        assert "transformers_modules" in type(processor).__module__, type(processor).__module__
        blocks = open({str(molblocks)!r}).read().split("\\n$$$$\\n")
        with torch.no_grad():
            out = model(**processor(blocks)).pooler_output
        torch.testing.assert_close(out, torch.load({str(tmp_path / "expected.pt")!r}), rtol=0, atol=1e-6)
        if {saved!r} == "pretraining":
            from transformers import AutoModelForPreTraining
            full = AutoModelForPreTraining.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
            assert type(full).__name__ == "MoleBlendForPreTraining"
        print("REMOTE_OK")
    """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert "REMOTE_OK" in result.stdout, result.stderr[-3000:]


def _random_rotation(seed: int) -> torch.Tensor:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return torch.tensor(q, dtype=torch.float32)


def test_rotation_and_translation_invariance(model, qm9_batch, drug_batch):
    for batch in (qm9_batch, drug_batch):
        assert batch["has_3d"].all()
        reference = _graph_output(model, batch)
        moved = dict(batch)
        mask = batch["attention_mask"].unsqueeze(-1).float()
        moved["positions"] = (batch["positions"] @ _random_rotation(0).T + torch.tensor([3.0, -7.0, 11.0])) * mask
        torch.testing.assert_close(_graph_output(model, moved), reference, rtol=0, atol=ATOL)


def test_atom_renumbering_invariance(model, esol, qm9):
    processor = MoleBlendProcessor()
    mols = [Chem.MolFromMolBlock(b, removeHs=False) for b in qm9["molblock"].head(6)]
    for s in esol["smiles"].head(6):
        mol = Chem.AddHs(Chem.MolFromSmiles(s))
        from rdkit.Chem import AllChem

        AllChem.EmbedMolecule(mol, randomSeed=0)
        mols.append(mol)
    rng = np.random.default_rng(0)
    shuffled = [Chem.RenumberAtoms(m, rng.permutation(m.GetNumAtoms()).tolist()) for m in mols]
    torch.testing.assert_close(
        _graph_output(model, processor(shuffled)), _graph_output(model, processor(mols)), rtol=0, atol=ATOL
    )
    two_d = MoleBlendProcessor(conformers="none")
    torch.testing.assert_close(
        _graph_output(model, two_d(shuffled)), _graph_output(model, two_d(mols)), rtol=0, atol=ATOL
    )


def test_2d_only_output_is_independent_of_coordinates(qm9_batch):
    model = tiny_model(use_3d_relations=False)
    reference = _graph_output(model, qm9_batch)
    scrambled = dict(qm9_batch)
    scrambled["positions"] = torch.randn_like(qm9_batch["positions"]) * 10
    torch.testing.assert_close(_graph_output(model, scrambled), reference, rtol=0, atol=0)
    # and a 2D+3D model ignores coordinates of molecules marked has_3d=False
    both = tiny_model()
    flat = dict(qm9_batch, has_3d=torch.zeros_like(qm9_batch["has_3d"]))
    torch.testing.assert_close(
        _graph_output(both, dict(flat, positions=scrambled["positions"])), _graph_output(both, flat), rtol=0, atol=0
    )


def test_3d_changes_the_output(model, qm9_batch):
    flat = dict(qm9_batch, has_3d=torch.zeros_like(qm9_batch["has_3d"]))
    assert (_graph_output(model, qm9_batch) - _graph_output(model, flat)).abs().max() > 1e-3


def test_3d_only_model_requires_conformers(qm9_batch):
    model = tiny_model(use_2d_relations=False)
    assert torch.isfinite(_graph_output(model, qm9_batch)).all()
    with pytest.raises(ValueError, match="3D relations only"):
        model(**dict(qm9_batch, has_3d=torch.zeros_like(qm9_batch["has_3d"])))


def test_sdpa_and_eager_agree(qm9_batch, drug_batch):
    sdpa = tiny_model(seed=3, attn_implementation="sdpa")
    eager = tiny_model(seed=3, attn_implementation="eager")
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    for batch in (qm9_batch, drug_batch):
        a, b = sdpa(**batch).last_hidden_state, eager(**batch).last_hidden_state
        mask = torch.nn.functional.pad(batch["attention_mask"], (1, 0), value=1).bool()
        torch.testing.assert_close(a[mask], b[mask], rtol=0, atol=1e-5)


def test_padded_molecules_match_unpadded(model, esol):
    processor = MoleBlendProcessor(conformers="generate")
    smiles = esol["smiles"].head(5).tolist()
    batch = processor(smiles)
    together = model(**batch).last_hidden_state
    for row, s in enumerate(smiles):
        alone = model(**processor([s])).last_hidden_state[0]
        n = alone.shape[0]
        torch.testing.assert_close(together[row, :n], alone, rtol=0, atol=ATOL)


def test_bf16_autocast_outputs_are_finite_including_padding(qm9_batch, drug_batch):
    model = tiny_model()
    for batch in (qm9_batch, drug_batch):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(**batch, output_hidden_states=True)
        assert torch.isfinite(out.last_hidden_state.float()).all()
        assert all(torch.isfinite(h.float()).all() for h in out.hidden_states)
    half = tiny_model().to(torch.bfloat16)
    assert torch.isfinite(half(**qm9_batch).last_hidden_state.float()).all()


def test_hidden_states_and_attentions(qm9_batch):
    model = tiny_model(attn_implementation="eager")
    out = model(**qm9_batch, output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    tokens = qm9_batch["atom_features"].shape[1] + 1
    assert out.attentions[0].shape == (8, 4, tokens, tokens)
    padded_keys = ~torch.nn.functional.pad(qm9_batch["attention_mask"], (1, 0), value=1).bool()
    assert (out.attentions[0] * padded_keys[:, None, None, :]).abs().max() == 0
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(8, 4, tokens))
    torch.testing.assert_close(out.hidden_states[-1], out.last_hidden_state)


def test_gradient_checkpointing_gives_the_same_gradients(drug_batch):
    def grads(checkpointing):
        model = tiny_model(seed=4, attention_probs_dropout_prob=0.0, activation_dropout=0.0, drop_path_rate=0.0)
        model.train()
        if checkpointing:
            getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
        model(**drug_batch).pooler_output.pow(2).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain, checkpointed = grads(False), grads(True)
    assert plain.keys() == checkpointed.keys() and len(plain) > 20
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-4, atol=1e-6)


def test_every_parameter_gets_a_gradient(drug_batch):
    model = tiny_model()
    model.train()
    model(**drug_batch).last_hidden_state.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_padding_rows_of_embedding_tables_stay_zero(drug_batch):
    model = tiny_model()
    model.train()
    model(**drug_batch).last_hidden_state.sum().backward()
    for table in (model.atom_embeddings.atom_embedding, model.bias_2d.spd_embedding, model.bias_2d.bond_embedding):
        assert (table.weight[0] == 0).all() and (table.weight.grad[0] == 0).all()


def test_clear_errors_for_wrong_inputs(model):
    batch = MoleBlendProcessor()(["CCO"])
    with pytest.raises(ValueError, match="atom_features must be"):
        model(**dict(batch, atom_features=batch["atom_features"][..., :5]))
    with pytest.raises(ValueError, match="shortest_path"):
        model(**{k: v for k, v in batch.items() if k not in ("shortest_path",)})
