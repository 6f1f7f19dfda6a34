"""`moleblend corpus`: conformers generated once into a parquet corpus the pretraining job reads as given."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from rdkit import Chem

from moleblend_hf import MoleBlendProcessor
from moleblend_hf.cli import main


@pytest.mark.slow
def test_corpus_has_3d_molblocks_in_input_order_and_counts_what_it_left_out(tmp_path):
    source, excluded, out = tmp_path / "in.smi", tmp_path / "x.smi", tmp_path / "corpus.parquet"
    source.write_text("CCO a\nnot_a_smiles b\nc1ccccc1O c\nOC(=O)c1ccccc1 d\nCC(=O)Nc1ccc(O)cc1 e\n")
    excluded.write_text("Oc1ccccc1\n")  # phenol, written differently from the input
    assert main(["corpus", str(source), "--output", str(out), "--exclude", str(excluded), "--num-workers", "1"]) == 0
    frame = pd.read_parquet(out)
    assert frame["id"].tolist() == ["a", "d", "e"]
    for smiles, block in zip(frame.smiles, frame.molblock):
        mol = Chem.MolFromMolBlock(block, removeHs=False)
        assert mol.GetConformer().Is3D() and mol.GetNumAtoms() == Chem.AddHs(Chem.MolFromSmiles(smiles)).GetNumAtoms()
        assert Chem.MolToSmiles(Chem.RemoveHs(mol), isomericSmiles=False) == Chem.MolToSmiles(
            Chem.MolFromSmiles(smiles), isomericSmiles=False
        )
    counts = json.loads((tmp_path / "corpus.parquet.json").read_text())["counts"]
    assert counts == {"written": 3, "excluded": 1, "invalid SMILES": 1}
    batch = MoleBlendProcessor()(frame.molblock.tolist())  # read back as given conformers
    assert batch["has_3d"].all()


@pytest.mark.slow
def test_corpus_refuses_to_replace_an_existing_file_and_stops_at_max_molecules(tmp_path, capsys):
    source, out = tmp_path / "in.smi", tmp_path / "corpus.parquet"
    source.write_text("CCO\nCCN\nCCC\nCCCl\n")
    out.write_text("precious")
    assert main(["corpus", str(source), "--output", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_text() == "precious"
    assert main(["corpus", str(source), "--output", str(out), "--overwrite", "--max-molecules", "2"]) == 0
    assert len(pd.read_parquet(out)) == 2
