"""Data: read a table, check and render its templates, split, tokenise (cached), collate."""
