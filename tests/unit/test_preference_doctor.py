"""doctor on preference pairs: same sides, empty sides, length shortcut, eval overlap, both sides shown."""

from __future__ import annotations

import csv
from pathlib import Path

from fixtures import write_config
from tunesmith.config import load_config
from tunesmith.doctor import diagnose


def test_doctor_flags_what_preference_tuning_cannot_learn_from(tmp_path: Path, tiny_llama: Path) -> None:
    table = tmp_path / "pairs.csv"
    with table.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["q", "good", "bad"])
        writer.writerow(["Write an ad for tea.", "Steep a pot of calm. Order a tin today!", "Buy tea."])
        writer.writerow(["Write an ad for tea.", "Slow mornings deserve great tea. Order now!", "Tea."])
        writer.writerow(["Write an ad for a bike.", "Same answer.", "same answer"])  # nothing to learn
        writer.writerow(["Write an ad for a lamp.", "A lamp kind to tired eyes. Shop now!", ""])  # empty side
        for i in range(8):
            writer.writerow([f"Write ad {i}.", f"Our product {i} makes every day brighter. Try it!", "Buy it."])
    data = {"train": str(table), "prompt": "{q}", "chosen": "{good}", "rejected": "{bad}", "eval_fraction": 0.3}
    path = write_config(tmp_path / "c.yaml", tiny_llama, table, data=data, train={"objective": "dpo"})
    cfg = load_config(path)
    cfg.data.response = None
    report = diagnose(cfg, timing=False)
    codes = {problem.code: problem.message for problem in report.problems}
    assert "pairs 3" in codes["same_pair"]
    assert codes["empty"].startswith("1 rows have an empty prompt or answer")
    assert "longer than the rejected one" in codes["length_bias"]
    assert report.rows["usable"] == 11 and report.rows["eval"] == 3
    assert [e.label for e in report.examples[:2]] == ["chosen", "rejected"]
    assert "Steep a pot of calm" in "".join(t.text for t in report.examples[0].tokens if t.loss)
    assert not any(t.loss for t in report.examples[0].tokens if "Write an ad" in t.text)
