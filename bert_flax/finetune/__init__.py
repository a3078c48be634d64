"""Fine-tuning with task heads: sequence classification and extractive question answering."""
