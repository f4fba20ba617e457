"""One trial in one process: the sampled values applied to the base config, trained by ``train()``."""

from __future__ import annotations

from typing import Any

from tunesmith.tune.trial_setup import (
    ReportCallback,
    TrialSetup,
    build_trial,
    mark_stopped_early,
    trial_values,
    use_driver_environment,
)


def run_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """Ray Tune function trainable: build the trial's config and train it into a normal run directory."""
    from tunesmith.train.runner import train

    index, values = trial_values(config)
    use_driver_environment(setup)
    cfg = build_trial(setup, values, index)
    try:
        train(cfg, output_dir=setup.trials_dir, callbacks=[ReportCallback(setup.metric)], parent=setup.study_id)
    except SystemExit:
        # Ray stops a trial that ASHA dropped by raising SystemExit from tune.report; train() saw a failure.
        mark_stopped_early(setup, index)
        raise
