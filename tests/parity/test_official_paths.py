"""`path_tie_break="official"` reproduces the official code's choice among equally short paths, exactly."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from rdkit import Chem

from moleblend_hf import MoleBlendModel, MoleBlendProcessor
from moleblend_hf.cli import main
from moleblend_hf.processing.featurization import bond_features
from tests.parity.official_reference import OfficialMolnetEncoder, official_edge_input, randomize_

RING_RICH = [
    "c1ccc2c(c1)ccc1ccccc12",  # phenanthrene: fused rings, many equal paths
    "C1CC2CCC1CC2",  # bicyclo[2.2.2]octane: bridged
    "C12C3C4C1C5C2C3C45",  # cubane
    "C1CCCCCCCCCCC1",  # macrocycle
    "O=C1CCCCCCCCCCCCCCN1",  # larger macrocyclic lactam
    "c1ccc2cc3ccccc3cc2c1.C1CC1",  # two fragments
    "CC12CCC3C(CCC4=CC(=O)CCC34C)C1CCC2O",  # testosterone: fused, stereo
    "c1cc2ccc3cccc4ccc(c1)c2c34",  # pyrene
    "C1CC2CC3CC1CC(C2)C3",  # adamantane
    "CN1C=NC2=C1C(=O)N(C(=O)N2C)C",  # caffeine
]


def _expected(mol: Chem.Mol, hops: int = 5) -> np.ndarray:
    ends, feats = bond_features(mol)
    bonds = {}
    for (a, b), f in zip(ends.tolist(), feats.tolist()):
        bonds[(a, b)] = bonds[(b, a)] = f
    return np.asarray(official_edge_input(mol.GetNumAtoms(), bonds, hops), dtype=np.int64)


def _shuffled(smiles: str, seed: int) -> Chem.Mol:
    mol = Chem.MolFromSmiles(smiles)
    order = np.random.default_rng(seed).permutation(mol.GetNumAtoms()).tolist()
    return Chem.RenumberAtoms(mol, order)


@pytest.mark.parametrize("smiles", RING_RICH)
def test_official_tie_break_equals_the_restated_floyd_warshall(smiles):
    processor = MoleBlendProcessor(path_tie_break="official")
    for mol in [Chem.MolFromSmiles(smiles)] + [_shuffled(smiles, seed) for seed in range(3)]:
        got = processor.featurize(mol)["path_bonds"].astype(np.int64)
        np.testing.assert_array_equal(got, _expected(mol))


def test_official_choice_follows_atom_order_and_canonical_does_not():
    official, canonical = MoleBlendProcessor(path_tie_break="official"), MoleBlendProcessor()
    changed_official = 0
    for smiles in RING_RICH:
        mol = Chem.MolFromSmiles(smiles)
        for seed in range(4):
            order = np.random.default_rng(seed).permutation(mol.GetNumAtoms())
            other = Chem.RenumberAtoms(mol, order.tolist())
            back = np.argsort(order)  # atom i of mol is atom back[i] of other
            for processor in (official, canonical):
                a = processor.featurize(mol)["path_bonds"]
                b = processor.featurize(other)["path_bonds"][back][:, back]
                if processor is canonical:
                    np.testing.assert_array_equal(a, b)
                else:
                    changed_official += not np.array_equal(a, b)
    assert changed_official > 0  # the official path choice depends on the numbering


def test_tie_break_is_saved_and_validated(tmp_path):
    MoleBlendProcessor(path_tie_break="official").save_pretrained(tmp_path)
    assert MoleBlendProcessor.from_pretrained(tmp_path).path_tie_break == "official"
    with pytest.raises(ValueError, match="path_tie_break"):
        MoleBlendProcessor(path_tie_break="random")


def test_converted_checkpoint_and_its_saved_processor_reproduce_the_official_encoder(tmp_path):
    """`moleblend convert` output (model + processor) on ring-rich molecules in shuffled atom orders, with bias
    weights of order 1 so that a different path choice would show in the output."""
    reference = OfficialMolnetEncoder(dim=64, layers=2, heads=4, ffn=64, kernels=16)
    randomize_(reference, 3)
    with torch.no_grad():
        bias = reference.molecule_attn_bias
        bias.edge_encoder.weight.mul_(5.0)
        bias.edge_dis_encoder.weight.mul_(5.0)
        bias.edge_encoder.weight[0].zero_()
    state = {f"encoder.molecule_encoder.{k}": v for k, v in reference.state_dict().items()}
    args = argparse.Namespace(
        encoder_layers=2,
        encoder_embed_dim=64,
        encoder_attention_heads=4,
        encoder_ffn_embed_dim=64,
        num_3d_bias_kernel=16,
        multi_hop_max_dist=5,
        add_3d=True,
        activation_fn="gelu",
        droppath_prob=0.0,
        attention_dropout=0.0,
        act_dropout=0.0,
    )
    torch.save({"model": state, "args": args}, tmp_path / "checkpoint_best.pt")
    assert main(["convert", str(tmp_path / "checkpoint_best.pt"), str(tmp_path / "converted")]) == 0
    model = MoleBlendModel.from_pretrained(tmp_path / "converted").eval()
    processor = MoleBlendProcessor.from_pretrained(tmp_path / "converted")
    assert "path_tie_break='official'" in (tmp_path / "converted" / "README.md").read_text()
    processor.conformers = "generate"  # the same conformers for both sides
    mols = [_shuffled(s, 7) for s in RING_RICH]
    batch = processor(mols)
    official = OfficialMolnetEncoder.official_batch(batch)
    edges = torch.zeros_like(batch["path_bonds"])
    for row, mol in enumerate(mols):
        n = mol.GetNumAtoms()
        edges[row, :n, :n] = torch.as_tensor(_expected(mol))
    bond_offsets = 1 + torch.arange(3) * 512
    official["edge_input"] = torch.where(edges > 0, edges - 1 + bond_offsets + 1 + 1, 0)
    with torch.no_grad():
        ours = model(**batch).last_hidden_state
        canonical = model(**MoleBlendProcessor(conformers="generate")(mols)).last_hidden_state
        theirs = reference(official).transpose(0, 1)
    mask = torch.nn.functional.pad(batch["attention_mask"], (1, 0), value=1).bool()
    assert (canonical[mask] - ours[mask]).abs().max() > 1e-3  # the path choice matters at these weights
    torch.testing.assert_close(ours[mask], theirs[mask], rtol=1e-5, atol=1e-5)
