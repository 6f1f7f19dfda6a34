"""Inputs -> RDKit Mols: text (SMILES, molblocks), SDF files and URLs, RDKit Mols, `AtomsWithCoordinates`; the
size guards that run before expensive parsing, and `MoleculeError`, the one error of a molecule that cannot be
used. rdkit + numpy only; relative imports only, so it ships as remote code with the processor.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem import rdDetermineBonds

from .conformers import ConformerError, check_positions, given_positions


class MoleculeError(ValueError):
    """A molecule that cannot be featurized; names the input, its index and the reason."""

    def __init__(self, reason: str, index: int | None = None, molecule: Any = None):
        self.reason = reason
        self.index = index
        self.molecule = molecule
        where = f"Molecule at index {index}" if index is not None else "Molecule"
        super().__init__(f"{where} ({describe(molecule)}): {reason}")


@dataclass(frozen=True)
class AtomsWithCoordinates:
    """A molecule given as a SMILES (the graph) plus atomic numbers and coordinates (the geometry).

    The coordinates may include hydrogens and may list atoms in any order; they are matched to the SMILES atoms
    (directly when heavy atoms come in SMILES order, otherwise through connectivity perceived from the geometry).
    """

    smiles: str
    atomic_numbers: Sequence[int]
    coordinates: Any  # [n, 3] array-like, Angstrom


def describe(molecule: Any, limit: int = 80) -> str:
    """A short, printable description of an input molecule for messages."""
    if molecule is None:
        return "None"
    if isinstance(molecule, Chem.Mol):
        try:
            text = "Mol " + Chem.MolToSmiles(molecule)
        except Exception:  # noqa: BLE001 - a description must never fail
            text = f"Mol with {molecule.GetNumAtoms()} atoms"
    elif isinstance(molecule, AtomsWithCoordinates):
        text = f"SMILES {molecule.smiles!r} with {len(molecule.atomic_numbers)} coordinates"
    elif isinstance(molecule, str) and _is_molblock(molecule):
        text = "molblock " + repr(molecule.splitlines()[0].strip() or "(untitled)")
    else:
        text = repr(molecule)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def to_mol(
    molecule: Any, max_atoms: int, max_text_length: int, keep_hydrogens: bool = False
) -> tuple[Chem.Mol, np.ndarray | None]:
    """Parse and check an input molecule; returns the (hydrogen-handled) Mol and its 3D positions or None."""
    if molecule is None:
        raise MoleculeError("input is None")
    if isinstance(molecule, AtomsWithCoordinates):
        mol, positions = _mol_from_atoms(molecule, max_atoms, max_text_length)
    elif isinstance(molecule, Chem.Mol):
        mol = Chem.Mol(molecule)
        positions = None
    elif isinstance(molecule, str):
        mol = _parse_text(molecule, max_atoms, max_text_length)
        positions = None
    elif isinstance(molecule, (bytes, bytearray)):
        raise MoleculeError(
            f"unsupported input type {type(molecule).__name__}: decode it to a str (SMILES or molblock) first"
        )
    else:
        raise MoleculeError(
            f"unsupported input type {type(molecule).__name__}; give a SMILES, molblock, RDKit Mol, "
            "AtomsWithCoordinates or an SDF path"
        )
    if mol.GetNumAtoms() == 0:
        raise MoleculeError("molecule has no atoms")
    if positions is not None:
        conformer = Chem.Conformer(mol.GetNumAtoms())
        conformer.Set3D(True)
        for i, xyz in enumerate(positions.tolist()):
            conformer.SetAtomPosition(i, xyz)
        mol.RemoveAllConformers()
        mol.AddConformer(conformer, assignId=True)
    mol = handle_hydrogens(mol, keep_hydrogens)
    if mol.GetNumAtoms() > max_atoms:
        raise MoleculeError(f"molecule has {mol.GetNumAtoms()} atoms; max_atoms is {max_atoms}")
    return mol, given_positions(mol)


def handle_hydrogens(mol: Chem.Mol, keep_hydrogens: bool) -> Chem.Mol:
    """Hydrogens as atoms (added, with coordinates when there is a conformer) or removed."""
    try:
        if keep_hydrogens:
            return Chem.AddHs(mol, addCoords=mol.GetNumConformers() > 0)
        if mol.GetNumHeavyAtoms() == mol.GetNumAtoms():
            return mol
        with _quiet_rdkit():  # e.g. "not removing hydrogen atom without neighbors" ([H+], H2): kept, by design
            return Chem.RemoveHs(mol)
    except Exception as error:  # noqa: BLE001 - RDKit raises several unrelated types here
        raise MoleculeError(f"hydrogen handling failed: {error}") from None


class SdfRecord(str):
    """The text of one record of an SDF file (`read_sdf_records`): parsed as a molblock whatever it holds, so that a
    damaged record is reported as one, not as a bad SMILES."""

    __slots__ = ()


def expand_inputs(molecules: Iterable[Any]) -> Iterator[Any]:
    """Yield molecules, expanding SDF / MOL file paths into their records (molblocks, in file order)."""
    for molecule in molecules:
        if isinstance(molecule, os.PathLike):
            yield from read_sdf_records(molecule)
        else:
            yield molecule


def read_sdf_records(path: str | os.PathLike) -> Iterator[SdfRecord]:
    """Molblock text of every record of an `.sdf`, `.sdf.gz` or `.mol` file, in order (unparsed). An http(s) URL
    is streamed (fsspec; read as it is consumed, never downloaded whole)."""
    if str(path).startswith(("http://", "https://")):
        import fsspec

        opened = fsspec.open(
            str(path),
            "rt",
            compression="gzip" if str(path).endswith(".gz") else None,
            encoding="utf-8",
            errors="replace",
            block_size=2**20,
        )
    else:
        path = Path(path)
        opened = (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8", errors="replace")
    with opened as handle:
        record: list[str] = []
        try:
            for line in handle:
                if line.startswith("$$$$"):
                    yield SdfRecord("".join(record))
                    record = []
                else:
                    record.append(line)
        except (EOFError, OSError, zlib.error) as error:  # a cut or damaged .gz
            raise ValueError(f"{path}: the compressed file is truncated or damaged ({error})") from None
        if any(line.strip() for line in record):
            yield SdfRecord("".join(record))


def _parse_text(text: str, max_atoms: int, max_length: int) -> Chem.Mol:
    """SMILES or molblock -> Mol. The size is checked on the text and on an unsanitized parse (cheap, linear)
    before sanitization, whose ring perception is what can take gigabytes on a huge polycyclic input."""
    if len(text) > max_length:
        raise MoleculeError(f"input text has {len(text):,} characters; max_text_length is {max_length:,}")
    stripped = text.strip()
    if not stripped:
        raise MoleculeError("empty SDF record" if isinstance(text, SdfRecord) else "empty SMILES")
    is_molblock = _is_molblock(text)
    if not is_molblock and (blank := next((c for c in stripped if c.isspace()), None)) is not None:
        # RDKit reads whatever follows a blank as the molecule's name: 'c1ccccc1 CCO' would silently be benzene
        raise MoleculeError(
            f"SMILES {_clip(stripped)!r} contains whitespace ({blank!r} at character "
            f"{stripped.index(blank)}); a SMILES has none — is this two molecules or a name?"
        )

    def parse_raw() -> Chem.Mol:
        raw = (
            Chem.MolFromMolBlock(text, sanitize=False, removeHs=False)
            if is_molblock
            else Chem.MolFromSmiles(stripped, sanitize=False)
        )
        if raw is None:
            raise MoleculeError(
                "RDKit could not parse the molblock / SDF record (malformed: header, counts line, "
                "atom/bond block or coordinates unreadable)"
                if is_molblock
                else "not a valid SMILES (syntax error)"
            )
        return raw

    with _quiet_rdkit():
        raw = None
        # Every atom takes at least one character of a SMILES and one line of a molblock: a text within max_atoms
        # of them cannot hold more atoms, and skips the size check (an unsanitized parse and a count, about a
        # fifth of featurizing a drug-like molecule).
        if (stripped.count("\n") + 1 if is_molblock else len(stripped)) > max_atoms:
            raw = parse_raw()
            heavy = sum(1 for atom in raw.GetAtoms() if atom.GetAtomicNum() != 1)
            if heavy > max_atoms:
                raise MoleculeError(f"molecule has {heavy} heavy atoms; max_atoms is {max_atoms}")
        # parsed with sanitization (not SanitizeMol on `raw`): the parsers also clean up stereo flags
        mol = Chem.MolFromMolBlock(text, removeHs=False) if is_molblock else Chem.MolFromSmiles(stripped)
        if mol is None:
            raw = raw if raw is not None else parse_raw()  # a syntax error, or a chemistry problem to name
            problems = Chem.DetectChemistryProblems(raw)
            detail = f" ({problems[0].Message()})" if problems else ""
            raise MoleculeError(
                ("RDKit could not parse the molblock / SDF record" if is_molblock else "not a valid SMILES") + detail
            )
    return mol


def _is_molblock(text: str) -> bool:
    """An SDF record is a molblock whatever its content; other text is one when it has a molblock's marks, or at
    least the four lines (three header lines, the counts line) every molblock starts with."""
    stripped = text.strip()
    return (
        isinstance(text, SdfRecord)
        or "\n" in stripped
        and ("M  END" in stripped or "V2000" in stripped or "V3000" in stripped or stripped.count("\n") >= 3)
    )


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _quiet_rdkit:
    """Silence RDKit's own error log: the error we raise already says what went wrong."""

    def __enter__(self):
        RDLogger.DisableLog("rdApp.*")

    def __exit__(self, *exc):
        RDLogger.EnableLog("rdApp.*")


