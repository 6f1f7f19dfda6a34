"""Molecules -> relation tensors: rdkit + numpy only (never imports the model code)."""

from .processing_moleblend import (
    CONTRACT_KEYS,
    AtomsWithCoordinates,
    MoleBlendCollator,
    MoleBlendProcessor,
    MoleculeError,
    SkippedMolecule,
    read_sdf_records,
)

__all__ = ["CONTRACT_KEYS", "AtomsWithCoordinates", "MoleBlendCollator", "MoleBlendProcessor", "MoleculeError",
           "SkippedMolecule", "read_sdf_records"]
