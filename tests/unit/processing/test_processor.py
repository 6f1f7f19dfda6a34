"""MoleBlendProcessor: inputs, conformer policies, collation, save/load and bad inputs."""

from __future__ import annotations

import gzip
import subprocess
import sys

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem
from transformers import AutoFeatureExtractor, AutoProcessor

from moleblend_hf import AtomsWithCoordinates, MoleBlendCollator, MoleBlendProcessor, MoleculeError
from moleblend_hf.processing import conformers as conformer_module
from moleblend_hf.processing.processing_moleblend import CONTRACT_KEYS


def _embedded(smiles: str, seed: int = 0) -> Chem.Mol:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    return mol


def test_contract_shapes_and_dtypes(processor):
    batch = processor(["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"])
    n = 11
    assert batch["atom_features"].shape == (3, n, 9) and batch["atom_features"].dtype == torch.uint8
    assert batch["attention_mask"].tolist()[0] == [1] * 3 + [0] * (n - 3)
    assert batch["shortest_path"].shape == (3, n, n) and batch["shortest_path"].dtype == torch.int16
    assert batch["path_bonds"].shape == (3, n, n, 5, 3) and batch["path_bonds"].dtype == torch.uint8
    assert batch["degree"].dtype == torch.uint8
    assert batch["positions"].dtype == torch.float32 and batch["has_3d"].dtype == torch.bool
    assert set(CONTRACT_KEYS) == set(batch.keys())
    # padding stays zero everywhere
    assert (batch["atom_features"][0, 3:] == 0).all() and (batch["path_bonds"][0, 3:] == 0).all()
    assert batch.input_indices == [0, 1, 2] and batch.skipped == []


def test_smiles_mol_molblock_and_sdf_agree(processor, tmp_path):
    mol = _embedded("CC(=O)Nc1ccc(O)cc1")
    block = Chem.MolToMolBlock(mol)
    sdf = tmp_path / "two.sdf"
    writer = Chem.SDWriter(str(sdf))
    writer.write(mol)
    writer.write(_embedded("CCO"))
    writer.close()
    gz = tmp_path / "two.sdf.gz"
    gz.write_bytes(gzip.compress(sdf.read_bytes()))

    from_smiles = processor.featurize("CC(=O)Nc1ccc(O)cc1")
    from_mol = processor.featurize(mol)
    from_block = processor.featurize(block)
    for key in ("atom_features", "degree", "shortest_path", "path_bonds"):
        np.testing.assert_array_equal(from_smiles[key], from_mol[key])
        np.testing.assert_array_equal(from_smiles[key], from_block[key])
    assert not from_smiles["has_3d"] and from_mol["has_3d"] and from_block["has_3d"]
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    np.testing.assert_allclose(from_mol["positions"], mol.GetConformer().GetPositions()[heavy], atol=1e-5)
    np.testing.assert_allclose(from_block["positions"], from_mol["positions"], atol=1e-3)

    for path in (sdf, gz):
        batch = processor(path)
        assert batch["has_3d"].tolist() == [True, True]
        assert batch["attention_mask"].sum(1).tolist() == [11, 3]


def test_qm9_molblocks_keep_dft_geometry(processor, qm9):
    rows = qm9.head(20)
    batch = processor(rows["molblock"].tolist())
    assert batch["has_3d"].all()
    for row, (_, record) in enumerate(rows.iterrows()):
        mol = Chem.MolFromMolBlock(record.molblock, removeHs=False)
        heavy = mol.GetConformer().GetPositions()[[a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]]
        n = len(heavy)
        np.testing.assert_allclose(batch["positions"][row, :n].numpy(), heavy, atol=1e-5)
        from_smiles = processor.featurize(record.smiles)
        np.testing.assert_array_equal(batch["shortest_path"][row, :n, :n].numpy(), from_smiles["shortest_path"])


def test_atoms_with_coordinates_in_any_order(processor, qm9):
    record = qm9.iloc[5]
    mol = Chem.MolFromMolBlock(record.molblock, removeHs=False)
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    coords = mol.GetConformer().GetPositions()
    direct = processor.featurize(AtomsWithCoordinates(record.smiles, numbers, coords))
    assert direct["has_3d"]
    np.testing.assert_allclose(direct["positions"], processor.featurize(record.molblock)["positions"], atol=1e-4)
    perm = np.random.default_rng(1).permutation(len(numbers))
    shuffled = processor.featurize(AtomsWithCoordinates(record.smiles, [numbers[i] for i in perm], coords[perm]))
    # matching through perceived connectivity may map symmetric atoms differently: compare distance spectra
    d1 = np.sort(np.linalg.norm(direct["positions"][:, None] - direct["positions"][None], axis=-1).ravel())
    d2 = np.sort(np.linalg.norm(shuffled["positions"][:, None] - shuffled["positions"][None], axis=-1).ravel())
    np.testing.assert_allclose(d1, d2, atol=1e-4)


