"""MoleBlendProcessor: molecules -> the tensor contract the MoleBLEND model reads.

Tensor contract (batch-first, padded to the largest molecule N of the batch by `pad` / `MoleBlendCollator`):

| key              | shape, dtype            | meaning                                                            |
|------------------|-------------------------|--------------------------------------------------------------------|
| `atom_features`  | [B, N, 9] uint8         | OGB `atom_to_feature_vector` index + 1 per column; 0 = padding     |
| `attention_mask` | [B, N] int64            | 1 for real atoms                                                   |
| `degree`         | [B, N] uint8            | heavy-atom (graph) degree                                          |
| `shortest_path`  | [B, N, N] int16         | topological distance; 0 on the diagonal; 510 between fragments     |
| `path_bonds`     | [B, N, N, K, 3] uint8   | OGB `bond_to_feature_vector` index + 1 of the first K hops; 0 = none|
| `positions`      | [B, N, 3] float32       | conformer coordinates in Angstrom; zeros without a conformer        |
| `has_3d`         | [B] bool                | whether the molecule has a conformer                               |

Integer tensors use compact dtypes (uint8 / int16; the model accepts any integer dtype), in batches and in
per-molecule features (`featurize`), so `datasets.map` caches and DataLoader batches stay small.

Inputs are parsed, and checked against `max_text_length` / `max_atoms` before expensive work, in parsing.py.
This module needs rdkit and numpy (not the model code), and uses relative imports only so it ships as remote code.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rdkit import Chem
from transformers import BatchFeature
from transformers.feature_extraction_utils import FeatureExtractionMixin

from .conformers import ConformerError, generate_positions
from .featurization import ATOMIC_NUMBERS, NUM_ATOM_FEATURES, NUM_BOND_FEATURES, atom_features, bond_features
from .graph import (
    UNREACHABLE,
    canonical_priority,
    heavy_degree,
    official_path_bond_features,
    path_bond_features,
    shortest_path_matrix,
)
from .molecule_features import check_feature_sets, compute_molecule_features, rdkit2d_names
from .parsing import AtomsWithCoordinates, MoleculeError, SdfRecord, describe, expand_inputs, read_sdf_records, to_mol

logger = logging.getLogger(__name__)
CONFORMER_POLICIES = ("given", "generate", "none")
#: characters of text allowed per atom of max_atoms (a molblock with hydrogens takes ~150 per heavy atom)
TEXT_CHARACTERS_PER_ATOM = 256
#: padded batches larger than this get a warning (the caller asked for one huge batch)
LARGE_BATCH_BYTES = 2 * 1024**3
PATH_TIE_BREAKS = ("canonical", "official")
#: atom_features[:, 0] of an atom whose element OGB files under 'misc' (atomic number 0: dummy / query atoms).
MISC_ELEMENT = len(ATOMIC_NUMBERS) + 1
CONTRACT_KEYS = ("atom_features", "attention_mask", "degree", "shortest_path", "path_bonds", "positions", "has_3d")


@dataclass(frozen=True)
class SkippedMolecule:
    """An input that a batch call with `errors="skip"` left out."""

    index: int
    input: str
    reason: str


class MoleBlendProcessor(FeatureExtractionMixin):
    r"""Turns molecules into MoleBLEND inputs.

    Accepts SMILES strings, RDKit `Mol`s (with or without a conformer), MDL molblocks, paths to `.sdf` /
    `.sdf.gz` / `.mol` files (`pathlib.Path`), and [`AtomsWithCoordinates`].

    Args:
        max_atoms: Largest molecule accepted (atoms after hydrogen handling); larger ones are errors.
        max_path_hops: K, hops of each shortest path whose bonds are recorded.
        conformers: `"given"` uses a 3D conformer present in the input and otherwise gives a 2D-only molecule;
            `"generate"` also generates one (ETKDGv3 + MMFF94) when none is given, falling back to 2D with the
            reason recorded when that fails; `"none"` never uses 3D.
        keep_hydrogens: Keep hydrogens as atoms (adds implicit ones). Default: heavy atoms only.
        seed: Random seed of conformer generation.
        conformer_timeout: Seconds allowed for one embedding attempt.
        mmff_max_iters: MMFF94 optimisation iterations.
        path_tie_break: Which shortest path's bonds `path_bonds` records when several are equally short.
            `"canonical"` (default, recommended): chosen by RDKit canonical atom ranks, so features do not depend
            on the atom numbering of the input. `"official"`: the path the official MoleBLEND / Graphormer code
            reconstructs from its Floyd-Warshall intermediate nodes, which follows the atom order; use it with
            converted official checkpoints to reproduce their features exactly.
        max_text_length: Longest SMILES / molblock text accepted, in characters (default: 256 x `max_atoms`);
            longer text is refused before parsing.
    """

    model_input_names = list(CONTRACT_KEYS)

    def __init__(
        self,
        max_atoms: int = 512,
        max_path_hops: int = 5,
        conformers: str = "given",
        keep_hydrogens: bool = False,
        seed: int = 0,
        conformer_timeout: int = 10,
        mmff_max_iters: int = 2000,
        path_tie_break: str = "canonical",
        max_text_length: int | None = None,
        molecule_features: list[str] | tuple[str, ...] | None = None,
        descriptor_names: list[str] | None = None,
        **kwargs,
    ):
        if path_tie_break not in PATH_TIE_BREAKS:
            raise ValueError(f"path_tie_break must be one of {PATH_TIE_BREAKS}, got {path_tie_break!r}")
        if conformers not in CONFORMER_POLICIES:
            raise ValueError(f"conformers must be one of {CONFORMER_POLICIES}, got {conformers!r}")
        # settings may come from a hand-edited preprocessor_config.json: a wrong type is named here, not met as a
        # TypeError in the middle of featurization
        for name, value, least in (
            ("max_atoms", max_atoms, 1),
            ("max_path_hops", max_path_hops, 1),
            ("max_text_length", max_text_length, 1),
            ("seed", seed, 0),
            ("mmff_max_iters", mmff_max_iters, 0),
            ("conformer_timeout", conformer_timeout, 0),
        ):
            if value is None and name == "max_text_length":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        self.max_atoms = max_atoms
        self.max_path_hops = max_path_hops
        self.conformers = conformers
        self.keep_hydrogens = keep_hydrogens
        self.seed = seed
        self.conformer_timeout = conformer_timeout
        self.mmff_max_iters = mmff_max_iters
        self.path_tie_break = path_tie_break
        self.max_text_length = max_text_length or TEXT_CHARACTERS_PER_ATOM * max_atoms
        self.unreachable_distance = UNREACHABLE
        self.molecule_features = list(molecule_features or [])
        check_feature_sets(self.molecule_features)
        self.descriptor_names = (
            list(descriptor_names)
            if descriptor_names is not None
            else (rdkit2d_names() if "rdkit2d" in self.molecule_features else None)
        )
        super().__init__(**kwargs)

    @classmethod
    def from_config(cls, config: Any, **kwargs: Any) -> MoleBlendProcessor:
        """The processor a model with `config` (a `MoleBlendConfig`) expects: its atom limit and path length; other
        settings (`conformers`, `seed`, ...) from `kwargs`."""
        features = getattr(config, "molecule_features", None) or None
        return cls(
            max_atoms=config.max_atoms,
            max_path_hops=config.max_path_hops,
            molecule_features=features,
            descriptor_names=getattr(config, "descriptor_names", None) if features else None,
            **kwargs,
        )

    # ----------------------------------------------------------------------------------------- one molecule
    def featurize(self, molecule: Any, index: int | None = None) -> dict[str, Any]:
        """Features of one molecule in compact dtypes (unpadded), or a MoleculeError naming it.

        Returns a dict with `atom_features` [n, 9] uint8, `degree` [n] uint8, `shortest_path` [n, n] int16,
        `path_bonds` [n, n, K, 3] uint8, `positions` [n, 3] float32, `has_3d` bool, `num_atoms` int and
        `conformer_source` str ('given', 'generated', 'none', or why generation failed).
        """
        try:
            mol, positions = to_mol(molecule, self.max_atoms, self.max_text_length, self.keep_hydrogens)
            return self._featurize_mol(mol, positions)
        except MoleculeError as error:
            raise MoleculeError(error.reason, index, molecule) from None
        except ConformerError as error:
            raise MoleculeError(str(error), index, molecule) from None
        except (RuntimeError, ValueError) as error:  # RDKit's own failures on unusual molecules
            raise MoleculeError(
                f"RDKit failed on this molecule ({type(error).__name__}: {error})", index, molecule
            ) from error

    def _featurize_mol(self, mol: Chem.Mol, positions: np.ndarray | None) -> dict[str, Any]:
        n = mol.GetNumAtoms()
        atoms = atom_features(mol)  # before conformer generation: reject unsupported atoms cheaply
        dummies = np.flatnonzero(atoms[:, 0] == MISC_ELEMENT)
        if len(dummies):
            raise MoleculeError(f"unsupported element: dummy/query atom '*' (atomic number 0) at atom {dummies[0]}")
        source = "given" if positions is not None else "none"
        if self.conformers == "none":
            positions, source = None, "none"
        elif positions is None and self.conformers == "generate":
            result = generate_positions(mol, self.seed, self.conformer_timeout, self.mmff_max_iters)
            positions, source = result.positions, result.source
        ends, bond_feats = bond_features(mol)
        distance = shortest_path_matrix(mol)
        return {
            "atom_features": atoms,
            "degree": np.minimum(heavy_degree(n, ends), 255).astype(np.uint8),
            "shortest_path": distance,
            "path_bonds": official_path_bond_features(n, ends, bond_feats, self.max_path_hops)
            if self.path_tie_break == "official"
            else path_bond_features(distance, ends, bond_feats, self.max_path_hops, canonical_priority(mol)),
            "positions": positions if positions is not None else np.zeros((n, 3), dtype=np.float32),
            "has_3d": positions is not None,
            "num_atoms": n,
            "conformer_source": source,
            **(
                {"molecule_features": compute_molecule_features(mol, self.molecule_features, self.descriptor_names)}
                if self.molecule_features
                else {}
            ),
        }

    # ----------------------------------------------------------------------------------------- batches
    def __call__(
        self,
        molecules: Any,
        errors: str = "raise",
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """Featurize and pad a batch (or a single molecule).

        Args:
            molecules: one molecule or a list of them (any accepted input; `Path`s to SDF files expand to their
                records).
            errors: `"raise"` stops at the first bad molecule with a MoleculeError naming it; `"skip"` leaves it
                out and records it.
            return_tensors: `"pt"` (default), `"np"`, or None (lists).

        Returns:
            BatchFeature with the tensor contract. Attributes: `input_indices` (index of each row in the input),
            `skipped` (list of [`SkippedMolecule`]) and `conformer_sources` (per row).
        """
        if kwargs:  # a misspelled option (`error=`, `return_tensor=`) must not be ignored silently
            known = ("molecules", "errors", "return_tensors")
            hints = [
                f"{name!r}"
                + (f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(name, known, n=1)) else "")
                for name in kwargs
            ]
            raise TypeError(
                f"MoleBlendProcessor got unexpected keyword argument(s) {', '.join(hints)}; it takes {', '.join(known)}"
            )
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
        if isinstance(molecules, (str, Chem.Mol, AtomsWithCoordinates, os.PathLike)) or molecules is None:
            molecules = [molecules]
        elif isinstance(molecules, (bytes, bytearray, Mapping)) or not isinstance(molecules, Iterable):
            hint = {bytes: ": decode it to a str first", bytearray: ": decode it to a str first"}.get(
                type(molecules),
                ": pass the molecules themselves, e.g. processor(rows['smiles'])"
                if isinstance(molecules, Mapping)
                else "",
            )
            raise TypeError(
                f"MoleBlendProcessor takes a molecule or a list of molecules, got "
                f"{type(molecules).__name__} {describe(molecules, 40)}{hint}"
            )
        features, kept, skipped = [], [], []
        for index, molecule in enumerate(expand_inputs(molecules)):
            try:
                features.append(self.featurize(molecule, index))
                kept.append(index)
            except MoleculeError as error:
                if errors == "raise":
                    raise
                skipped.append(SkippedMolecule(index, describe(molecule), error.reason))
        if not features:
            reasons = "; ".join(f"{s.index}: {s.reason}" for s in skipped[:5])
            raise MoleculeError(f"no molecule of the batch could be featurized ({reasons})")
        batch = self.pad(features, return_tensors=return_tensors)
        batch.input_indices = kept
        batch.skipped = skipped
        batch.conformer_sources = [f["conformer_source"] for f in features]
        return batch

    def pad(
        self,
        features: Sequence[Mapping[str, Any]],
        return_tensors: str | None = "pt",
        label_names: Iterable[str] = ("labels",),
        pad_to_multiple_of: int | None = None,
    ) -> BatchFeature:
        """Pad per-molecule features (from `featurize` or a cached dataset) into a batch; labels pass through.

        `pad_to_multiple_of`: round the padded atom count up to a multiple (fewer distinct shapes, e.g. for CUDA
        graphs), at most to `max_atoms`; outputs of real atoms do not change."""
        if not features:
            raise ValueError("cannot pad an empty list of molecules")
        if pad_to_multiple_of is not None and (not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1):
            raise ValueError(f"pad_to_multiple_of must be a positive number of atoms, got {pad_to_multiple_of}")
        atom_arrays = [np.asarray(f["atom_features"]) for f in features]
        sizes = [len(a) for a in atom_arrays]
        batch, n = len(features), max(sizes)
        if pad_to_multiple_of:  # never beyond max_atoms, which the model refuses
            n = max(n, min(-(-n // pad_to_multiple_of) * pad_to_multiple_of, self.max_atoms))
        hops = self.max_path_hops
        padded_bytes = batch * n * n * (hops * NUM_BOND_FEATURES + 2)
        if padded_bytes > LARGE_BATCH_BYTES:
            logger.warning(
                "padding %d molecules to %d atoms takes %.1f GB; for large datasets pad per batch "
                "(MoleBlendCollator, or processor.featurize per molecule and pad in chunks)",
                batch,
                n,
                padded_bytes / 1e9,
            )
        out = {
            # compact integer types (the model casts where it indexes): a batch of path_bonds is 8x smaller than
            # in int64, in host memory, pinned buffers and host-to-device copies
            "atom_features": np.zeros((batch, n, NUM_ATOM_FEATURES), dtype=np.uint8),
            "attention_mask": np.zeros((batch, n), dtype=np.int64),
            "degree": np.zeros((batch, n), dtype=np.uint8),
            "shortest_path": np.zeros((batch, n, n), dtype=np.int16),
            "path_bonds": np.zeros((batch, n, n, hops, NUM_BOND_FEATURES), dtype=np.uint8),
            "positions": np.zeros((batch, n, 3), dtype=np.float32),
            "has_3d": np.zeros((batch,), dtype=bool),
        }
        for row, (f, size) in enumerate(zip(features, sizes)):
            out["atom_features"][row, :size] = atom_arrays[row]
            out["attention_mask"][row, :size] = 1
            out["degree"][row, :size] = np.asarray(f["degree"])
            out["shortest_path"][row, :size, :size] = np.asarray(f["shortest_path"])
            path = np.asarray(f["path_bonds"])
            if path.size:
                out["path_bonds"][row, :size, :size] = path.reshape(size, size, -1, NUM_BOND_FEATURES)[:, :, :hops]
            out["positions"][row, :size] = np.asarray(f["positions"], dtype=np.float32).reshape(size, 3)
            out["has_3d"][row] = bool(f["has_3d"])
        if self.molecule_features:
            missing = [row for row, f in enumerate(features) if "molecule_features" not in f]
            if missing:
                raise ValueError(
                    f"this processor adds molecule features ({self.molecule_features}) but row "
                    f"{missing[0]} has none: featurize the molecules with this processor"
                )
            out["molecule_features"] = np.stack(
                [np.asarray(f["molecule_features"], dtype=np.float32) for f in features]
            )
        for name in label_names:
            if name in features[0]:
                out[name] = np.asarray([f[name] for f in features])
                if out[name].dtype.kind == "f":
                    out[name] = out[name].astype(np.float32)
        return BatchFeature(out, tensor_type=return_tensors)


@dataclass
class MoleBlendCollator:
    """Collate function for `DataLoader` and `Trainer`.

    Items are per-molecule features (from `featurize` / a `datasets.map`), or raw rows holding a molecule under
    `molecule_key` (e.g. a SMILES column), which are featurized here; a raw row that cannot be featurized raises a
    MoleculeError naming it (filter or skip such rows when building the dataset, so labels never shift).
    Label columns in `label_names` pass through, float labels as float32 (NaN kept for missing labels).

    With the `Trainer`, featurized items work with the default `remove_unused_columns=True` (their keys are model
    inputs); raw rows need `remove_unused_columns=False`, since the Trainer drops the molecule column before the
    collator sees it (the error says so).
    """

    processor: MoleBlendProcessor
    label_names: tuple[str, ...] = ("labels",)
    molecule_key: str = "smiles"

    def __call__(self, items: Sequence[Mapping[str, Any]]) -> BatchFeature:
        features = []
        for position, item in enumerate(items):
            if "atom_features" not in item:
                if self.molecule_key not in item:
                    raise KeyError(
                        f"MoleBlendCollator: item {item.get('index', position)} has neither features nor a "
                        f"{self.molecule_key!r} column (its keys: {sorted(item)}). A Trainer with the default "
                        f"remove_unused_columns=True drops raw columns before collation: pass "
                        f"TrainingArguments(remove_unused_columns=False), or featurize the rows first "
                        f"(processor.featurize, e.g. in dataset.map); set molecule_key= if the molecules are in "
                        f"another column"
                    )
                molecule = item[self.molecule_key]
                item = {
                    **self.processor.featurize(molecule, item.get("index", position)),
                    **{k: item[k] for k in self.label_names if k in item},
                }
            features.append(item)
        return self.processor.pad(features, return_tensors="pt", label_names=self.label_names)


__all__ = [
    "AtomsWithCoordinates",
    "CONTRACT_KEYS",
    "MoleBlendCollator",
    "MoleBlendProcessor",
    "MoleculeError",
    "SkippedMolecule",
    "SdfRecord",
    "read_sdf_records",
]
