"""Bad and unusual inputs: every one gives a clear error (MoleculeError / TypeError naming it) or a counted skip,
never a crash deep inside RDKit, numpy or torch."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from rdkit import Chem

from moleblend_hf import (
    AtomsWithCoordinates,
    MoleBlendConfig,
    MoleBlendForPropertyPrediction,
    MoleBlendProcessor,
    MoleculeError,
)
from moleblend_hf.cli import main

ETHANOL_BLOCK = Chem.MolToMolBlock(Chem.MolFromSmiles("CCO"))
BAD_MOLECULES = [
    # strings that are not molecules
    "",
    " ",
    "\n",
    "\t\t",
    "not a smiles(",
    "C1CC",
    "C(C",
    "CC)",
    "[Xx]",
    "[C",
    "c1ccccc",
    "C%",
    "C%99",
    "=C",
    "C==C",
    "CC(=O)(=O)(=O)C",
    "[NH5]",
    "C[N+](C)(C)(C)C",
    "[*]",
    "*C",
    "[*]CC[*]",
    "C.",
    ".",
    "..",
    "C" * 2000,
    "C1" + "C" * 600 + "1",
    "\x00CCO",
    "CCO\x00",
    "💊",
    "C\u200bC",
    "'CCO'",
    "CCO CCO",
    "CCO\nCCO",
    "InChI=1S/C2H6O/c1-2-3/h3H,2H2,1H3",
    "[2H]",
    "[H][H]",
    "[He]",
    "[U]",
    "[Og]",
    "[C@@H](F)(Cl)Br",
    # molblocks: cut, corrupted, empty
    ETHANOL_BLOCK[: len(ETHANOL_BLOCK) // 2] + "\nM  END\n",
    ETHANOL_BLOCK.replace("0.0000", "nan0.00"),
    "\n\n\n  0  0  0  0  0  0  0  0  0  0999 V2000\nM  END\n",
    "junk\n" * 5 + "V2000\nM  END",
    ETHANOL_BLOCK.replace(" C ", " Q "),
    # other types
    None,
    0,
    5,
    -1,
    3.14,
    math.nan,
    b"CCO",
    bytearray(b"CCO"),
    {"smiles": "CCO"},
    ["CCO"],
    ("CCO",),
    {"CCO"},
    object(),
    np.array([1, 2]),
    torch.tensor([1.0]),
    # structured inputs with bad content
    AtomsWithCoordinates("CCO", [6, 6], np.zeros((2, 3))),
    AtomsWithCoordinates("CCO", [6, 6, 8], np.full((3, 3), np.nan)),
    AtomsWithCoordinates("CCO", [6, 6, 8], np.zeros((3, 3))),
    AtomsWithCoordinates("not a smiles(", [6], np.zeros((1, 3))),
    AtomsWithCoordinates("CCO", [6, 6, 8], np.zeros((3, 2))),
    Chem.Mol(),
    Chem.MolFromSmiles("[*]C"),
]


def test_there_are_at_least_fifty_fuzz_inputs():
    assert len(BAD_MOLECULES) >= 50


@pytest.mark.parametrize("index", range(len(BAD_MOLECULES)))
def test_each_input_featurizes_or_is_refused_with_a_named_reason(index):
    molecule = BAD_MOLECULES[index]
    processor = MoleBlendProcessor(max_atoms=128)
    try:
        features = processor.featurize(molecule, index=index)
    except MoleculeError as error:
        assert error.index == index and error.reason and str(index) in str(error)
        return
    assert features["num_atoms"] >= 1 and features["atom_features"].shape[0] == features["num_atoms"]


def test_a_batch_of_all_of_them_skips_and_counts_in_order():
    processor = MoleBlendProcessor(max_atoms=128)
    molecules = ["CCO", *BAD_MOLECULES, "c1ccccc1"]
    batch = processor(molecules, errors="skip")
    skipped = [s.index for s in batch.skipped]
    assert batch.input_indices[0] == 0 and batch.input_indices[-1] == len(molecules) - 1
    assert sorted(batch.input_indices + skipped) == list(range(len(molecules)))  # every input accounted for
    assert all(s.reason for s in batch.skipped)
    assert batch["atom_features"].shape[0] == len(batch.input_indices)


@pytest.mark.parametrize("value", [0, 3.14, b"CCO", {"smiles": "CCO"}, object()])
def test_a_non_list_batch_is_a_type_error(value):
    with pytest.raises(TypeError, match="MoleBlendProcessor takes a molecule or a list of molecules"):
        MoleBlendProcessor()(value)


# ------------------------------------------------------------------------------------------------- files
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    MoleBlendForPropertyPrediction(
        MoleBlendConfig.from_preset("tiny", num_labels=1, problem_type="regression")
    ).save_pretrained(directory)
    MoleBlendProcessor(conformers="none").save_pretrained(directory)
    return directory


def _files(root: Path) -> dict[str, tuple[Path, int]]:
    """name -> (file, expected exit code)."""
    root.mkdir(exist_ok=True)
    files = {}

    def add(name: str, content: bytes, code: int) -> None:
        (root / name).write_bytes(content)
        files[name] = (root / name, code)

    add("empty.csv", b"", 1)
    add("header_only.csv", b"smiles\n", 0)
    add("no_smiles_column.csv", b"a,b\n1,2\n", 1)
    add("binary.smi", bytes(range(256)) * 4, 1)
    add("mixed_rows.csv", b"smiles\nCCO\n\nnot a smiles(\n" + b"C" * 5000 + b"\n[*]C\nc1ccccc1\n", 0)
    add("quoted_newlines.csv", b'smiles,name\n"CCO\nCC",a\nCCN,b\n', 0)
    add("broken.sdf", (ETHANOL_BLOCK + "$$$$\n" + "garbage\n" * 3 + "$$$$\n" + ETHANOL_BLOCK).encode(), 0)
    add("empty.sdf", b"", 0)
    add("truncated.sdf.gz", gzip.compress(ETHANOL_BLOCK.encode() * 3)[:40], 1)
    add("not_parquet.parquet", b"PAR1 this is not parquet", 1)
    pd.DataFrame({"smiles": ["CCO", None, "C1CC", "CCO"]}).to_parquet(root / "nulls.parquet")
    files["nulls.parquet"] = (root / "nulls.parquet", 0)
    pd.DataFrame({"smiles": [1, 2, 3]}).to_parquet(root / "numbers.parquet")
    files["numbers.parquet"] = (root / "numbers.parquet", 0)
    return files


def test_predict_on_bad_files_gives_one_line_errors_or_counted_skips(tmp_path, model_dir, capsys):
    for name, (path, code) in _files(tmp_path / "in").items():
        out = tmp_path / f"{name}.csv"
        result = main(["predict", str(path), "--model", str(model_dir), "--output", str(out), "--no-progress"])
        captured = capsys.readouterr()
        assert result == code, (name, captured.err[-2000:])
        if code:
            errors = [line for line in captured.err.splitlines() if "error:" in line]
            assert len(errors) == 1 and "Traceback" not in captured.err, (name, captured.err[-2000:])
            assert not out.exists()
            continue
        table = pd.read_csv(out)
        assert table["row"].tolist() == list(range(len(table))), name
        bad = table["prediction_LABEL_0"].isna()
        assert (table.loc[bad, "skipped_reason"].notna()).all(), name  # every empty prediction says why


def test_predict_skips_smiles_with_whitespace_and_says_why(tmp_path, model_dir, capsys):
    data = tmp_path / "spaces.csv"
    data.write_bytes(b'smiles\nc1ccccc1 CCO\nCC O\n"CC\nO"\nCCO\n')
    out = tmp_path / "out.csv"
    assert main(["predict", str(data), "--model", str(model_dir), "--output", str(out), "--no-progress"]) == 0
    table = pd.read_csv(out)
    assert table["row"].tolist() == [0, 1, 2, 3]
    assert table["prediction_LABEL_0"].isna().tolist() == [True, True, True, False]
    assert all("contains whitespace" in reason for reason in table["skipped_reason"][:3])
    assert table["skipped_reason"].isna()[3]
