"""Atom and bond vocabularies: the values of OGB's `atom_to_feature_vector` / `bond_to_feature_vector`.

The official MoleBLEND checkpoint was trained on these indices, so they are reproduced exactly (and tested against
the `ogb` package). One difference is deliberate: OGB raises on bond stereo values it does not know (RDKit added
atropisomer stereo after OGB was written); here they map to STEREOANY instead of crashing.

Every value written into the tensor contract is the OGB index + 1, so that 0 can mean padding.
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem

ATOMIC_NUMBERS = list(range(1, 119))  # index 118 = misc
CHIRALITY = ["CHI_UNSPECIFIED", "CHI_TETRAHEDRAL_CW", "CHI_TETRAHEDRAL_CCW", "CHI_OTHER"]  # + misc
DEGREES = list(range(11))  # + misc
FORMAL_CHARGES = list(range(-5, 6))  # + misc
NUM_HS = list(range(9))  # + misc
RADICAL_ELECTRONS = list(range(5))  # + misc
HYBRIDIZATION = ["SP", "SP2", "SP3", "SP3D", "SP3D2"]  # + misc
BOND_TYPES = ["SINGLE", "DOUBLE", "TRIPLE", "AROMATIC"]  # + misc
BOND_STEREO = ["STEREONONE", "STEREOZ", "STEREOE", "STEREOCIS", "STEREOTRANS", "STEREOANY"]

ATOM_FEATURE_NAMES = (
    "atomic_num",
    "chirality",
    "degree",
    "formal_charge",
    "num_hs",
    "radical_electrons",
    "hybridization",
    "is_aromatic",
    "is_in_ring",
)
BOND_FEATURE_NAMES = ("bond_type", "bond_stereo", "is_conjugated")
NUM_ATOM_FEATURES = len(ATOM_FEATURE_NAMES)
NUM_BOND_FEATURES = len(BOND_FEATURE_NAMES)
# Sizes of each vocabulary (OGB's get_atom_feature_dims / get_bond_feature_dims).
ATOM_FEATURE_DIMS = (119, 5, 12, 12, 10, 6, 6, 2, 2)
BOND_FEATURE_DIMS = (5, 6, 2)


def _lookup(values: list) -> dict:
    return {value: index for index, value in enumerate(values)}


def _enum_lookup(enum_type, names: list[str], default: int) -> dict:
    """RDKit enum member -> OGB index (keyed by the enum objects themselves: no str() per atom on the hot path)."""
    return {
        member: names.index(member.name) if member.name in names else default for member in enum_type.values.values()
    }


_ATOMIC = _lookup(ATOMIC_NUMBERS)
_CHIRAL = _enum_lookup(Chem.ChiralType, CHIRALITY, len(CHIRALITY))
_DEGREE = _lookup(DEGREES)
_CHARGE = _lookup(FORMAL_CHARGES)
_NUM_HS = _lookup(NUM_HS)
_RADICAL = _lookup(RADICAL_ELECTRONS)
_HYBRID = _enum_lookup(Chem.HybridizationType, HYBRIDIZATION, len(HYBRIDIZATION))
_BOND_TYPE = _enum_lookup(Chem.BondType, BOND_TYPES, len(BOND_TYPES))
_STEREO = _enum_lookup(Chem.BondStereo, BOND_STEREO, BOND_STEREO.index("STEREOANY"))


def atom_feature_vector(atom: Chem.Atom) -> list[int]:
    """The 9 OGB atom feature indices of `atom` (unknown values -> the 'misc' index, as in OGB)."""
    return [
        _ATOMIC.get(atom.GetAtomicNum(), len(ATOMIC_NUMBERS)),
        _CHIRAL[atom.GetChiralTag()],
        _DEGREE.get(atom.GetTotalDegree(), len(DEGREES)),
        _CHARGE.get(atom.GetFormalCharge(), len(FORMAL_CHARGES)),
        _NUM_HS.get(atom.GetTotalNumHs(), len(NUM_HS)),
        _RADICAL.get(atom.GetNumRadicalElectrons(), len(RADICAL_ELECTRONS)),
        _HYBRID[atom.GetHybridization()],
        int(atom.GetIsAromatic()),
        int(atom.IsInRing()),
    ]


def bond_feature_vector(bond: Chem.Bond) -> list[int]:
    """The 3 OGB bond feature indices of `bond`."""
    return [_BOND_TYPE[bond.GetBondType()], _STEREO[bond.GetStereo()], int(bond.GetIsConjugated())]


def atom_features(mol: Chem.Mol) -> np.ndarray:
    """[N, 9] uint8: OGB atom feature index + 1 for every atom (0 is reserved for padding)."""
    get = mol.GetAtomWithIdx  # indexing is much faster than RDKit's Python atom-sequence iterator
    rows = [atom_feature_vector(get(i)) for i in range(mol.GetNumAtoms())]
    return np.asarray(rows, dtype=np.uint8).reshape(-1, NUM_ATOM_FEATURES) + np.uint8(1)


def bond_features(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray]:
    """Bond endpoints [E, 2] int64 and OGB bond feature index + 1 [E, 3] uint8."""
    get = mol.GetBondWithIdx
    rows = []
    for i in range(mol.GetNumBonds()):
        bond = get(i)
        rows.append(
            (
                bond.GetBeginAtomIdx(),
                bond.GetEndAtomIdx(),
                _BOND_TYPE[bond.GetBondType()],
                _STEREO[bond.GetStereo()],
                int(bond.GetIsConjugated()),
            )
        )
    table = np.asarray(rows, dtype=np.int64).reshape(-1, 2 + NUM_BOND_FEATURES)
    return table[:, :2], (table[:, 2:] + 1).astype(np.uint8)
