"""tunesmith: fine-tune pre-trained language models on your own data from one YAML file."""

__version__ = "0.1.0"
