"""Using a trained model: predict, embed, the speed options (int8, compile, CUDA graphs), the pipelines."""
