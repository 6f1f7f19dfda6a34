"""Jobs built on the model and the processor: data reading, embedding, pretraining, fine-tuning."""
