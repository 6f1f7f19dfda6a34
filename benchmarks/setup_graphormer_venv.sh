#!/usr/bin/env bash
# The comparison pipeline most users have today: OGB smiles2graph + Graphormer preprocess_item/collator from
# transformers 4.x (Cython, compiled by pyximport). Installed in its own venv because it needs transformers < 5.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-graphormer
.venv-graphormer/bin/pip install --upgrade pip
.venv-graphormer/bin/pip install torch==2.13.0
.venv-graphormer/bin/pip install "transformers>=4.40,<5" "cython<3" ogb rdkit numpy
