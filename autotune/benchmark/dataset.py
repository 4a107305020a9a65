"""Prompt datasets: read a user's file, check it line by line, hand genai-bench a form it reads.

genai-bench 0.0.5 chooses a dataset's format by its extension and breaks on most
of them in ways that surface minutes into a trial (/work/shared/notes/
genai-bench-workloads.md): a JSON list of objects (ShareGPT included) makes it spin
and send nothing, ``.jsonl`` is refused unless wrapped in a ``--dataset-config``
that goes through the HuggingFace ``datasets`` cache, a missing path is taken for a
hub id. So autotune reads the file itself, before anything is deployed, and gives
genai-bench one JSON list of prompt strings (the form it reads reliably, Seen)
with ``--dataset-path``; in this "dataset mode" it sends one entry per request,
drawn at random, as the user message.

Formats (``benchmark.dataset.format``; ``auto`` goes by the extension):

- ``jsonl``: one JSON object per line with the prompt under ``prompt_column``
  (or a bare JSON string per line);
- ``csv``: a header row and a ``prompt_column`` column;
- ``json``: a list of strings or of objects with ``prompt_column``;
- ``sharegpt``: a JSON list (or JSONL) of ``{"conversations": [{"from": "human",
  "value": ...}, ...]}``; the first human turn is the prompt (genai-bench 0.0.5
  sends one user message per request: no multi-turn);
- ``txt``: one prompt per line.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "d.jsonl"
    >>> _ = p.write_text('{"prompt": "hi"}\\n{"text": "x"}\\n')
    >>> load_prompts(p)
    Traceback (most recent call last):
    ...
    autotune.benchmark.dataset.DatasetError: ...d.jsonl line 2: no 'prompt' key (keys: text); set benchmark.dataset.prompt_column to the key that holds the prompt
"""

from __future__ import annotations

import csv
import io
import json
from importlib.resources import files
from pathlib import Path
from typing import Any

__all__ = [
    "DATASET_SCENARIO",
    "FORMATS",
    "PACKAGE_PREFIX",
    "DatasetError",
    "load_prompts",
    "resolve_path",
    "write_prompt_list",
]

# genai-bench's scenario name for "one raw dataset entry per request".
DATASET_SCENARIO = "dataset"
FORMATS = ("auto", "jsonl", "csv", "json", "sharegpt", "txt")
# A path in autotune's own package: pkg://autotune.benchmark/datasets/chat.jsonl
PACKAGE_PREFIX = "pkg://"
_BY_SUFFIX = {".jsonl": "jsonl", ".csv": "csv", ".json": "json", ".txt": "txt"}
_HUMAN = ("human", "user")


class DatasetError(ValueError):
    """A dataset autotune cannot use: the message names the file, the line and the fix."""


def resolve_path(path: str | Path) -> Path:
    """A local path, or ``pkg://package/relative/path`` inside an installed package."""
    text = str(path)
    if text.startswith(PACKAGE_PREFIX):
        package, _, rel = text[len(PACKAGE_PREFIX) :].partition("/")
        try:
            return Path(str(files(package).joinpath(rel)))
        except ModuleNotFoundError as err:
            raise DatasetError(f"{text}: no package {package!r} ({err})") from err
    return Path(text).expanduser()


def load_prompts(
    path: str | Path, *, format: str = "auto", prompt_column: str = "prompt"
) -> list[str]:
    """Every prompt of the dataset, in file order; raises ``DatasetError`` at the first bad line."""
    file = resolve_path(path)
    if not file.is_file():
        what = "is a directory" if file.is_dir() else "does not exist"
        raise DatasetError(
            f"{file} {what}: set benchmark.dataset.path to a local .jsonl, .csv, .json or "
            ".txt file (genai-bench would take a missing path for a HuggingFace hub id, "
            "which cannot be reached offline)"
        )
    kind = _format_of(file, format)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DatasetError(f"{file}: not UTF-8 text ({err}); re-encode it as UTF-8") from err
    prompts = _READERS[kind](file, text, prompt_column)
    if not prompts:
        raise DatasetError(f"{file}: no prompts; give a file with at least one")
    return prompts


