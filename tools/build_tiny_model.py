"""Build a tiny random Llama model in a local directory, for real-engine tests without a hub.

    .venv-cpu-engine/bin/python tools/build_tiny_model.py /tmp/autotune-tiny-llama

The result is a complete Hugging Face model directory (config, bf16 safetensors
weights, a byte-level BPE tokenizer with a chat template, ~1 MB) that vLLM's CPU
build serves and genai-bench uses as its tokenizer. The weights are random: the
model produces gibberish at real engine speed, which is all an end-to-end test of
the tuner needs.

It needs torch and transformers, so run it with the engine's interpreter (the
cpu-engine extra has both); the tuner's own environment needs neither. Building
is deterministic for a given ``--seed`` and skipped when the directory already
holds a model built with the same settings (``--force`` rebuilds).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from pathlib import Path

# Bump when the recipe changes, so that a cached directory from an older recipe is rebuilt.
RECIPE_VERSION = 1
STAMP = "autotune_tiny_model.json"

# Llama-style chat template (no system-prompt magic): vLLM's chat endpoint and
# genai-bench's chat requests both need one.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]

# Vocabulary of the generated training text (split once, below).
_WORDS_TEXT = (
    "the a of to and in is it that for on with as was by at be this from or have an "
    "they which one you were her all she there would their we him been has when who "
    "will more no if out so said what up its about into than them can only other new "
    "some could time these two may then do first any my now such like our over man me "
    "even most made after also did many before must through back years where much your "
    "way well down should because each just those people how too little state good very "
    "make world still own see men work long get here between both life being under never "
    "day same another know while last might us great old year off come since against go "
    "came right used take three model engine token serve batch cache latency throughput "
    "request prompt sequence memory kernel tensor layer head attention prefill decode"
)
WORDS = _WORDS_TEXT.split()


def _corpus(n_lines: int, seed: int) -> list[str]:
    """Generated English-like lines with digits and punctuation (tokenizer training text)."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        words = [rng.choice(WORDS) for _ in range(rng.randint(5, 20))]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 9999)))
        line = " ".join(words)
        lines.append(line[0].upper() + line[1:] + rng.choice([".", "?", "!", ",", ";"]))
    return lines


def _stamp(args: argparse.Namespace) -> dict[str, object]:
    return {
        "recipe": RECIPE_VERSION,
        "seed": args.seed,
        "vocab_size": args.vocab_size,
        "max_position_embeddings": args.max_position_embeddings,
    }


def build_tokenizer(out: Path, vocab_size: int, seed: int):
    """Train a byte-level BPE tokenizer on generated text; save it as a HF fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    # Byte-level: every string is encodable, whatever genai-bench's sampler produces.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(4000, seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="</s>",
        model_max_length=1 << 20,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    return fast


def build_model(out: Path, tokenizer, seed: int, max_position_embeddings: int) -> None:
    """A 2-layer Llama with random bf16 weights, sized for vLLM's CPU kernels."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        # vLLM's CPU attention rejects small heads at the first request
        # ("Unsupported CPU attention configuration: head_dim=16"): 256 / 4 = 64 works.
        head_dim=64,
        # Also the engine's default max-model-len: small, so a 1 GiB KV cache fits it.
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="bfloat16",
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    # generation_config.json defaults (e.g. max_length=20) would cap genai-bench's outputs.
    (out / "generation_config.json").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="model directory to create")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab-size", type=int, default=512)
    parser.add_argument("--max-position-embeddings", type=int, default=1024)
    parser.add_argument("--force", action="store_true", help="rebuild even if it exists")
    args = parser.parse_args(argv)

    out: Path = args.out.expanduser().resolve()
    stamp = _stamp(args)
    stamp_path = out / STAMP
    if not args.force and stamp_path.is_file():
        try:
            if json.loads(stamp_path.read_text()) == stamp:
                print(f"tiny model already built: {out}")
                return 0
        except ValueError:
            pass  # unreadable stamp: rebuild
    # Build beside the target and rename, so a concurrent reader or an interrupted build
    # never sees a half-written model directory.
    tmp = out.with_name(out.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tokenizer = build_tokenizer(tmp, args.vocab_size, args.seed)
    build_model(tmp, tokenizer, args.seed, args.max_position_embeddings)
    (tmp / STAMP).write_text(json.dumps(stamp, indent=1) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"tiny model built: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
