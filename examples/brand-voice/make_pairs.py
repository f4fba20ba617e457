"""Write pairs.csv: ~200 ad briefs, each with an on-brand ad (chosen) and a generic, off-brand one (rejected).

The house style is the one of examples/marketing-copy: talk to the audience, name one concrete feature and
what it does for them, give a number, state the promotion, end on a short call to action. The rejected ads
are what the brand does not want: empty superlatives, corporate announcements, shouting, or vague filler;
they are not systematically shorter or longer than the chosen ones (doctor checks the length shortcut).

Run: python examples/brand-voice/make_pairs.py   (deterministic: the same file every time)
"""

from __future__ import annotations

import csv
import itertools
import random
from pathlib import Path

# product type, product, feature, what it does for you, a number
PRODUCTS = [
    (
        "running shoes",
        "Stridewell Tempo 4",
        "a springier foam midsole",
        "gives back energy on every stride",
        "30 grams lighter than last year's pair",
    ),
    (
        "headphones",
        "Hushline Arc",
        "adaptive noise cancelling",
        "shuts out the open-office chatter",
        "40 hours of battery on one charge",
    ),
    (
        "coffee maker",
        "Brewhaus Pour One",
        "a steady 93°C brew",
        "pulls café-grade cups at your own counter",
        "a full mug in 90 seconds",
    ),
    (
        "backpack",
        "Trekform Daypack 22",
        "a waterproof roll-top",
        "keeps your laptop dry in a downpour",
        "just 600 grams on your back",
    ),
    (
        "smartwatch",
        "Pulsewise Core",
        "an always-on heart-rate sensor",
        "tracks every split and every beat",
        "7 days between charges",
    ),
    (
        "desk lamp",
        "Lumen Nook",
        "flicker-free warm LEDs",
        "stays kind to tired eyes at 2 a.m.",
        "5 brightness steps with one tap",
    ),
    (
        "water bottle",
        "Coldkeep 750",
        "double-wall steel",
        "keeps your water icy all day",
        "24 hours cold, 12 hours hot",
    ),
    (
        "yoga mat",
        "Groundline Pro",
        "a 6 mm grippy surface",
        "stays put through every sweaty flow",
        "rolls down to 12 cm wide",
    ),
    ("blender", "Whirlo Max", "a 1200-watt motor", "turns frozen fruit silky", "smoothies in 30 seconds flat"),
    (
        "rain jacket",
        "Driftshell Lite",
        "fully sealed seams",
        "shrugs off a sideways storm",
        "packs into its own pocket at 210 grams",
    ),
]

# event, the offer as a sentence
EVENTS = [
    ("spring launch", "It's brand new this spring."),
    ("summer sale", "This week it's 25% off."),
    ("Black Friday", "This Black Friday only, it's 40% off."),
    ("back to school", "Show a student ID and take 15% off."),
    ("new-customer welcome", "Your first order is 15% off."),
    ("holiday gift guide", "Gift wrap is free through December."),
]

# audience, a hook that talks to them
AUDIENCES = [
    ("marathon runners", "Mile 20 is where races are won."),
    ("college students", "You run to class, to practice, to the late bus."),
    ("busy parents", "Between school runs and bedtime stories, your gear has to just work."),
    ("remote workers", "Your office is wherever the Wi-Fi is."),
    ("outdoor enthusiasts", "Muddy trails, surprise storms, early starts: bring it on."),
    ("fitness beginners", "Every habit starts with day one."),
    ("retirees", "You finally have time for the good stuff."),
    ("commuters", "Your day starts before the first train."),
]

CALLS = ["Grab yours today.", "Order now.", "Try it this week.", "Get yours before they're gone.", "Shop now."]

CHOSEN = [
    "{hook} Meet the {product}: {feature} that {benefit}. {number_cap}. {offer} {call}",
    "{hook} The {product} {benefit}, thanks to {feature}, and it's {number}. {offer} {call}",
    "Made for {audience}: the {product}. {feature_cap} {benefit}, with {number}. {offer} {call}",
    "{hook} The {product} {benefit}. {offer} {call}",
    "{product}: {feature}, {number}. {offer} {call}",
]

REJECTED = [
    "The {product} is a good {product_type}. It has many great features and it is made with high quality "
    "materials. It is a product that a lot of customers like, and it can be used every day. Buy it today.",
    "We are pleased to announce that the {product} is now available. Our company remains committed to quality, "
    "innovation and customer satisfaction. Please visit our website for more information about our "
    "{product_type} range. We thank all of our valued customers for their continued support.",
    "BEST {product_type_upper} EVER!!! The {product} is AMAZING and you will LOVE IT!!! Everyone is talking "
    "about it!!! Limited stock, so don't miss out, BUY NOW!!!",
    "Experience the ultimate {product_type} like never before. The {product} redefines excellence and "
    "innovation for the modern world. Crafted with passion and designed with purpose, it is the perfect choice "
    "for everyone. Elevate your lifestyle today.",
    "Looking for a {product_type}? The {product} is one option among many on the market today. It may be "
    "suitable for many different kinds of people, depending on their needs. Prices, colours and availability "
    "may vary by region.",
]


def pairs(count: int = 200, seed: int = 16) -> list[dict[str, str]]:
    """``count`` distinct briefs (product x event x audience), each with a chosen and a rejected ad."""
    rng = random.Random(seed)
    briefs = list(itertools.product(PRODUCTS, EVENTS, AUDIENCES))
    rng.shuffle(briefs)
    rows = []
    for (product_type, product, feature, benefit, number), (event, offer), (audience, hook) in briefs[:count]:
        fields = {
            "product_type": product_type,
            "product_type_upper": product_type.upper(),
            "product": product,
            "feature": feature,
            "feature_cap": feature[0].upper() + feature[1:],
            "benefit": benefit,
            "number": number,
            "number_cap": number[0].upper() + number[1:],
            "offer": offer,
            "audience": audience,
            "hook": hook,
            "call": rng.choice(CALLS),
        }
        rows.append(
            {
                "product_type": product_type,
                "product": product,
                "event": event,
                "audience": audience,
                "chosen": rng.choice(CHOSEN).format(**fields),
                "rejected": rng.choice(REJECTED).format(**fields),
            }
        )
    return rows


def main() -> None:
    """Write pairs.csv beside this script."""
    path = Path(__file__).with_name("pairs.csv")
    rows = pairs()
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} pairs to {path}")


if __name__ == "__main__":
    main()
