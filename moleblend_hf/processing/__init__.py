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

# a saved processor carries its source, loadable with trust_remote_code=True without this package
MoleBlendProcessor.register_for_auto_class("AutoFeatureExtractor")

__all__ = [
    "CONTRACT_KEYS",
    "AtomsWithCoordinates",
    "MoleBlendCollator",
    "MoleBlendProcessor",
    "MoleculeError",
    "SkippedMolecule",
    "read_sdf_records",
]
