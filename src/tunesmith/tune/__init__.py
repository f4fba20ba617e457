"""Hyperparameter search on Ray Tune (``tunesmith tune``): the only package that imports Ray."""
