"""Write train.csv and eval.csv: structured product facts, each with a reference ad that uses every fact.

Each row is one product: its name, kind, colour, material and price, and a reference ad of under 40 words
that names all four facts. GRPO learns from the rewards, not by copying the reference: the config rewards an
answer for the share of facts it mentions and for staying under 40 words; the reference is there so the
doctor can check that the rewards are satisfiable (it scores them on the references) and for chrF in eval.

eval.csv uses product names, kinds and colours that never appear in train.csv, so its prompts are unseen.

Run: python examples/ad-facts/make_data.py   (deterministic: the same files every time)
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

TRAIN_NAMES = ["Nimbus", "Harbor", "Juniper", "Atlas", "Pebble", "Summit", "Willow", "Ember", "Cove", "Drift",
               "Lumen", "Orbit", "Quill", "Ridge", "Tidal", "Vesper"]  # fmt: skip
EVAL_NAMES = ["Sable", "Kestrel", "Marlow", "Fennel", "Onyx", "Brisk", "Calder", "Wren"]
TRAIN_KINDS = {
    "backpack": "fits a 15-inch laptop",
    "water bottle": "keeps drinks cold for 24 hours",
    "desk lamp": "dims with one touch",
    "rain jacket": "packs into its own pocket",
    "coffee mug": "holds a full 350 ml",
    "yoga mat": "grips on sweaty floors",
    "phone case": "survives a two-metre drop",
    "wall clock": "ticks without a sound",
    "lunch box": "has three sealed sections",
    "notebook": "lies flat on any page",
}
EVAL_KINDS = {
    "umbrella": "opens with one button",
    "cutting board": "has a juice groove",
    "pillow": "keeps its shape all night",
    "tote bag": "carries 20 kilograms",
}
TRAIN_COLOURS = ["red", "navy", "olive", "grey", "white", "black", "teal", "mustard"]
EVAL_COLOURS = ["plum", "coral", "ivory", "sage"]
MATERIALS = ["cotton", "steel", "bamboo", "leather", "recycled plastic", "ceramic", "wool", "aluminium"]
OPENERS = ["Meet the", "Say hello to the", "Try the", "Discover the", "Grab the"]
CLOSERS = ["Order yours today.", "Get one now.", "Shop it today.", "Yours today.", "Pick one up now."]
COLUMNS = ["product", "kind", "colour", "material", "price", "ad"]


def row(rng: random.Random, names: list[str], kinds: dict[str, str], colours: list[str]) -> dict[str, str]:
    """One product and its reference ad (every fact named, under 40 words)."""
    kind = rng.choice(sorted(kinds))
    product = f"{rng.choice(names)} {rng.choice(['One', 'Pro', 'Mini', 'Go', 'Max', 'Air'])}"
    colour, material = rng.choice(colours), rng.choice(MATERIALS)
    price = f"${rng.randrange(9, 150)}"
    ad = (
        f"{rng.choice(OPENERS)} {product}: a {colour} {material} {kind} that {kinds[kind]}, "
        f"for just {price}. {rng.choice(CLOSERS)}"
    )
    assert len(ad.split()) < 40
    return {"product": product, "kind": kind, "colour": colour, "material": material, "price": price, "ad": ad}


def write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    here = Path(__file__).parent
    rng = random.Random(23)
    write(here / "train.csv", [row(rng, TRAIN_NAMES, TRAIN_KINDS, TRAIN_COLOURS) for _ in range(200)])
    write(here / "eval.csv", [row(rng, EVAL_NAMES, EVAL_KINDS, EVAL_COLOURS) for _ in range(40)])


if __name__ == "__main__":
    main()
