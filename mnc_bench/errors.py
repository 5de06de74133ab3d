"""Exception types for mistakes in what a user gave us (configs, datasets, files, arguments)."""


class UserError(Exception):
    """A problem with the user's input. The CLI prints its message on one line and exits non-zero, no
    traceback (``mnc-bench --debug`` shows it)."""


class ConfigError(UserError, ValueError):
    """A config value (from the file, ``--cfg-options`` or a suite axis) that cannot work; the message starts
    with the config key. Also a ValueError, so code that validates its arguments with ValueError may raise it
    as is."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (at most 500 characters), for a ``UserError`` that wraps it."""
    # KeyError's str() quotes its message; show the message itself.
    text = exc.args[0] if isinstance(exc, KeyError) and len(exc.args) == 1 else str(exc)
    text = str(text).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines)[:500]