def test_conformer_policies(qm9):
    block = qm9.iloc[0].molblock
    assert not MoleBlendProcessor(conformers="none").featurize(block)["has_3d"]
    given = MoleBlendProcessor(conformers="given")
    assert given.featurize(block)["conformer_source"] == "given"
    assert given.featurize("CCO")["conformer_source"] == "none"
    generating = MoleBlendProcessor(conformers="generate", seed=3)
    first, second = generating.featurize("CC(=O)Nc1ccc(O)cc1"), generating.featurize("CC(=O)Nc1ccc(O)cc1")
    assert first["has_3d"] and first["conformer_source"] == "generated"
    np.testing.assert_array_equal(first["positions"], second["positions"])  # seeded
    distances = np.linalg.norm(first["positions"][:, None] - first["positions"][None], axis=-1)
    bonded = first["shortest_path"] == 1
    assert 1.1 < distances[bonded].min() and distances[bonded].max() < 1.6  # real bond lengths


def test_failed_generation_falls_back_to_2d_with_reason(monkeypatch):
    monkeypatch.setattr(conformer_module.AllChem, "EmbedMolecule", lambda *a, **k: -1)
    batch = MoleBlendProcessor(conformers="generate")(["CCO", "CCN"])
    assert batch["has_3d"].tolist() == [False, False]
    assert all("ETKDG embedding did not converge" in s for s in batch.conformer_sources)
    assert (batch["positions"] == 0).all()


def test_explicit_hydrogens_are_removed_by_default(processor):
    plain = processor.featurize("OCC")
    explicit = processor.featurize("[H]OC([H])([H])C([H])([H])[H]")
    for key in ("atom_features", "shortest_path", "path_bonds", "degree"):
        np.testing.assert_array_equal(plain[key], explicit[key])
    with_h = MoleBlendProcessor(keep_hydrogens=True).featurize("CCO")
    assert with_h["num_atoms"] == 9


def test_multi_fragment_molecules_are_allowed(processor):
    features = processor.featurize("CC(=O)[O-].[Na+]")
    assert features["shortest_path"][0, 4] == processor.unreachable_distance


def test_save_and_auto_load(tmp_path):
    processor = MoleBlendProcessor(conformers="generate", max_path_hops=3, seed=7)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "preprocessor_config.json").exists()
    for loader in (AutoProcessor, AutoFeatureExtractor, MoleBlendProcessor):
        loaded = loader.from_pretrained(tmp_path)
        assert isinstance(loaded, MoleBlendProcessor)
        assert (loaded.conformers, loaded.max_path_hops, loaded.seed) == ("generate", 3, 7)
        a, b = processor(["CCO", "c1ccncc1"]), loaded(["CCO", "c1ccncc1"])
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_collator_pads_cached_features_and_keeps_labels(processor):
    rows = [{**processor.featurize(s), "labels": y} for s, y in [("CCO", 1.5), ("c1ccccc1", float("nan"))]]
    # simulate a datasets cache: arrays become nested lists
    cached = [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in row.items()} for row in rows]
    batch = MoleBlendCollator(processor)(cached)
    direct = processor(["CCO", "c1ccccc1"])
    assert all(torch.equal(batch[k], direct[k]) for k in direct)
    assert batch["labels"].dtype == torch.float32
    assert batch["labels"][0] == 1.5 and torch.isnan(batch["labels"][1])
    raw = MoleBlendCollator(processor)([{"smiles": "CCO", "labels": 1}, {"smiles": "c1ccccc1", "labels": 0}])
    assert torch.equal(raw["atom_features"], direct["atom_features"]) and raw["labels"].tolist() == [1, 0]


BAD_INPUTS = [
    ("not_a_smiles(", "not a valid SMILES"),
    ("", "empty SMILES"),
    (None, "input is None"),
    ("c1cccc1", "kekulize"),
    ("[*]CC", "unsupported element"),
    ("C" * 40, "max_atoms is 32"),
    (AtomsWithCoordinates("CCO", [6, 6, 8], np.zeros((4, 3))), "4 coordinates given for 3 atoms"),
    (AtomsWithCoordinates("CCO", [6, 6, 8], np.full((3, 3), np.nan)), "NaN"),
    (AtomsWithCoordinates("CCO", [6, 6, 8], np.zeros((3, 3))), "coordinates are missing"),
    (AtomsWithCoordinates("CCO", [6, 6, 7], np.eye(3) * 1.5), "do not match the SMILES"),
    (3.14, "unsupported input type float"),
]


