"""The learning jobs: pretraining, fine-tuning, benchmark tables, training state, run directories, metrics."""
