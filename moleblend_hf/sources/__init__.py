"""Where molecules come from: files, URLs, Hub datasets, the pretraining stream, splits, the conformer corpus."""
