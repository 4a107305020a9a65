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
# A config key (its last part) that holds a secret: ``api_key``, ``hf_token``,
# ``deploy.env.ENGINE_API_KEY``; stricter than env names, so that ``tokenizer`` or
# ``max_tokens`` are not taken for secrets.
_SECRET_KEY = re.compile(
    r"(^|[_.-])(TOKEN|SECRET|PASSWORD|PASSWD|API[_-]?KEY|ACCESS[_-]?KEY|PRIVATE[_-]?KEY"
    r"|CREDENTIALS?|AUTH)$",
    re.I,
)
# Values shorter than this are not scrubbed: masking "1" everywhere would wreck logs.
_MIN_SECRET_LEN = 6


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def is_secret_key(key: str) -> bool:
    """Does the config key (``a.b.api_key``, ``+deploy.env.X_TOKEN``) hold a secret?"""
    return bool(_SECRET_KEY.search(key.rsplit(".", 1)[-1].lstrip("+~")))


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


def registered() -> list[str]:
    """The secrets :func:`register`-ed in this process, longest first."""
    return sorted(_registered, key=len, reverse=True)


def override_secrets(overrides: Iterable[str]) -> list[str]:
    """Secret values in command-line overrides: ``benchmark.api_key=sk-..``,
    ``+deploy.env.ENGINE_API_KEY=..`` (each value of a sweep ``a,b`` too), and the
    password of any URL given there."""
    found: list[str] = []
    for override in overrides:
        key, sep, value = str(override).partition("=")
        if not sep:
            continue
        value = value.strip()
        found += url_credentials(value.strip("'\""))
        if is_secret_key(key.strip()):
            found.append(value)
            found += [v.strip().strip("'\"") for v in [value, *value.split(",")]]
    return [v for v in found if v]


def config_secrets(cfg: Any) -> list[str]:
    """Secret values in a (Hydra) config: every secret-named key's string value
    (``benchmark.api_key``, ``deploy.env.*_TOKEN`` ...), every URL password, and the
    secret values of ``hydra.overrides.task``. Keys that do not resolve are skipped."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    found: list[str] = []

    def walk(node: Any, key: str) -> None:
        if isinstance(node, DictConfig):
            for k in list(node.keys()):
                if key == "" and k == "hydra":
                    continue
                try:
                    child = node[k]
                except Exception:  # an interpolation that does not resolve
                    continue
                walk(child, str(k))
        elif isinstance(node, ListConfig):
            for i in range(len(node)):
                try:
                    child = node[i]
                except Exception:
                    continue
                walk(child, key)
        elif isinstance(node, str):
            found.extend(url_credentials(node))
            if is_secret_key(key):
                found.append(node)

    walk(cfg, "")
    overrides = OmegaConf.select(cfg, "hydra.overrides.task", default=None)
    if overrides is not None:
        # Unresolved: an override may itself be an interpolation (`x=${a.b}`).
        found += override_secrets(OmegaConf.to_container(overrides, resolve=False))
    return [v for v in found if v]


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
            ScrubbingFilter(registered()).filter(rec)
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


def scrub_file(path: Path, secrets: list[str]) -> bool:
    """Rewrite one file with ``secrets`` masked; True if it held one.

    A YAML file stays YAML (Hydra's ``.hydra/*.yaml`` and ``multirun.yaml`` are read
    back): its values are scrubbed, since a bare ``***`` would be read as an alias.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if not any(s.encode() in data for s in secrets):
        return False
    new = None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        # libyaml when built in: Hydra's files are rewritten at every job's start and end.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        try:
            loaded = yaml.load(data, Loader=loader)  # noqa: S506 (a safe loader)
            new = yaml.dump(
                scrub_data(loaded, secrets), Dumper=dumper, sort_keys=False, allow_unicode=True
            ).encode()
        except (yaml.YAMLError, UnicodeDecodeError):
            new = None
        if new is not None and any(s.encode() in new for s in secrets):
            new = None  # a secret in a key: mask the text
    if new is None:
        new = data
        for s in secrets:
            new = new.replace(s.encode(), MASK.encode())
    tmp = path.with_name(path.name + ".scrub")
    try:
        tmp.write_bytes(new)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True


def scrub_tree(folder: Path, secrets: Iterable[str]) -> int:
    """Rewrite text files under ``folder`` with secrets masked; returns files changed."""
    secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
    if not secrets:
        return 0
    changed = 0
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink() and scrub_file(path, secrets):
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
            if record.exc_info and not record.exc_text:
                # The traceback's text, formatted now and masked (handlers reuse it).
                text = logging.Formatter().formatException(record.exc_info)
                record.exc_text = scrub(text, self.secrets)
        return True
