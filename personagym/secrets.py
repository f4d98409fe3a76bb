"""Every secret the process knows, and the one function that removes them from text.

Servers repeat what they are sent ("Incorrect API key provided: sk-..."), and what a server says
ends up in failure details, the database, exports, HTML reports, `--debug` output and `models check`.
So every secret is registered where it enters the program (settings resolved from flags, the config
file or the environment; ProviderSettings handed to a provider) and `redact` is applied where text
leaves a server's hands: a ProviderError's or CallFailure's detail, log records, check output, and
the store's failure rows as a last line. Text is redacted before it is cut to length, so a key cut
in half never survives as a prefix.

Besides the registered secrets, `redact` hides the credentials of any URL (``scheme://user:pass@``)
and anything shaped like an OpenAI or Anthropic key (``sk-`` and 16 or more key characters), known
or not: a key the process never saw may still be echoed (a shared proxy, an old config).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from typing import Any
from urllib.parse import quote, unquote, urlsplit

REDACTED = "[REDACTED]"
#: Shorter strings are not secrets worth the name, and hiding them would mangle ordinary words.
MIN_LENGTH = 6
#: Read from the environment at every redaction, whichever providers a run uses.
ENV_NAMES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")

_URL_CREDENTIALS = re.compile(r"(?<=://)[^/\s@?#]+@")
_KEY_SHAPED = re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}")

_known: set[str] = set()
_lock = threading.Lock()
_version = 0  # bumped at every registration, so the compiled pattern knows it is stale
_compiled: tuple[Any, re.Pattern[str] | None] = (None, None)


def register(secret: Any) -> None:
    """Remember a secret (an API key, a password) so that `redact` hides it from now on. None, empty
    and very short values are ignored."""
    if not isinstance(secret, str):
        return
    secret = secret.strip()
    if len(secret) < MIN_LENGTH:
        return
    global _version
    with _lock:
        _known.add(secret)
        # The same secret as it appears inside a URL or an error that quotes one.
        for variant in (quote(secret, safe=""), unquote(secret)):
            if len(variant) >= MIN_LENGTH:
                _known.add(variant)
        _version += 1  # last: a pattern built meanwhile from the new set is rebuilt once more, no harm


def register_url(url: Any) -> None:
    """Remember the credentials in a URL (``https://user:password@host``), if it has any."""
    if not isinstance(url, str) or "@" not in url:
        return
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return
    if parts.password:
        register(parts.password)
    if parts.username:
        register(parts.username if not parts.password else f"{parts.username}:{parts.password}")


# The environment's keys as os.environ stores them. Its own dict is read at every redaction: through
# os.environ.get (a Python method that encodes the name and decodes the value) the two lookups were
# most of what a redaction costs when nothing matches, and a reply is redacted twice (text and model).
_ENV_KEYS = tuple(map(os.environ.encodekey, ENV_NAMES))


def _environment() -> tuple[Any, ...]:
    """The keys' values in the environment, as stored: they tell whether the environment changed."""
    stored = getattr(os.environ, "_data", None)
    if type(stored) is not dict:  # os.environ replaced by a plain mapping (a test, say)
        return tuple(map(os.environ.get, ENV_NAMES))
    return tuple(map(stored.get, _ENV_KEYS))


def _pattern() -> re.Pattern[str] | None:
    """One expression for every secret known now. Built again only when a secret was registered or
    the keys in the environment changed: this runs for every reply (rebuilding the set each time cost
    a fifth of a millisecond a call)."""
    global _compiled
    state = (_version, _environment())
    if state != _compiled[0]:
        env = [(os.environ.get(name) or "").strip() for name in ENV_NAMES]
        with _lock:
            secrets = set(_known)
        secrets |= {value for value in env if len(value) >= MIN_LENGTH}
        # Longest first, so a secret that contains another is hidden whole.
        alternatives = sorted(secrets, key=len, reverse=True)
        _compiled = (state, re.compile("|".join(map(re.escape, alternatives))) if alternatives else None)
    return _compiled[1]


def redact(text: Any) -> Any:
    """`text` with every known secret, URL credential and key-shaped string replaced by [REDACTED].
    Anything that is not a string is returned as it is."""
    if not isinstance(text, str) or not text:
        return text
    pattern = _pattern()
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    # Each expression needs a literal that a substring test finds far faster than a scan with it.
    if "@" in text:
        text = _URL_CREDENTIALS.sub(REDACTED + "@", text)
    return _KEY_SHAPED.sub(REDACTED, text) if "sk-" in text else text


def clip(text: str, limit: int) -> str:
    """Redact, then cut to `limit` characters: in that order, so no secret survives as a prefix."""
    return redact(text)[:limit]


class RedactingFilter(logging.Filter):
    """A logging filter (for handlers: a logger's own filters miss its children's records) that
    redacts the message, its arguments and any traceback before a handler formats them."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string; logging reports it itself
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


#: The loggers this package writes to. Each gets the filter on import, so whatever handlers a
#: library user attaches see redacted records (a logger's filter sees only its own records).
LOGGERS = ("personagym", "personagym.llm", "personagym.llm.batch")


def _filter(target: logging.Logger | logging.Handler) -> None:
    if not any(isinstance(f, RedactingFilter) for f in target.filters):
        target.addFilter(RedactingFilter())


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Put a RedactingFilter on every handler of `logger` (the root logger by default), so records
    of any logger (the SDKs' too) are redacted, and make uncaught tracebacks (printed under --debug)
    redacted too."""
    for handler in (logger or logging.getLogger()).handlers:
        _filter(handler)
    if not getattr(sys.excepthook, "redacts", False):
        sys.excepthook = _redacting_excepthook


def _redacting_excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
    import traceback

    sys.stderr.write(redact("".join(traceback.format_exception(kind, value, tb))))


_redacting_excepthook.redacts = True  # type: ignore[attr-defined]


for _name in LOGGERS:
    _filter(logging.getLogger(_name))
