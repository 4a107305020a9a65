"""Build the simulated engine's tokenizer, committed under autotune/sim/tokenizer/.

genai-bench sizes prompts with a tokenizer on disk and the simulated server counts
tokens with the same one, so reported prompt sizes and usage agree. Real model
tokenizers cannot be downloaded in CI or on an air-gapped laptop, so we train a
small byte-level BPE on generated text. Deterministic: same output every run.

    python tools/build_sim_tokenizer.py
"""

from __future__ import annotations

import random
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

OUT = Path(__file__).resolve().parents[1] / "autotune" / "sim" / "tokenizer"
VOCAB_SIZE = 2000
SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<unk>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def corpus(n_lines: int = 20000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = [
        "the",
        "model",
        "serving",
        "engine",
        "token",
        "latency",
        "throughput",
        "batch",
        "prefill",
        "decode",
        "memory",
        "cache",
        "request",
        "queue",
        "schedule",
        "kernel",
        "tensor",
        "parallel",
        "graph",
        "chunk",
        "policy",
        "benchmark",
        "prompt",
        "answer",
        "question",
        "system",
        "user",
        "assistant",
        "data",
        "time",
        "first",
        "output",
    ]
    letters = "abcdefghijklmnopqrstuvwxyz"
    lines = []
    for _ in range(n_lines):
        parts = []
        for _ in range(rng.randint(5, 25)):
            if rng.random() < 0.7:
                parts.append(rng.choice(words))
            else:
                parts.append("".join(rng.choice(letters) for _ in range(rng.randint(2, 9))))
        lines.append(" ".join(parts) + rng.choice([".", ",", "?", "!", ""]))
    return lines


def build(out: Path = OUT) -> Path:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=SPECIAL[0],
        eos_token=SPECIAL[1],
        unk_token=SPECIAL[2],
        model_max_length=131072,
    )
    fast.chat_template = CHAT_TEMPLATE
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    return out


if __name__ == "__main__":
    build()
