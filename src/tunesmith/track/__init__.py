"""What training records while it runs: the run registry (runs/index.db), trackers, the model card."""
