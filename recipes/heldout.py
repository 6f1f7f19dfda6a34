"""Pick the held-out molecules of the small-budget recipe: 1,000 QM9 molecules (seeded) and the last 1,000
molecules of the MOSES conformer corpus. They are given to `moleblend pretrain --eval-inputs` (their losses are
logged) and to `--exclude` (never trained on).

    python recipes/heldout.py QM9_PARQUET MOSES_CONFORMERS_PARQUET EXCLUDED_TEST_MOLECULES OUTPUT_PARQUET
"""

import sys

import numpy as np
import pandas as pd

from moleblend_hf.sources.files import canonical_set, canonical_smiles


def main(qm9: str, moses: str, test_molecules: str, output: str) -> None:
    test = canonical_set([test_molecules])
    frame = pd.read_parquet(qm9, columns=["id", "smiles", "molblock"])
    frame["id"] = frame["id"].map(lambda i: f"qm9:{i}")
    picked = frame.iloc[np.random.default_rng(1).permutation(len(frame))[:1200]]
    picked = picked[[canonical_smiles(m) not in test for m in picked.molblock]].iloc[:1000]
    corpus = pd.read_parquet(moses, columns=["id", "smiles", "molblock"])
    corpus["id"] = corpus["id"].map(lambda i: f"moses:{i}")
    heldout = pd.concat([picked, corpus.iloc[-1000:]], ignore_index=True)
    heldout.to_parquet(output)
    print(f"{len(heldout)} held-out molecules -> {output}")


if __name__ == "__main__":
    main(*sys.argv[1:])
