"""Runs inside the transformers-4.x venv: OGB smiles2graph + Graphormer preprocess_item + collator.

Prints one JSON line: the seconds of each timed run over the given SMILES file.
"""

import json
import sys
import time

from ogb.utils import smiles2graph
from transformers.models.deprecated.graphormer.collating_graphormer import GraphormerDataCollator, preprocess_item


def run(smiles, batch_size):
    collator = GraphormerDataCollator()
    start = time.perf_counter()
    items = []
    for s in smiles:
        graph = smiles2graph(s)
        item = {
            "edge_index": graph["edge_index"],
            "edge_attr": graph["edge_feat"],
            "node_feat": graph["node_feat"],
            "num_nodes": graph["num_nodes"],
            "labels": [0.0],
        }
        items.append(preprocess_item(item))
    for begin in range(0, len(items), batch_size):
        collator(items[begin : begin + batch_size])
    return time.perf_counter() - start


if __name__ == "__main__":
    path, runs, batch_size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    smiles = [line.split()[0] for line in open(path) if line.strip()]
    run(smiles[:50], batch_size)  # compile / warm up pyximport
    print(json.dumps({"seconds": [run(smiles, batch_size) for _ in range(runs)], "molecules": len(smiles)}))
