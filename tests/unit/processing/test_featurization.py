"""Atom/bond features against OGB, shortest paths and path bonds against RDKit, on real MoleculeNet molecules."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

from moleblend_hf.processing.featurization import atom_features, bond_feature_vector, bond_features
from moleblend_hf.processing.graph import (
    UNREACHABLE,
    canonical_priority,
    next_hop_matrix,
    path_bond_features,
    shortest_path_atoms,
    shortest_path_matrix,
)

ogb_features = pytest.importorskip("ogb.utils.features")


def _mols(frame, limit=None):
    smiles = frame["smiles"].tolist()[:limit]
    return [m for m in (Chem.MolFromSmiles(s) for s in smiles) if m is not None]


def test_atom_and_bond_features_equal_ogb(bbbp, esol):
    mols = _mols(bbbp) + _mols(esol)
    assert len(mols) > 3000
    for mol in mols:
        expected = np.asarray([ogb_features.atom_to_feature_vector(a) for a in mol.GetAtoms()]) + 1
        np.testing.assert_array_equal(atom_features(mol), expected)
        if mol.GetNumBonds():
            _, feats = bond_features(mol)
            expected_bonds = np.asarray([ogb_features.bond_to_feature_vector(b) for b in mol.GetBonds()]) + 1
            np.testing.assert_array_equal(feats, expected_bonds)


def test_feature_values_fit_ogb_vocabularies(bbbp):
    dims = np.asarray(ogb_features.get_atom_feature_dims())
    for mol in _mols(bbbp, 300):
        feats = atom_features(mol)
        assert (feats >= 1).all() and (feats <= dims).all()


def test_unknown_bond_stereo_maps_to_stereo_any_instead_of_crashing():
    mol = Chem.MolFromSmiles("C/C=C/C")
    bond = mol.GetBondWithIdx(1)
    bond.SetStereo(Chem.BondStereo.STEREOATROPCW)
    with pytest.raises(ValueError):
        ogb_features.bond_to_feature_vector(bond)  # OGB itself crashes on this newer RDKit value
    assert bond_feature_vector(bond)[1] == 5


def test_shortest_paths_equal_rdkit_distance_matrix(bbbp, esol):
    for mol in _mols(bbbp, 400) + _mols(esol, 400):
        spd = shortest_path_matrix(mol)
        reference = Chem.GetDistanceMatrix(mol)
        connected = reference < 1e6
        np.testing.assert_array_equal(spd[connected], reference[connected].astype(int))
        assert (spd[~connected] == UNREACHABLE).all()
        assert (np.diag(spd) == 0).all()


def _bond_table(mol):
    return {
        frozenset((b.GetBeginAtomIdx(), b.GetEndAtomIdx())): np.asarray(bond_feature_vector(b)) + 1
        for b in mol.GetBonds()
    }


@pytest.mark.parametrize("hops", [5, 3])
def test_path_bonds_follow_a_real_shortest_path(bbbp, hops):
    """For every pair: the recorded hops are the bonds of a valid shortest path; unique paths equal RDKit's."""
    checked_unique = 0
    for mol in _mols(bbbp, 150):
        n = mol.GetNumAtoms()
        ends, feats = bond_features(mol)
        spd = shortest_path_matrix(mol)
        priority = canonical_priority(mol)
        paths = path_bond_features(spd, ends, feats, hops, priority)
        hop = next_hop_matrix(spd, ends, priority)
        bonds = _bond_table(mol)
        reference = Chem.GetDistanceMatrix(mol)
        counts = _shortest_path_counts(reference)
        for i in range(n):
            for j in range(n):
                if spd[i, j] == UNREACHABLE:
                    assert not paths[i, j].any()
                    continue
                atoms = atoms_between(hop, i, j)
                assert len(atoms) - 1 == spd[i, j] == reference[i, j]
                steps = list(zip(atoms[:-1], atoms[1:]))
                assert all(frozenset(s) in bonds for s in steps)
                expected = np.zeros((hops, 3), dtype=np.uint8)
                for k, step in enumerate(steps[:hops]):
                    expected[k] = bonds[frozenset(step)]
                np.testing.assert_array_equal(paths[i, j], expected)
                if i < j and spd[i, j] > 1 and counts[i, j] == 1:
                    assert atoms == list(Chem.GetShortestPath(mol, i, j))
                    checked_unique += 1
        if spd[0, n - 1] != UNREACHABLE:
            assert shortest_path_atoms(spd, ends, 0, n - 1, priority) == atoms_between(hop, 0, n - 1)
    assert checked_unique > 1000


def atoms_between(hop, i, j):
    atoms = [i]
    while atoms[-1] != j and len(atoms) <= len(hop):
        atoms.append(int(hop[atoms[-1], j]))
    return atoms


def _shortest_path_counts(distance):
    """[N, N] number of distinct shortest paths, by dynamic programming over distance shells."""
    adjacency = (distance == 1).astype(float)
    counts = np.eye(len(distance))
    finite = distance[distance < 1e6]
    for d in range(1, int(finite.max()) + 1):
        shell = distance == d
        counts[shell] = ((counts * (distance == d - 1)) @ adjacency)[shell]
    return counts


def test_disconnected_fragments_have_no_path_bonds():
    mol = Chem.MolFromSmiles("CCO.[Na+].[Cl-]")
    ends, feats = bond_features(mol)
    spd = shortest_path_matrix(mol)
    paths = path_bond_features(spd, ends, feats, 5)
    assert spd[0, 3] == UNREACHABLE and spd[3, 4] == UNREACHABLE
    assert not paths[0, 3].any() and not paths[3, 4].any()
    assert paths[0, 2, 0].any() and paths[0, 2, 1].any() and not paths[0, 2, 2].any()
