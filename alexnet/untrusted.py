"""Helpers for input the project does not trust: URLs that may carry passwords, names that
become paths, output paths, environment variables and numbers at their extremes.

Each check raises ``ValueError`` with a message that names the value and what is allowed."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
import urllib.parse
from pathlib import Path

# user:password@ in any URL (scheme://user:password@host), and password-like query parameters
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@'\"]*):(?P<secret>[^@\s/'\"]+)@")
_QUERY = re.compile(r"(?P<head>[?&;](?:password|passwd|pwd|token|secret|api_key|apikey)=)(?P<secret>[^&;\s'\"]+)",
                    re.IGNORECASE)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its class name when it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else exc.__class__.__name__


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``
    (``postgresql://user:***@host/db``); use it on anything recorded or printed."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:***@", str(text))
    return _QUERY.sub(lambda m: f"{m['head']}***", text)


SECRET_KEYS = {"password", "passwd", "pwd", "token", "secret", "api_key", "apikey"}


def has_secret(url: str) -> bool:
    """Whether a URL carries a credential in any form a client reads one: a userinfo password as
    urllib or SQLAlchemy parse it (``u:p/ss@``, ``u:p w@``), or a query key naming one, percent-
    encoded or not. Stricter than ``redact``: for refusing a URL that would be written down."""
    if redact(url) != url:
        return True
    parts = urllib.parse.urlsplit(url)
    if parts.password or any(k.lower() in SECRET_KEYS for k, _ in urllib.parse.parse_qsl(parts.query)):
        return True
    scheme, _, rest = url.partition("://")  # a database URL as SQLAlchemy reads it: user:password@, the password
    return not scheme.startswith("http") and re.match(r"[^:/]*:[^@]*@", rest) is not None  # anything but '@'


def safe_name(value: str, what: str) -> str:
    """A name that becomes a file or folder name: letters, digits, '.', '_', '-', starting with a
    letter or digit, so it cannot climb out of its folder (no separators, no '..', not absolute)."""
    if not _NAME.fullmatch(value or "") or ".." in value:
        raise ValueError(f"invalid {what} {value!r}: expected up to 128 letters, digits, '.', '_' or '-', starting "
                         "with a letter or digit (it names a folder, so no '/', '\\' or '..')")
    return value


def expanded(path: str | os.PathLike, what: str) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded; one with no home folder (an unknown user,
    no $HOME) is a ValueError naming it, not pathlib's RuntimeError."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        raise ValueError(f"invalid {what} {quoted(path)}: its '~' names no home folder here; pass a path without "
                         "it") from None


def writable_dir(path: str | os.PathLike, what: str) -> Path:
    """Create ``path`` if needed and prove it writable with a temporary file, before any work
    whose output would go there."""
    folder = expanded(path, what)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ValueError(f"invalid {what} {quoted(path)}: cannot create or write there ({exc.strerror or exc}); "
                         "pass a folder you can write to") from None
    return folder


def writable_later(path: str | os.PathLike, what: str) -> Path:
    """A folder that will be written once the work is done: writable if it exists; else its
    nearest existing parent must be a writable folder (it is created then, not now)."""
    folder = expanded(path, what)
    if os.path.exists(folder):
        return writable_dir(folder, what)
    try:
        os.stat(folder)  # why it is not there: a name too long, a link loop, a file on the way, ...
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ValueError(f"invalid {what} {quoted(path)}: {exc.strerror or exc}; pass a folder you can write to") \
            from None
    parent = next(p for p in folder.absolute().parents if os.path.exists(p))
    first = parent / folder.absolute().relative_to(parent).parts[0]
    try:  # made and removed at once: proves it can be made (permissions, a read-only or virtual file system)
        first.mkdir()
        first.rmdir()
    except OSError as exc:
        raise ValueError(f"invalid {what} {quoted(path)}: it does not exist and cannot be created in {quoted(parent)} "
                         f"({exc.strerror or exc}); pass a folder you can write to") from None
    return folder


def writable_file(path: str | os.PathLike, what: str) -> Path:
    """An output file that can be written when the work is done: its folder is writable (created,
    with a message, when it does not exist) and the path is not a folder."""
    target = expanded(path, what)
    if os.path.isdir(target):
        raise ValueError(f"invalid {what} {quoted(path)}: it is a folder; pass a file name")
    if len(target.name.encode()) > 255:
        raise ValueError(f"invalid {what} {quoted(path)}: its name is longer than a file name may be (255 bytes)")
    existed = os.path.exists(target.parent)
    writable_dir(target.parent, f"{what} folder")
    if not existed:
        print(f"created the {what} folder {target.parent}", file=sys.stderr)
    if os.path.exists(target) and not os.access(target, os.W_OK):
        raise ValueError(f"invalid {what} {quoted(path)}: the file exists and is not writable")
    return target


def finite(value: float, what: str, *, low: float = -math.inf, high: float = math.inf,
           allowed: str = "a finite number") -> float:
    """``value`` if it is a finite number within [low, high], else a ValueError naming it."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
        raise ValueError(f"invalid {what} {value!r}: expected {allowed}")
    return value


def env_number(name: str, default: float, *, low: float = 0.0) -> float:
    """A number of seconds (or a count) from environment variable ``name``, else ``default``."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= low):
        raise ValueError(f"invalid ${name}={raw!r}: expected a finite number >= {low:g} (default {default:g})")
    return value


def printable(text: str) -> str:
    """Untrusted text as it may be printed: control and non-printable characters escaped."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else "?" for c in text)


def one_line(text: str) -> str:
    """``text`` if every character is printable (one line, no escape sequences), else a ValueError:
    a pydantic validator of the untrusted files' text fields."""
    if not text.isprintable():
        raise ValueError("not printable")
    return text


def quoted(value) -> str:
    """An untrusted value (an archive's name or path) as it may be printed: escaped, length bounded."""
    return repr(printable(str(value)[:120]))


FORMULA_START = ("=", "+", "-", "@", "\t", "\r",  # what a spreadsheet reads as a formula (OWASP CSV injection),
                 "\uff1d", "\uff0b", "\uff0d", "\uff20")  # full-width too (an IME's = + - @)


def formula_free(text: str) -> bool:
    """Whether ``text`` can sit in a spreadsheet cell as it is: it does not start like a formula,
    nor after leading spaces or line breaks (which some readers trim)."""
    return not text.lstrip(" \n\v\f\u00a0\u3000\ufeff").startswith(FORMULA_START)


def csv_cell(value):
    """A value as a CSV file the project writes holds it: text that starts like a formula (``= + - @``,
    full-width or after spaces, tab, carriage return) is quoted as text with a leading ``'`` (the
    OWASP rule); numbers and other text as they are."""
    return value if not isinstance(value, str) or formula_free(value) else "'" + value


class Parser(argparse.ArgumentParser):
    """The project's command-line parser: a bad option or value is one stderr line (no usage block)
    naming the option, the value (escaped, bounded) and what is allowed, then exit 2."""

    def parse_known_args(self, args=None, namespace=None):
        given = sys.argv[1:] if args is None else list(args)
        odd = next((a for a in given if a.startswith("-") and a.endswith("=--")), None)
        if odd:  # argparse reads it as an empty list, which no option takes
            self.error(f"argument {odd[:-3]}: expected a value, not '--'")
        return super().parse_known_args(given, namespace)

    def error(self, message: str):
        text = printable(" ".join(redact(message).split()))  # a URL given to the wrong option keeps its password
        if len(text) > 600:
            text = text[:600] + "..."
        self.exit(2, f"{self.prog}: error: {text} (see {self.prog} --help)\n")
