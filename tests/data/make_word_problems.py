"""Write ``word_problems_300.jsonl``: 300 word problems written for tests, with no skill column.

Six topics (shopping, reading time, gardens, sharing, travel, recipes), 50 problems each from two
templates per topic, numbers drawn with a fixed seed; every row has ``id``, ``question``, ``answer``
(an integer, or a decimal for recipes) and ``rationale`` (the worked steps, without the answer). The
file is committed; rerun this script (``python tests/data/make_word_problems.py``) only to change it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

OUT = Path(__file__).with_name("word_problems_300.jsonl")
PER_TOPIC = 50
NAMES = ("Sam", "Lena", "Omar", "Priya", "Tom", "Maya", "Ken", "Ada", "Luis", "Zoe", "Ivan", "Nia")

Row = tuple[str, str, str]
"""(question, answer, rationale)."""


def shopping(rng: random.Random, name: str) -> Row:
    n, price = rng.randint(2, 9), rng.randint(2, 12)
    if rng.random() < 0.5:
        bill = next(b for b in (20, 50, 100, 200) if b >= n * price)
        return (f"{name} buys {n} notebooks at {price} dollars each and pays with a {bill} dollar bill. "
                f"How much change does {name} get in dollars?", str(bill - n * price),
                f"The notebooks cost {n}*{price} = {n * price} dollars. The change is {bill}-{n * price}.")
    extra = rng.randint(3, 15)
    return (f"At the shop {name} pays {price} dollars for each of {n} pens and {extra} dollars for a bag. "
            f"How many dollars does {name} spend?", str(n * price + extra),
            f"The pens cost {n}*{price} = {n * price} dollars. With the bag: {n * price}+{extra}.")


def reading(rng: random.Random, name: str) -> Row:
    days = rng.randint(2, 12)
    if rng.random() < 0.5:
        minutes, days = rng.choice((60, 90, 120, 150, 180)), 2 * rng.randint(1, 6)  # whole hours
        total = minutes * days
        return (f"{name} reads a novel for {minutes} minutes every evening. How many hours of reading "
                f"is that after {days} evenings?", str(total // 60),
                f"That is {minutes}*{days} = {total} minutes, and {total}/60 hours.")
    pages = rng.randint(8, 40)
    return (f"{name} reads {pages} pages of a book each evening. How many pages has {name} read after "
            f"{days} evenings of reading?", str(pages * days),
            f"Each evening adds {pages} pages: {pages}*{days}.")


def garden(rng: random.Random, name: str) -> Row:
    length, width = rng.randint(4, 30), rng.randint(2, 20)
    if rng.random() < 0.5:
        return (f"A rectangular garden is {length} meters long and {width} meters wide. What is the "
                f"perimeter of the garden in meters?", str(2 * (length + width)),
                f"The perimeter is 2*({length}+{width}) = 2*{length + width}.")
    return (f"{name} plants grass on a rectangular lawn {length} meters long and {width} meters wide. What "
            f"is the area of the lawn in square meters?", str(length * width),
            f"The area is length times width: {length}*{width}.")


def sharing(rng: random.Random, name: str) -> Row:
    friends, each = rng.randint(2, 9), rng.randint(3, 15)
    if rng.random() < 0.5:
        return (f"{name} shares {friends * each} stickers equally among {friends} friends. How many "
                f"stickers does each friend get?", str(each),
                f"Each friend gets {friends * each}/{friends} stickers.")
    left = rng.randint(1, friends - 1) if friends > 1 else 0
    return (f"{name} splits {friends * each + left} marbles equally into {friends} jars and keeps the "
            f"marbles left over. How many marbles does {name} keep?", str(left),
            f"{friends}*{each} = {friends * each} marbles fill the jars; {friends * each + left}-"
            f"{friends * each} are left.")


def travel(rng: random.Random, name: str) -> Row:
    speed, hours = rng.choice((40, 50, 60, 70, 80, 90)), rng.randint(2, 8)
    if rng.random() < 0.5:
        return (f"A train travels at {speed} kilometers per hour for {hours} hours. How many kilometers "
                f"does the train travel?", str(speed * hours),
                f"Distance is speed times time: {speed}*{hours}.")
    return (f"{name} drives {speed * hours} kilometers at a steady {speed} kilometers per hour. How many "
            f"hours does the drive take?", str(hours),
            f"Time is distance over speed: {speed * hours}/{speed}.")


def recipe(rng: random.Random, name: str) -> Row:
    cups, cakes = rng.choice((0.5, 1.5, 2.5, 0.25, 0.75, 1.25)), rng.randint(2, 9)
    if rng.random() < 0.5:
        return (f"A cake recipe needs {cups} cups of flour. How many cups of flour does {name} need to bake "
                f"{cakes} cakes?", f"{cups * cakes:g}", f"Each cake needs {cups} cups: {cups}*{cakes}.")
    butter = rng.randint(2, 9) * 25
    return (f"{name} bakes {cakes} batches of cookies and each batch uses {butter} grams of butter and "
            f"{cups} cups of sugar. How many cups of sugar are used?", f"{cups * cakes:g}",
            f"The butter does not matter; the sugar is {cups}*{cakes} cups.")


TOPICS: tuple[Callable[[random.Random, str], Row], ...] = (shopping, reading, garden, sharing, travel, recipe)


def rows(seed: int = 0) -> list[dict]:
    """``PER_TOPIC`` distinct problems per topic, topics interleaved, with ids ``wp001``..."""
    rng = random.Random(seed)
    made: dict[str, list[Row]] = {t.__name__: [] for t in TOPICS}
    seen: set[str] = set()
    while any(len(v) < PER_TOPIC for v in made.values()):
        for topic in TOPICS:
            question, answer, rationale = topic(rng, rng.choice(NAMES))
            if len(made[topic.__name__]) < PER_TOPIC and question not in seen:
                seen.add(question)
                made[topic.__name__].append((question, answer, rationale))
    ordered = [made[t.__name__][i] for i in range(PER_TOPIC) for t in TOPICS]
    return [{"id": f"wp{i:03d}", "question": q, "answer": a, "rationale": r}
            for i, (q, a, r) in enumerate(ordered, 1)]


if __name__ == "__main__":
    OUT.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    print(f"wrote {OUT}")
