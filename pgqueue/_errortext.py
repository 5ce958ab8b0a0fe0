"""What pgqueue stores of a handler's failure: the error line and the traceback, always
storable by PostgreSQL (no NUL, valid UTF-8) and bounded in size."""

from __future__ import annotations

import linecache
import traceback

#: Longest error or traceback text stored for one attempt (characters).
MAX_ERROR_CHARS = 10_000


def storable(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` as PostgreSQL can always store it: NUL shown as ``\\x00``, anything that
    is not valid UTF-8 (lone surrogates) replaced, and at most ``limit`` characters
    (the middle cut out, so the start and the innermost frames both survive)."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:
        half = (limit - 40) // 2
        text = f"{text[:half]}\n... [{len(text) - 2 * half} characters cut] ...\n{text[-half:]}"
    return text


def error_text(error: BaseException | str | None) -> str | None:
    """What is stored as a failed attempt's error: the exception's type and message on
    one line (``last_error``, the errors history), always storable."""
    if error is None:
        return None
    if isinstance(error, str):
        return storable(error)
    orig = getattr(error, "orig", None)  # a SQLAlchemy DBAPIError: the driver's message,
    if isinstance(orig, BaseException):  # without the statement and its parameters
        return storable(f"{type(error).__name__}: {type(orig).__name__}: {_message(orig)}".strip())
    return storable(f"{type(error).__name__}: {_message(error)}")


def _message(exc: BaseException) -> str:
    """``str(exc)``, or a placeholder when the exception cannot say (its ``__str__``
    raises): a handler's error must never keep its job from being settled."""
    try:
        return str(exc)
    except Exception:
        return "<exception str() failed>"


#: Most frames kept of each exception's traceback (the innermost ones).
MAX_FRAMES = 40
_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def _last_line(exc: BaseException) -> str:
    """``module.Type: message`` as Python prints it under a traceback."""
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ not in ("builtins", "__main__"):
        name = f"{kind.__module__}.{name}"
    message = _message(exc)
    return f"{name}: {message}\n" if message else f"{name}\n"


def traceback_text(error: BaseException | str | None) -> str | None:
    """The traceback of a raised exception, chained causes included, as Python prints
    it (without 3.11's ``^^^`` markers), bounded and storable; None for a string or an
    exception never raised.

    Written here rather than ``traceback.format_exception``, which builds a summary of
    every frame and marks its columns: 250 µs a failure, a third of what a failing job
    cost a worker; this costs a tenth of that (source lines come from linecache)."""
    if not isinstance(error, BaseException) or error.__traceback__ is None:
        return None
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    exc: BaseException | None = error
    joint = ""
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append((exc, joint))
        if exc.__cause__ is not None:
            exc, joint = exc.__cause__, _CAUSE
        elif exc.__context__ is not None and not exc.__suppress_context__:
            exc, joint = exc.__context__, _CONTEXT
        else:
            exc = None
    parts: list[str] = []
    for exc, joint in reversed(chain):
        if exc.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n")
            frames = list(traceback.walk_tb(exc.__traceback__))
            if len(frames) > MAX_FRAMES:
                parts.append(f"  [{len(frames) - MAX_FRAMES} outer frames left out]\n")
                frames = frames[-MAX_FRAMES:]
            for frame, lineno in frames:
                code = frame.f_code
                parts.append(f'  File "{code.co_filename}", line {lineno}, in {code.co_name}\n')
                line = linecache.getline(code.co_filename, lineno).strip()
                if line:
                    parts.append(f"    {line}\n")
        parts.append(_last_line(exc))
        parts.append(joint)
    return storable("".join(parts).rstrip())


# --------------------------------------------------------------------------- times
