"""Training: the run life cycle on the Hugging Face Trainer."""
