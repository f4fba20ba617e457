"""``tunesmith eval`` on a tiny trained run: base against tuned, files written, bad input refused."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from fixtures import train_into, write_ads_csv, write_config
from tunesmith.errors import TunesmithError
from tunesmith.evaluate.metrics import METRICS
from tunesmith.evaluate.report import EvalReport
from tunesmith.evaluate.runner import evaluate_run, score_model
from tunesmith.metric_specs import METRIC_SPECS, MetricSpec


@pytest.fixture(scope="module")
def trained_run(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval-run")
    data = write_ads_csv(root / "ads.csv")
    # Two eval batches (batch_size 2, 4 distinct inputs), so batching is exercised.
    config = write_config(
        root / "config.yaml",
        tiny_llama,
        data,
        train={"max_steps": 2, "batch_size": 4},
        eval={"batch_size": 2, "max_new_tokens": 4},
    )
    return train_into(root, config)


@pytest.fixture()
def run_dir(trained_run: Path, tmp_path: Path) -> Path:
    # A private copy: tests write eval.json into it, or check that nothing was written.
    return Path(shutil.copytree(trained_run, tmp_path / trained_run.name))


@pytest.fixture(scope="module")
def evaluated(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EvalReport]:
    # Scored once (base and tuned) and shared: generation is the slow part of these tests.
    run_dir = Path(shutil.copytree(trained_run, tmp_path_factory.mktemp("evaluated") / trained_run.name))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNESMITH_CACHE", str(run_dir.parent / "cache"))
        return run_dir, evaluate_run(run_dir)


def _samples(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


def test_base_and_tuned_scored_on_the_same_rows(evaluated: tuple[Path, EvalReport]) -> None:
    run_dir, report = evaluated
    written = json.loads((run_dir / "eval.json").read_text())
    base, tuned = written["metrics"]["base"], written["metrics"]["tuned"]
    expected = {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "exact_match", "loss", "perplexity"}
    assert set(base) == set(tuned) == expected
    assert written["delta"]["loss"] == pytest.approx(tuned["loss"] - base["loss"])
    assert base["loss"] != tuned["loss"]  # the adapter really was switched off for the base
    assert written["decoding"]["do_sample"] is False
    assert written["data"]["source"] == "eval_split" and written["rows"] == len(report.examples) > 2
    samples = _samples(run_dir)
    assert [s["input"] for s in samples] == [e.prompt for e in report.examples]
    assert all(isinstance(s["base_output"], str) and isinstance(s["tuned_output"], str) for s in samples)
    assert all(s["references"] for s in samples)


def test_no_base_gives_the_same_tuned_outputs_and_loss(evaluated: tuple[Path, EvalReport], run_dir: Path) -> None:
    with_base, first = evaluated
    report = evaluate_run(run_dir, base=False)
    assert report.base is None
    written = json.loads((run_dir / "eval.json").read_text())
    assert written["metrics"]["base"] is None and written["delta"] is None
    alone = _samples(run_dir)
    assert [s["tuned_output"] for s in alone] == [s["tuned_output"] for s in _samples(with_base)]
    assert all(s["base_output"] is None for s in alone)
    assert report.tuned == first.tuned  # same settings, same numbers
    trained = json.loads((run_dir / "run.json").read_text())["metrics"]["eval_loss"]
    assert report.tuned["loss"] == pytest.approx(trained, rel=1e-2)  # teacher-forced loss as training saw it


def test_no_loss_scores_the_same_answers_without_the_teacher_forced_loss(
    evaluated: tuple[Path, EvalReport],
    run_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tunesmith.cli import main

    _, first = evaluated
    monkeypatch.setattr(sys, "argv", ["tunesmith", "eval", str(run_dir), "--no-base", "--no-loss"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0 and "bleu" in capsys.readouterr().out
    written = json.loads((run_dir / "eval.json").read_text())
    tuned = written["metrics"]["tuned"]
    assert "loss" not in tuned and "perplexity" not in tuned and written["decoding"]["teacher_forced_loss"] is False
    assert tuned == {k: v for k, v in first.tuned.items() if k not in ("loss", "perplexity")}
    assert not any("loss" in part for part in written["decoding"]["timings"])


def test_metrics_see_one_batch_at_a_time(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunesmith.evaluate.generation import Decoding
    from tunesmith.evaluate.references import build_eval_set, read_source
    from tunesmith.models.run_model import load_run_model

    batches: list[int] = []

    class Probe:
        def update(self, predictions: Sequence[str], references: Sequence[Any]) -> None:
            batches.append(len(predictions))

        def compute(self) -> dict[str, float]:
            return {"probe": float(len(batches))}

        def state(self) -> dict[str, Any]:
            return {"batches": len(batches)}

    monkeypatch.setitem(METRICS, "probe", Probe)
    monkeypatch.setitem(METRIC_SPECS, "probe", MetricSpec("probe", ("probe",), True, ("causal_lm",)))
    run = load_run_model(run_dir)
    eval_set = build_eval_set(read_source(run.config, None), run.config, run.tokenizer, None)
    scores = score_model(run.model, run, eval_set, ["probe"], Decoding(max_new_tokens=2))
    assert run.config.eval.batch_size == 2
    assert max(batches) <= 2 and sum(batches) == len(eval_set.examples) and len(batches) >= 2
    assert len(scores.outputs) == len(eval_set.examples)


def test_data_file_with_several_references(run_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "more.csv"
    path.write_text(
        "product,audience,ad_text\ncoffee,students,Grab a cup!\ncoffee,students,Stay sharp.\ntea,retirees,Calm.\n"
    )
    report = evaluate_run(run_dir, data=path, limit=1, base=False)
    assert [e.references for e in report.examples] == [("Grab a cup!", "Stay sharp.")]
    written = json.loads((run_dir / "eval.json").read_text())
    assert written["data"]["path"] == str(path) and written["data"]["pairs"] == 2


def test_the_loss_is_over_the_first_reference_unless_all_are_asked_for(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunesmith.cli import main

    rows = "product,audience,ad_text\ncoffee,students,Grab a cup!\ncoffee,students,Stay sharp and awake.\n"
    several, first_only = tmp_path / "several.csv", tmp_path / "first.csv"
    several.write_text(rows + "tea,retirees,Calm.\n")
    first_only.write_text(rows.splitlines()[0] + "\n" + rows.splitlines()[1] + "\ntea,retirees,Calm.\n")
    alone = evaluate_run(run_dir, data=first_only, base=False).tuned["loss"]
    default = evaluate_run(run_dir, data=several, base=False)
    written = json.loads((run_dir / "eval.json").read_text())
    assert written["decoding"]["loss_references"] == "first"
    assert (written["data"]["pairs"], written["data"]["loss_pairs"]) == (3, 2)
    assert default.tuned["loss"] == pytest.approx(alone, rel=1e-6)
    monkeypatch.setattr(sys, "argv", ["tunesmith", "eval", str(run_dir), "--data", str(several), "--no-base"])
    sys.argv += ["--loss-references", "all"]
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0
    written = json.loads((run_dir / "eval.json").read_text())
    assert written["decoding"]["loss_references"] == "all" and written["data"]["loss_pairs"] == 3
    assert written["metrics"]["tuned"]["loss"] != pytest.approx(alone, rel=1e-6)


def test_an_unknown_loss_references_choice_is_refused(run_dir: Path) -> None:
    with pytest.raises(TunesmithError, match="--loss-references 'some': choose first or all"):
        evaluate_run(run_dir, loss_references="some")
    assert _nothing_written(run_dir)


def _nothing_written(run_dir: Path) -> bool:
    return not (run_dir / "eval.json").exists() and not (run_dir / "samples.jsonl").exists()


def test_limit_zero_is_refused(run_dir: Path) -> None:
    with pytest.raises(TunesmithError, match="--limit 0: must be at least 1"):
        evaluate_run(run_dir, limit=0)
    assert _nothing_written(run_dir)


def test_data_file_without_the_template_columns(run_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("product,ad_text\ncoffee,Grab a cup!\n")
    with pytest.raises(TunesmithError, match="column 'audience' is not in"):
        evaluate_run(run_dir, data=path)
    assert _nothing_written(run_dir)


def test_run_that_did_not_complete(run_dir: Path) -> None:
    record = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps(record | {"status": "failed"}))
    with pytest.raises(TunesmithError, match="run is failed, not completed"):
        evaluate_run(run_dir)
    assert _nothing_written(run_dir)


def test_cli_prints_one_line_and_exits_non_zero(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tunesmith.cli import main

    monkeypatch.setattr(sys, "argv", ["tunesmith", "eval", str(run_dir), "--limit", "0"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --limit 0: must be at least 1 (how many inputs to evaluate)"
    ]
    assert _nothing_written(run_dir)


def test_cli_prints_progress_and_the_table(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import re

    from tunesmith.cli import main

    monkeypatch.setattr(sys, "argv", ["tunesmith", "eval", str(run_dir), "--limit", "1"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0
    captured = capsys.readouterr()
    assert all(word in captured.out for word in ("base", "tuned", "delta", "bleu", "perplexity"))
    # Progress goes to stderr: each model's generation and loss, as each starts and ends, base first.
    phases = [(model, phase) for model in ("base", "tuned") for phase in ("generation", "loss")]
    for model, phase in phases:
        unit = "answers" if phase == "generation" else "batches"
        assert re.search(rf"^eval {model} {phase}: (\d+)/\1 {unit}, \d+ s$", captured.err, re.MULTILINE), captured.err
    starts = [captured.err.index(f"eval {model} {phase}: 0/") for model, phase in phases]
    assert starts == sorted(starts)


def test_the_merged_adapter_answers_as_the_unmerged_one_in_fp32(run_dir: Path) -> None:
    # eval folds the adapter into the base weights for speed; in fp32 greedy answers must not change.
    from tunesmith.evaluate.generation import Decoding, generate
    from tunesmith.models.run_model import load_run_model

    record = json.loads((run_dir / "run.json").read_text())
    record["precision"] = {"value": "fp32", "reason": "this test"}
    (run_dir / "run.json").write_text(json.dumps(record))
    report = evaluate_run(run_dir, base=False)
    run = load_run_model(run_dir)
    prompts = [example.prompt for example in report.examples]
    unmerged = generate(run.model, run.tokenizer, run.config, prompts, Decoding(max_new_tokens=4), 2, "fp32")
    assert report.tuned_outputs == unmerged
    assert not any(getattr(m, "merged", False) for m in run.model.modules())  # generate's model stays unmerged


@pytest.mark.parametrize(("count", "size", "expected"), [(105, 32, [27, 26, 26, 26]), (16, 8, [8, 8]), (5, 8, [5])])
def test_generation_batches_are_as_few_as_the_size_allows_and_even(count: int, size: int, expected: list[int]) -> None:
    from tunesmith.evaluate.runner import even_batches

    batches = even_batches(list(range(count)), size)
    assert [len(batch) for batch in batches] == expected
    assert [item for batch in batches for item in batch] == list(range(count))
