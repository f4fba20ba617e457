"""tunesmith: fine-tune pre-trained language models on your own data from one YAML file."""

import time

__version__ = "0.1.0"

# When the package was first imported: the `tunesmith` command imports it first thing, so a run's "startup"
# phase (imports of torch and transformers included) is measured from here.
IMPORTED_AT = time.perf_counter()
