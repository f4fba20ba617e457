"""One large trial on several workers: a Ray Train ``TorchTrainer`` run launched from the trial's Tune function.

This is Ray Train's own recipe for tuning distributed runs: the Tune trial is a light driver that starts a
TorchTrainer; Ray Train places the workers (on any machine of the cluster), sets up the torch process group
(gloo on CPU, NCCL on GPUs) and the torchrun-style environment (RANK, WORLD_SIZE, ...), which the Hugging Face
Trainer reads exactly as it does under ``tunesmith train --nproc``. Each worker runs the same ``train()``;
rank 0 alone writes the run directory, and ``TuneReportCallback`` passes rank 0's reports on to Tune, so ASHA
sees one stream of evaluations per trial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.rundir import new_run_dir
from tunesmith.tune.trial_setup import (
    ReportCallback,
    TrialSetup,
    build_trial,
    plain_error_line,
    trial_values,
    use_driver_environment,
)

# What the Tune trial itself reserves while its workers train: almost nothing, it only waits for them.
DRIVER_CPU = 0.01


def run_distributed_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """Ray Tune function trainable: train the trial on ``setup.workers`` Ray Train workers.

    The workers' failure becomes one TunesmithError line.
    """
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    index, values = trial_values(config)
    cfg = build_trial(setup, values, index)  # a bad sample fails here, before any worker starts
    run_dir = new_run_dir(setup.trials_dir, cfg.name)  # made once, so every worker trains into the same one
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"setup": setup, "config": cfg, "run_dir": str(run_dir)},
        scaling_config=ray.train.ScalingConfig(
            num_workers=setup.workers, use_gpu=setup.worker_gpu > 0, resources_per_worker=worker_resources(setup)
        ),
        run_config=ray.train.RunConfig(
            name=run_dir.name,
            storage_path=str((setup.study_dir / "ray-train").resolve()),
            callbacks=[TuneReportCallback()],  # type: ignore[list-item]  # a Train V2 UserCallback, typed as V1
            failure_config=ray.train.FailureConfig(max_failures=0),
        ),
    )
    try:
        trainer.fit()
    except ray.train.TrainingFailedError as err:
        raise TunesmithError(worker_error_line(err)) from None


def worker_resources(setup: TrialSetup) -> dict[str, float]:
    """What each worker reserves: resources_per_trial.cpu and .gpu."""
    resources = {"CPU": setup.worker_cpu}
    if setup.worker_gpu > 0:
        resources["GPU"] = setup.worker_gpu
    return resources


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train's per-worker loop: the driver's trial config trained by ``train()`` into its run directory."""
    import ray.train

    from tunesmith.train.runner import train

    setup: TrialSetup = config["setup"]
    use_driver_environment(setup)
    train(
        config["config"],
        output_dir=setup.trials_dir,
        callbacks=[ReportCallback(setup.metric, report=ray.train.report)],
        parent=setup.study_id,
        run_dir=Path(config["run_dir"]),
    )


def worker_error_line(err: Exception) -> str:
    """The first worker's own error, without Ray's wrapping: the line a user can act on."""
    failures = getattr(err, "worker_failures", None) or {}
    if not failures:
        return f"the trial's workers failed: {plain_error_line(str(err))}"
    rank = min(failures)
    return f"worker {rank}: {plain_error_line(str(failures[rank])) or 'failed'}"
