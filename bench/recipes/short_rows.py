"""The short-row data set: restaurant facts to a one- or two-sentence description (structured data to text).

Written for this benchmark, generated from a fixed seed so every run trains on the same rows. Rendered with
``PROMPT`` / ``RESPONSE`` a row is 20-60 prompt tokens and 15-40 answer tokens: the length of chat turns and
data-to-text rows, where per-row costs (attention calls, template text) weigh most. Each set of facts can be
written several ways, which gives the evaluation prompts several references each.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from recipes.spec import write_rows

PROMPT = "{request}\n{facts}"
RESPONSE = "{description}"

REQUESTS = (
    "Describe this restaurant.",
    "Describe the restaurant for a city guide.",
    "Write one or two sentences about this place.",
    "Write a short, friendly description of the restaurant below for a guide to eating out in the city.",
    "Our city guide needs a description of this restaurant. Use the facts below and keep it to one or two "
    "sentences, written for visitors who have never been there.",
)

NAMES = (
    "The Copper Pot", "Blue Fern", "Saltmarsh", "Little Lantern", "Olive & Ash", "The Green Door", "Harbour Light",
    "Kettle Yard", "Juniper", "The Old Mill", "Red Sparrow", "Two Rivers", "Wildflower", "The Pearl", "Stonebridge",
    "Marigold", "The Night Owl", "Cedar House", "Lemon Tree", "The Anchor",
)  # fmt: skip
FOODS = ("Italian", "Japanese", "Indian", "French", "Mexican", "Chinese", "Greek", "English", "Thai", "Lebanese")
AREAS = ("the city centre", "the riverside", "the old town", "the harbour", "the university quarter")
PRICES = {"cheap": "cheap", "moderate": "moderately priced", "high": "expensive"}
RATINGS = {"low": "poorly rated", "average": "averagely rated", "high": "highly rated"}
LANDMARKS = ("the cathedral", "the train station", "the market hall", "the museum", "Riverside Park", "the theatre")

SENTENCES = (
    "{name} is a {price} {food} restaurant in {area}, near {near}. It is {rating} and {family_text}.",
    "Near {near} in {area}, {name} serves {food} food. Prices are {price_word} and it is {rating}.",
    "{name} serves {price} {food} food near {near}. {family_sentence}",
    "For {food} food in {area}, try {name}. It is {rating}, {price}, and {family_text}.",
    "{name}, near {near}, is a {rating} {food} place in {area}. {family_sentence}",
    "In {area} near {near} you will find {name}, a {food} restaurant. It is {price} and {rating}.",
    "{name} is {rating}. It serves {food} dishes at {price_word} prices in {area}, close to {near}.",
    "A {price} {food} restaurant, {name} sits in {area} close to {near}; {family_text}.",
    "{name} offers {food} food near {near}. Customers rate it {rating_word}, and prices are {price_word}.",
    "Looking for {food} food? {name} in {area} is {price} and {rating}. {family_sentence}",
)


def facts(rng: random.Random) -> dict[str, str]:
    """One restaurant's facts, as the prompt shows them."""
    return {
        "name": rng.choice(NAMES),
        "food": rng.choice(FOODS),
        "area": rng.choice(AREAS),
        "price": rng.choice(list(PRICES)),
        "rating": rng.choice(list(RATINGS)),
        "family": rng.choice(("yes", "no")),
        "near": rng.choice(LANDMARKS),
    }


def fact_line(row: dict[str, str]) -> str:
    """The facts on one line, as a spreadsheet export would give them."""
    family = "families welcome" if row["family"] == "yes" else "no children"
    return (
        f"{row['name']}; {row['food']}; {row['area']}; price {row['price']}; rating {row['rating']}; {family}; "
        f"near {row['near']}"
    )


def with_prompt(row: dict[str, str], rng: random.Random) -> dict[str, str]:
    """The row with its ``request`` and ``facts`` columns (what PROMPT renders)."""
    return {**row, "request": rng.choice(REQUESTS), "facts": fact_line(row)}


def describe(row: dict[str, str], sentence: str) -> str:
    """The facts written as one of ``SENTENCES``."""
    friendly = row["family"] == "yes"
    text = sentence.format(
        name=row["name"],
        food=row["food"],
        area=row["area"],
        near=row["near"],
        price=PRICES[row["price"]],
        price_word=row["price"] if row["price"] != "moderate" else "moderate",
        rating=RATINGS[row["rating"]],
        rating_word=row["rating"],
        family_text="it welcomes families" if friendly else "it is not suited to children",
        family_sentence="Families are welcome." if friendly else "It is not family-friendly.",
    )
    return re.sub(r"\b([Aa]) (?=[AEIOUaeiou])", r"\1n ", text)  # "a Indian" -> "an Indian"


def training_rows(count: int, seed: int = 7) -> list[dict[str, str]]:
    """``count`` rows of facts and a description in one of the sentence shapes, drawn at random."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        row = with_prompt(facts(rng), rng)
        rows.append({**row, "description": describe(row, rng.choice(SENTENCES))})
    return rows


def evaluation_rows(prompts: int, references: int, seed: int = 11) -> list[dict[str, str]]:
    """``prompts`` sets of facts, each written ``references`` ways (one row per reference, same prompt)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(prompts):
        row = with_prompt(facts(rng), rng)
        rows += [{**row, "description": describe(row, sentence)} for sentence in rng.sample(SENTENCES, references)]
    return rows


def write_short_rows(path: Path, count: int, seed: int = 7) -> Path:
    """Write ``training_rows`` as a CSV file; return its path."""
    write_rows(path, training_rows(count, seed))
    return path


def write_evaluation_rows(path: Path, prompts: int, references: int, seed: int = 11) -> Path:
    """Write ``evaluation_rows`` as a CSV file; return its path."""
    write_rows(path, evaluation_rows(prompts, references, seed))
    return path
