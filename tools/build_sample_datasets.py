"""Build the sample prompt dataset shipped as autotune/benchmark/datasets/chat.jsonl.

The default of ``benchmark=dataset``: chat-like requests of mixed lengths (a short
question, a rewrite of a paragraph, a summary of notes), generated from word lists
here, so the file carries no third-party text and no license. Deterministic.

    python tools/build_sample_datasets.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "autotune" / "benchmark" / "datasets" / "chat.jsonl"
N_PROMPTS = 120
TOPICS = [
    "a bakery's delivery schedule",
    "the office heating system",
    "a hiking trip in autumn",
    "a small library's opening hours",
    "a community garden",
    "a bicycle repair workshop",
    "the quarterly budget review",
    "a school science fair",
    "a new tram line",
    "a recipe for lentil soup",
    "a chess club tournament",
    "a museum's night opening",
]
NOUNS = [
    "plan",
    "team",
    "budget",
    "route",
    "visitor",
    "schedule",
    "report",
    "window",
    "garden",
    "meeting",
    "ticket",
    "kitchen",
    "station",
    "volunteer",
    "supplier",
    "printer",
    "weekend",
]
VERBS = [
    "changes",
    "needs",
    "follows",
    "improves",
    "delays",
    "covers",
    "supports",
    "reduces",
    "includes",
    "replaces",
    "requires",
    "starts",
]
ADJS = ["early", "quiet", "new", "shared", "weekly", "busy", "local", "careful", "short", "late"]
ASKS = [
    "Answer in one sentence: what matters most about {topic}?",
    "Write three bullet points about {topic}.",
    "Rewrite this paragraph about {topic} in plain language:\n\n{text}",
    "Summarise these notes on {topic} for a colleague who missed the meeting:\n\n{text}",
    "List the open questions in the following draft about {topic}:\n\n{text}",
    "Translate the tone of this message about {topic} into a friendly reminder:\n\n{text}",
]


def sentence(rng: random.Random) -> str:
    words = [
        "the",
        rng.choice(ADJS),
        rng.choice(NOUNS),
        rng.choice(VERBS),
        "the",
        rng.choice(NOUNS),
        "before the",
        rng.choice(ADJS),
        rng.choice(NOUNS),
    ]
    return " ".join(words).capitalize() + "."


def prompt(rng: random.Random) -> str:
    ask = rng.choice(ASKS)
    # Log-uniform paragraph lengths: most prompts short, a few long (like chat traffic).
    n = int(2 ** rng.uniform(0, 5))
    text = " ".join(sentence(rng) for _ in range(n))
    return ask.format(topic=rng.choice(TOPICS), text=text)


def main() -> None:
    rng = random.Random(0)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", encoding="utf-8") as f:
        for i in range(N_PROMPTS):
            f.write(json.dumps({"id": i, "prompt": prompt(rng)}) + "\n")
    print(f"wrote {N_PROMPTS} prompts to {OUT}")  # noqa: T201 (a build tool's one line)


if __name__ == "__main__":
    main()