@pytest.mark.parametrize("bad,reason", BAD_INPUTS, ids=[str(i) for i in range(len(BAD_INPUTS))])
def test_bad_input_raises_naming_molecule_index_and_reason(bad, reason):
    processor = MoleBlendProcessor(max_atoms=32)
    with pytest.raises(MoleculeError) as info:
        processor(["CCO", bad, "CCN"])
    message = str(info.value)
    assert "index 1" in message and reason.lower() in message.lower()
    assert info.value.index == 1 and isinstance(info.value, ValueError)


def test_bad_molblocks():
    processor = MoleBlendProcessor()
    mol = _embedded("CCO")
    lines = Chem.MolToMolBlock(mol).splitlines()
    nan_block = "\n".join(lines[:4] + ["       nan" + lines[4][10:]] + lines[5:])
    missing = Chem.Mol(mol)
    for i in range(missing.GetNumAtoms()):
        missing.GetConformer().SetAtomPosition(i, (0.0, 0.0, 0.0))
    truncated = "\n".join(lines[:6] + lines[-1:])  # counts line promises more atoms than are listed
    for block, reason in [
        (nan_block, "could not parse"),
        (Chem.MolToMolBlock(missing), "coordinates are missing"),
        (truncated, "could not parse"),
    ]:
        with pytest.raises(MoleculeError, match=reason):
            processor.featurize(block, 0)
    nan_mol = Chem.Mol(mol)
    nan_mol.GetConformer().SetAtomPosition(0, (float("nan"), 0.0, 0.0))
    with pytest.raises(MoleculeError, match="NaN"):
        processor.featurize(nan_mol, 0)


@pytest.mark.parametrize(
    "text, blank",
    [
        ("c1ccccc1 CCO", "' ' at character 8"),
        ("CC O", "' ' at character 2"),
        ("CC\tO", "'\\t' at character 2"),
        ("CC\nO", "'\\n' at character 2"),
    ],
)
def test_smiles_with_whitespace_are_refused_not_cut_at_the_blank(text, blank):
    """RDKit reads what follows a blank as a name: 'c1ccccc1 CCO' would silently featurize as benzene."""
    with pytest.raises(MoleculeError) as info:
        MoleBlendProcessor().featurize(text, 3)
    assert "contains whitespace" in info.value.reason and blank in info.value.reason
    assert "two molecules or a name" in info.value.reason and info.value.index == 3
    assert MoleBlendProcessor().featurize(f"  {text.split()[0]}\t\n")["num_atoms"] > 0  # the ends are stripped


def test_a_damaged_sdf_record_is_reported_as_one_not_as_a_smiles(tmp_path):
    path = tmp_path / "broken.sdf"
    path.write_text(Chem.MolToMolBlock(Chem.MolFromSmiles("CCO")) + "$$$$\ngarbage\n$$$$\n")
    batch = MoleBlendProcessor()([path], errors="skip")
    assert batch.input_indices == [0] and [s.index for s in batch.skipped] == [1]
    assert "molblock / SDF record" in batch.skipped[0].reason and "SMILES" not in batch.skipped[0].reason


def test_skip_mode_reports_dropped_inputs_and_keeps_alignment():
    smiles = ["CCO", "bad(", None, "c1ccccc1", "[*]C", "CCN"]
    batch = MoleBlendProcessor()(smiles, errors="skip")
    assert batch.input_indices == [0, 3, 5]
    assert [(s.index, s.reason.split(" ")[0]) for s in batch.skipped] == [(1, "not"), (2, "input"), (4, "unsupported")]
    expected = MoleBlendProcessor()(["CCO", "c1ccccc1", "CCN"])
    assert all(torch.equal(batch[k], expected[k]) for k in expected)
    with pytest.raises(MoleculeError, match="no molecule of the batch"):
        MoleBlendProcessor()(["bad(", None], errors="skip")


def test_misspelled_keyword_arguments_are_refused_with_a_hint():
    processor = MoleBlendProcessor()
    with pytest.raises(TypeError, match="did you mean 'errors'"):
        processor(["CCO"], error="skip")
    with pytest.raises(TypeError, match="did you mean 'return_tensors'"):
        processor(["CCO"], return_tensor="np")