def write_prompt_list(prompts: list[str], out: Path) -> Path:
    """The prompts as a JSON list of strings, the form genai-bench's ``--dataset-path`` reads."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(prompts, ensure_ascii=False), encoding="utf-8")
    return out


def _format_of(file: Path, format: str) -> str:
    if format not in FORMATS:
        raise DatasetError(
            f"benchmark.dataset.format={format!r} is not one of {', '.join(FORMATS)}"
        )
    if format != "auto":
        return format
    kind = _BY_SUFFIX.get(file.suffix)
    if kind is None:
        raise DatasetError(
            f"{file}: cannot tell the format from the extension {file.suffix!r}; "
            f"set benchmark.dataset.format to one of {', '.join(FORMATS[1:])}"
        )
    return kind


def _line_error(file: Path, line: int, why: str) -> DatasetError:
    return DatasetError(f"{file} line {line}: {why}")


def _prompt_of(file: Path, line: int, entry: Any, column: str) -> str:
    if isinstance(entry, str):
        value: Any = entry
    elif isinstance(entry, dict):
        if column not in entry:
            keys = ", ".join(sorted(map(str, entry))) or "none"
            raise _line_error(
                file,
                line,
                f"no {column!r} key (keys: {keys}); set benchmark.dataset.prompt_column "
                "to the key that holds the prompt",
            )
        value = entry[column]
    else:
        raise _line_error(file, line, f"expected an object or a string, got {type(entry).__name__}")
    if not isinstance(value, str):
        raise _line_error(file, line, f"{column!r} is a {type(value).__name__}, not text")
    if not value.strip():
        raise _line_error(file, line, "the prompt is empty; remove the entry or fill it")
    return value


def _read_jsonl(file: Path, text: str, column: str) -> list[str]:
    return [_prompt_of(file, n, entry, column) for n, entry in _jsonl_entries(file, text)]


def _jsonl_entries(file: Path, text: str) -> list[tuple[int, Any]]:
    out = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            out.append((n, json.loads(raw)))
        except json.JSONDecodeError as err:
            raise _line_error(
                file, n, f"not JSON ({err.msg} at column {err.colno}); one JSON object per line"
            ) from err
    return out


def _json_list(file: Path, text: str) -> list[Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise _line_error(file, err.lineno, f"not JSON ({err.msg} at column {err.colno})") from err
    if not isinstance(data, list):
        raise DatasetError(f"{file}: expected a JSON list of prompts, got {type(data).__name__}")
    return data


def _read_json(file: Path, text: str, column: str) -> list[str]:
    data = _json_list(file, text)
    if data and isinstance(data[0], dict) and "conversations" in data[0] and column not in data[0]:
        return _read_sharegpt(file, text, column)
    # A JSON list has no lines per entry: name the entry (1-based) instead.
    return [_entry_prompt(file, i, e, column) for i, e in enumerate(data, start=1)]


def _entry_prompt(file: Path, index: int, entry: Any, column: str) -> str:
    try:
        return _prompt_of(file, index, entry, column)
    except DatasetError as err:
        raise DatasetError(str(err).replace(f" line {index}:", f" entry {index}:", 1)) from None


def _read_sharegpt(file: Path, text: str, column: str) -> list[str]:
    stripped = text.lstrip()
    if stripped.startswith("["):
        entries = list(enumerate(_json_list(file, text), start=1))
        where = "entry"
    else:
        entries = _jsonl_entries(file, text)
        where = "line"
    return [_first_human_turn(file, where, n, e) for n, e in entries]


def _first_human_turn(file: Path, where: str, n: int, entry: Any) -> str:
    turns = entry.get("conversations") if isinstance(entry, dict) else None
    if not isinstance(turns, list):
        raise DatasetError(
            f"{file} {where} {n}: no 'conversations' list (ShareGPT form: "
            '{"conversations": [{"from": "human", "value": "..."}]})'
        )
    for turn in turns:
        if isinstance(turn, dict) and turn.get("from") in _HUMAN:
            value = turn.get("value")
            if isinstance(value, str) and value.strip():
                return value
    raise DatasetError(f"{file} {where} {n}: no human turn with text; remove the conversation")


def _read_csv(file: Path, text: str, column: str) -> list[str]:
    # A StringIO, not splitlines(): a quoted field may hold newlines.
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None or column not in reader.fieldnames:
        found = ", ".join(reader.fieldnames or []) or "none"
        raise _line_error(
            file,
            1,
            f"no {column!r} column in the header (columns: {found}); set "
            "benchmark.dataset.prompt_column",
        )
    prompts = []
    for row in reader:
        value = row.get(column)
        if value is None or not value.strip():
            raise _line_error(
                file, reader.line_num, "the prompt is empty; remove the row or fill it"
            )
        prompts.append(value)
    return prompts


def _read_txt(file: Path, text: str, column: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


_READERS = {
    "jsonl": _read_jsonl,
    "csv": _read_csv,
    "json": _read_json,
    "sharegpt": _read_sharegpt,
    "txt": _read_txt,
}
