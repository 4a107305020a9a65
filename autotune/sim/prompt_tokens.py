"""Prompt token counting, like SGLang's tokenizer manager (chat template for chat).

The simulated server counts prompt tokens with the model's own tokenizer directory
when it has one (``--tokenizer-path`` or a local ``--model-path``), otherwise with the
bundled byte-level BPE tokenizer (``autotune/sim/tokenizer``, built offline by
``tools/build_sim_tokenizer.py``), which genai-bench is given too, so prompt sizes
and the reported ``usage`` agree.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SIM_TOKENIZER_DIR = Path(__file__).resolve().parent / "tokenizer"


class PromptCounter:
    """Counts prompt tokens like SGLang's tokenizer manager (chat template for chat).

    >>> pc = PromptCounter(SIM_TOKENIZER_DIR)
    >>> pc.count_chat([{"role": "user", "content": "hi"}]) > pc.count_text("hi")
    True
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        cfg: dict[str, Any] = {}
        if (path / "tokenizer_config.json").exists():
            cfg = json.loads((path / "tokenizer_config.json").read_text())
        self.model_max_length = cfg.get("model_max_length")
        self._encode = self._load_encoder(path)
        template = None
        if (path / "chat_template.jinja").exists():
            template = (path / "chat_template.jinja").read_text()
        elif isinstance(cfg.get("chat_template"), str):
            template = cfg["chat_template"]
        elif isinstance(cfg.get("chat_template"), list):
            named = {t.get("name"): t.get("template") for t in cfg["chat_template"]}
            template = named.get("default") or next(iter(named.values()), None)
        self._template = None
        self._special = {k: _token_text(cfg.get(k)) for k in ("bos_token", "eos_token")}
        if template:
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.filters["tojson"] = lambda x, **kw: json.dumps(x, **kw)
            env.globals["raise_exception"] = _raise_template_error
            self._template = env.from_string(template)

    @staticmethod
    def _load_encoder(path: Path):
        if (path / "tokenizer.json").exists():
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(path / "tokenizer.json"))
            return lambda text, special: tok.encode(text, add_special_tokens=special).ids
        from transformers import AutoTokenizer  # slow import: only for non-"fast" tokenizer dirs

        hf = AutoTokenizer.from_pretrained(str(path))
        return lambda text, special: hf.encode(text, add_special_tokens=special)

    def count_text(self, text: str) -> int:
        return len(self.text_ids(text))

    def count_chat(self, messages: list[dict[str, Any]]) -> int:
        return len(self.chat_ids(messages))

    def text_ids(self, text: str) -> list[int]:
        return list(self._encode(text, True))

    def chat_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """The prompt's token ids as the engine sees them (chat template applied)."""
        msgs = [{**m, "content": _content_text(m.get("content"))} for m in messages]
        if self._template is None:
            return list(self._encode("\n".join(m["content"] for m in msgs), True))
        text = self._template.render(messages=msgs, add_generation_prompt=True, **self._special)
        return list(self._encode(text, False))


def _token_text(tok: Any) -> str:
    if isinstance(tok, dict):
        return str(tok.get("content", ""))
    return tok or ""


def _raise_template_error(msg: str) -> None:
    raise ValueError(msg)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: keep the text parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def tokenizer_dir(args: argparse.Namespace) -> Path:
    """The tokenizer the server counts with: --tokenizer-path, the model directory, or the bundled one."""
    if args.tokenizer_path:
        return Path(args.tokenizer_path)
    model_dir = Path(args.model_path)
    if (model_dir / "tokenizer.json").exists() or (model_dir / "tokenizer_config.json").exists():
        return model_dir
    return SIM_TOKENIZER_DIR