def _mol_from_atoms(item: AtomsWithCoordinates, max_atoms: int, max_length: int) -> tuple[Chem.Mol, np.ndarray]:
    """The SMILES graph with the given coordinates attached to its atoms (hydrogens' coordinates dropped)."""
    mol = _parse_text(item.smiles, max_atoms, max_length)
    numbers = np.asarray(item.atomic_numbers, dtype=np.int64).reshape(-1)
    coordinates = np.asarray(item.coordinates, dtype=np.float64)
    try:
        check_positions(coordinates, len(numbers))
    except ConformerError as error:
        raise MoleculeError(str(error)) from None
    smiles_numbers = np.asarray([a.GetAtomicNum() for a in mol.GetAtoms()])
    heavy = numbers != 1
    if np.array_equal(numbers[heavy], smiles_numbers):
        return mol, coordinates[heavy]
    order = _match_by_connectivity(mol, numbers, coordinates)
    return mol, coordinates[order]


def _match_by_connectivity(mol: Chem.Mol, numbers: np.ndarray, coordinates: np.ndarray) -> np.ndarray:
    """Index into `numbers` of each SMILES atom, from connectivity perceived in the geometry."""
    geometry = Chem.RWMol()
    for z in numbers.tolist():
        geometry.AddAtom(Chem.Atom(int(z)))
    conformer = Chem.Conformer(len(numbers))
    for i, xyz in enumerate(coordinates.tolist()):
        conformer.SetAtomPosition(i, xyz)
    geometry.AddConformer(conformer)
    try:
        rdDetermineBonds.DetermineConnectivity(geometry)
    except Exception as error:  # noqa: BLE001
        raise MoleculeError(f"could not perceive bonds from the coordinates: {error}") from None
    heavy_geometry = Chem.RemoveHs(_plain_graph(geometry), sanitize=False)
    template = _plain_graph(mol)
    kept = [i for i, z in enumerate(numbers.tolist()) if z != 1]
    match = heavy_geometry.GetSubstructMatch(template)
    if len(match) != mol.GetNumAtoms() or heavy_geometry.GetNumAtoms() != mol.GetNumAtoms():
        raise MoleculeError("atomic numbers/coordinates do not match the SMILES graph")
    return np.asarray([kept[m] for m in match])


def _plain_graph(mol: Chem.Mol) -> Chem.Mol:
    """Element-labelled graph with every bond single, non-aromatic, uncharged (for geometry-to-SMILES matching)."""
    plain = Chem.RWMol(mol)
    for atom in plain.GetAtoms():
        atom.SetFormalCharge(0)
        atom.SetIsAromatic(False)
        atom.SetNoImplicit(True)
    for bond in plain.GetBonds():
        bond.SetBondType(Chem.BondType.SINGLE)
        bond.SetIsAromatic(False)
    return plain.GetMol()
