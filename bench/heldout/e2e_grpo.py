"""The GRPO held-out check on the cleaned E2E NLG data (restaurant facts to a description), which the project
does not ship: point this at a folder holding the data set's ``devel-fixed.no-ol.csv`` and ``test-fixed.csv``
(its ``cleaned-data/`` folder) and it writes, into an output folder of your choice:

- ``devel.csv`` and ``test.csv``: one row per meaning representation (the first of its references), its slots
  as ``key: value`` lines in ``facts``, the reference in ``ref``, rows shuffled with a fixed seed;
- ``config.yaml``: GRPO from the embedded SmolLM2 on the devel prompts, rewarded by chrF against the reference.

Then: ``tunesmith train OUT/config.yaml`` and ``tunesmith eval runs/e2e-grpo-<timestamp> --data OUT/test.csv
--limit 32`` (the mean reward on unseen test prompts, base against tuned).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd

SLOT = re.compile(r",?\s*([^\[,]+)\[([^\]]*)\]")
PARTS = {"devel": "devel-fixed.no-ol.csv", "test": "test-fixed.csv"}

CONFIG = """\
# GRPO on the cleaned E2E NLG data (held out: not shipped with tunesmith), written by bench/heldout/e2e_grpo.py.
name: e2e-grpo
task: causal_lm
model:
  name: smollm2-135m-instruct
data:
  train: devel.csv
  eval_fraction: 0
  prompt: |-
    Restaurant facts:
    {facts}
    Describe this restaurant in one sentence that uses every fact.
  response: "{ref}"
  system: You write short restaurant descriptions.
  max_length: 192
method:
  name: lora
  r: 16
  alpha: 32
train:
  objective: grpo
  max_steps: 16
  learning_rate: 1.0e-3
  lr_scheduler: constant
  warmup_ratio: 0.0
  batch_size: 16
  logging_steps: 1
  save_steps: 4
  beta: 0.0
  rewards:
    - name: chrf
      weight: 1.0
  grpo:
    num_generations: 8
    max_new_tokens: 64
    temperature: 0.7
eval:
  batch_size: 16
"""


def facts(meaning: str) -> str:
    """``name[Alimentum], area[city centre]`` -> one ``key: value`` line per slot."""
    return "\n".join(f"{key.strip()}: {value}" for key, value in SLOT.findall(meaning))


def one_row_per_meaning(table: pd.DataFrame) -> pd.DataFrame:
    """The first reference of each meaning representation, its slots as lines, shuffled with a fixed seed."""
    first = table.groupby("mr", sort=False).first().reset_index()
    rows = pd.DataFrame({"facts": first["mr"].map(facts), "ref": first["ref"]})
    return rows.sample(frac=1.0, random_state=0).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cleaned_data", type=Path, help="the folder with devel-fixed.no-ol.csv and test-fixed.csv")
    parser.add_argument("out", type=Path, help="where the tables and config.yaml go (keep it outside the project)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for part, name in PARTS.items():
        rows = one_row_per_meaning(pd.read_csv(args.cleaned_data / name))
        rows.to_csv(args.out / f"{part}.csv", index=False)
        print(f"{part}: {len(rows)} meaning representations -> {args.out / f'{part}.csv'}")
    (args.out / "config.yaml").write_text(CONFIG)


if __name__ == "__main__":
    main()
