"""Evaluation: batched generation, task metrics, base against tuned."""
