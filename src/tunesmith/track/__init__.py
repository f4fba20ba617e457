"""Tracking runs after the fact: the SQLite registry, comparison, the HTML report and the model card."""
