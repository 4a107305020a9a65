"""Keep secrets out of logs, MLflow and artifacts.

Secret *values* are collected from the environment and config by name (``HF_TOKEN``,
``*_API_KEY``, ``*_SECRET``, proxy URLs with credentials ...) and replaced by ``***``
in every text autotune stores or prints.

    >>> is_secret_name("HF_TOKEN"), is_secret_name("CUDA_VISIBLE_DEVICES")
    (True, False)
    >>> scrub("token=hf_abc123", ["hf_abc123"])
    'token=***'
    >>> mask_url("postgresql://tuner:s3cret-pw@db:5432/optuna")
    'postgresql://tuner:***@db:5432/optuna'
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MASK = "***"
_SECRET_NAME = re.compile(
    r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL|AUTH)", re.I
)
# Values shorter than this are not scrubbed: masking "1" everywhere would wreck logs.
_MIN_SECRET_LEN = 6


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


# Secrets this process learnt from its configuration (e.g. the password in a
# search.storage URL given on the command line): see register().
_registered: set[str] = set()


def url_credentials(value: str | None) -> list[str]:
    """The password (and ``user:password``) in a URL such as ``postgresql://u:pw@host/db``."""
    if not value or "://" not in value:
        return []
    try:
        parts = urlsplit(value)
        username, password = parts.username, parts.password
    except ValueError:
        return []
    found = []
    if password:
        found.append(password)
    if username and password:
        found.append(f"{username}:{password}")
    return found


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for display)."""
    for secret in url_credentials(url)[:1]:
        url = url.replace(f":{secret}@", f":{MASK}@", 1)
    return url


def register(values: Iterable[str]) -> None:
    """Treat ``values`` as secrets in this process from now on: :func:`secret_values`
    returns them, and every log record created from now on has them masked (whatever
    handlers Hydra configures later)."""
    new = {v for v in values if v and len(v) >= _MIN_SECRET_LEN} - _registered
    if not new:
        return
    _registered.update(new)
    global _masking
    if not _masking:
        _masking = True
        previous = logging.getLogRecordFactory()

        def record(*args: Any, **kwargs: Any) -> logging.LogRecord:
            rec = previous(*args, **kwargs)
            ScrubbingFilter(sorted(_registered, key=len, reverse=True)).filter(rec)
            return rec

        logging.setLogRecordFactory(record)


_masking = False


def secret_values(env: Mapping[str, str] | None = None, extra: Iterable[str] = ()) -> list[str]:
    """Secret values found in ``env`` (default: this process's environment), the ones
    :func:`register`-ed in this process, plus ``extra``."""
    env = os.environ if env is None else env
    values: set[str] = {v for v in extra if v} | _registered
    for name, value in env.items():
        if not value:
            continue
        if is_secret_name(name):
            values.add(value)
        # Proxy URLs, and any other URL with a password (MLFLOW_TRACKING_URI,
        # a storage URL the config reads with ${oc.env:...}).
        values.update(url_credentials(value))
    # Longest first, so that a secret containing another is masked whole.
    return sorted((v for v in values if len(v) >= _MIN_SECRET_LEN), key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, MASK)
    return text


def scrub_data(data: Any, secrets: Iterable[str]) -> Any:
    """A copy of nested dicts/lists with secrets masked in every string."""
    secrets = list(secrets)
    if isinstance(data, str):
        return scrub(data, secrets)
    if isinstance(data, dict):
        return {k: scrub_data(v, secrets) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [scrub_data(v, secrets) for v in data]
    return data


def mask_env(env: Mapping[str, str], secrets: Iterable[str] = ()) -> dict[str, str]:
    """A copy of ``env`` fit for display: secret-named values masked, others scrubbed."""
    secrets = list(secrets)
    out = {}
    for k, v in env.items():
        out[k] = MASK if is_secret_name(k) else scrub(str(v), secrets)
    return out


def scrub_tree(folder: Path, secrets: Iterable[str]) -> int:
    """Rewrite text files under ``folder`` with secrets masked; returns files changed."""
    secrets = [s for s in secrets if s]
    if not secrets:
        return 0
    changed = 0
    for path in Path(folder).rglob("*"):
        if not path.is_file():
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        new = data
        for s in secrets:
            new = new.replace(s.encode(), MASK.encode())
        if new != data:
            path.write_bytes(new)
            changed += 1
    return changed


class ScrubbingFilter(logging.Filter):
    """A logging filter that masks secret values in every record it passes."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = list(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            msg = record.getMessage()
            clean = scrub(msg, self.secrets)
            if clean != msg:
                record.msg, record.args = clean, None
        return True