def test_compact_batches_give_the_outputs_of_int64_batches(processor):
    from moleblend_hf import MoleBlendConfig, MoleBlendModel

    torch.manual_seed(0)
    model = MoleBlendModel(MoleBlendConfig.from_preset("tiny")).eval()
    batch = processor(["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "[Na+].[Cl-]"])
    wide = {k: v.long() if v.dtype in (torch.uint8, torch.int16) else v for k, v in batch.items()}
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).last_hidden_state, model(**wide).last_hidden_state, rtol=0, atol=0)


def test_size_limits_are_checked_before_parsing_work():
    processor = MoleBlendProcessor(max_atoms=64, max_text_length=1000)
    with pytest.raises(MoleculeError, match="1,001 characters; max_text_length is 1,000"):
        processor.featurize("C" * 1001)
    with pytest.raises(MoleculeError, match="molecule has 65 heavy atoms; max_atoms is 64"):
        processor.featurize("C1" + "C" * 64 + "1")
    assert MoleBlendProcessor(max_atoms=10).max_text_length == 2560  # derived from max_atoms, saved with it
    # at the bound: texts short enough to skip the size check, and the first ones that need it
    tight = MoleBlendProcessor(max_atoms=5)
    assert tight.featurize("CCCCC")["num_atoms"] == 5 and tight.featurize("[CH3][CH2]O")["num_atoms"] == 3
    with pytest.raises(MoleculeError, match="molecule has 6 heavy atoms; max_atoms is 5"):
        tight.featurize("CCCCCC")
    with pytest.raises(MoleculeError, match="molecule has 6 heavy atoms; max_atoms is 5"):
        tight.featurize(Chem.MolToMolBlock(Chem.MolFromSmiles("CCCCCC")))
    for bad, reason in (("C(C", "not a valid SMILES"), ("C(C)(C)(C)(C)C", "Explicit valence")):
        with pytest.raises(MoleculeError, match=reason):  # short texts: syntax and chemistry still named
            MoleBlendProcessor(max_atoms=64).featurize(bad)


@pytest.mark.parametrize(
    "value, message",
    [
        (5, "got int 5"),
        (b"CCO", "got bytes .*decode it"),
        ({"smiles": "CCO"}, "got dict .*rows\\['smiles'\\]"),
        (3.5, "got float"),
    ],
)
def test_unsupported_batch_types_are_named(processor, value, message):
    with pytest.raises(TypeError, match=message):
        processor(value)


def test_a_huge_ring_smiles_stays_under_a_memory_ceiling(tmp_path):
    """A 40 x 40 fused-ring lattice (1,600 atoms, ~9,500 characters) takes ~260 MB and seconds to sanitize; it is
    refused from the unsanitized atom count first. Peak memory measured in a fresh process."""
    script = """
import resource, sys
from rdkit import Chem
from moleblend_hf.processing import MoleBlendProcessor, MoleculeError
k = 40
lattice = Chem.RWMol()
for _ in range(k * k):
    lattice.AddAtom(Chem.Atom(6))
for r in range(k):
    for c in range(k):
        if c + 1 < k: lattice.AddBond(r * k + c, r * k + c + 1, Chem.BondType.SINGLE)
        if r + 1 < k: lattice.AddBond(r * k + c, (r + 1) * k + c, Chem.BondType.SINGLE)
smiles = Chem.MolToSmiles(lattice.GetMol(), canonical=False)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
processor = MoleBlendProcessor()
for _ in range(3):
    try:
        processor.featurize(smiles)
    except MoleculeError as error:
        reason = error.reason
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(len(smiles), round(grown), reason)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    length, grown, reason = result.stdout.split(maxsplit=2)
    assert int(length) > 9000 and "1600 heavy atoms" in reason
    assert int(grown) < 50, f"peak memory grew by {grown} MB"


def test_a_huge_padded_batch_is_warned_about(monkeypatch, caplog):
    from moleblend_hf.processing import processing_moleblend

    monkeypatch.setattr(processing_moleblend, "LARGE_BATCH_BYTES", 1000)
    with caplog.at_level("WARNING"):
        MoleBlendProcessor()(["CCO", "c1ccccc1O"])
    assert "pad per batch" in caplog.text
    caplog.clear()
    monkeypatch.setattr(processing_moleblend, "LARGE_BATCH_BYTES", 2 * 1024**3)
    with caplog.at_level("WARNING"):
        MoleBlendProcessor()(["CCO", "c1ccccc1O"])
    assert "pad per batch" not in caplog.text
