"""Typed payloads: what a handler's annotation asks for, and models sent as JSON.

A handler whose job parameter is annotated ``Message[T]`` gets its payload validated
as a ``T`` before it runs: a pydantic v2 model (``T.model_validate``), a dataclass or a
``TypedDict`` (pydantic's ``TypeAdapter`` when pydantic is installed; without it, a
dataclass is built from the payload's keys and a TypedDict's keys are checked). A
payload that does not validate fails the attempt with ``InvalidPayload`` saying why;
the handler does not run. Any other annotation (bare ``Message``, ``Message[dict]``...)
passes the decoded JSON as it is.

On the way in, :func:`plain` is the JSON encoder's fallback: a pydantic model becomes
``model_dump(mode="json")``, a dataclass instance its fields (nested ones too). It runs
only for values ``json`` cannot encode itself, so plain payloads cost nothing more.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

from .errors import InvalidPayload
from .types import Message

Parse = Callable[[Any], Any]


def plain(value: Any) -> Any:
    """``json.JSONEncoder.default``: a pydantic model or dataclass instance as JSON."""
    dump = getattr(value, "model_dump", None)
    if dump is not None and not isinstance(value, type):
        return dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def payload_type(handler: Callable[..., Any]) -> Any:
    """The ``T`` of a handler's ``Message[T]`` first parameter (None if it has none)."""
    try:
        params = list(inspect.signature(handler).parameters.values())
        hints = typing.get_type_hints(handler)
    except (TypeError, ValueError, NameError):
        return None  # no signature, or annotations that do not resolve: untyped
    if not params:
        return None
    annotation = hints.get(params[0].name)
    if typing.get_origin(annotation) is not Message:
        return None
    args = typing.get_args(annotation)
    return args[0] if args else None


def parser_for(handler: Callable[..., Any]) -> Parse | None:
    """What turns a job's decoded payload into what ``handler`` is annotated to take
    (None: the payload is passed as it is)."""
    target = payload_type(handler)
    if not isinstance(target, type):
        return None  # Any, a TypeVar, dict[str, int], a union...: no validation
    name = target.__qualname__
    validate = getattr(target, "model_validate", None)
    if callable(validate):  # a pydantic v2 model
        return _raising(validate, name)
    if dataclasses.is_dataclass(target) or _is_typeddict(target):
        try:
            from pydantic import TypeAdapter
        except ImportError:
            is_dc = dataclasses.is_dataclass(target)
            check = _dataclass(target) if is_dc else _typeddict(target)
            return _raising(check, name)
        return _raising(TypeAdapter(target).validate_python, name)
    return None


def _is_typeddict(target: type) -> bool:
    if typing.is_typeddict(target):
        return True
    try:  # typing_extensions' own TypedDict (newer features) is another class
        import typing_extensions
    except ImportError:  # pragma: no cover - SQLAlchemy depends on it
        return False
    return typing_extensions.is_typeddict(target)


def _raising(parse: Parse, name: str) -> Parse:
    def parsed(payload: Any) -> Any:
        try:
            return parse(payload)
        except InvalidPayload:
            raise
        except (TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            raise InvalidPayload(f"the job's payload is not a valid {name}: {exc}") from None

    return parsed


def _mapping(payload: Any) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise TypeError(f"expected a JSON object, got {type(payload).__name__}")
    return payload


def _dataclass(cls: type) -> Parse:
    names = {f.name for f in dataclasses.fields(cls) if f.init}

    def build(payload: Any) -> Any:
        # Unknown keys are dropped, as pydantic does; a missing field is a TypeError.
        return cls(**{k: v for k, v in _mapping(payload).items() if k in names})

    return build


def _typeddict(cls: type) -> Parse:
    required, known = _typeddict_keys(cls)

    def check(payload: Any) -> Any:
        given = _mapping(payload)
        if missing := required - set(given):
            raise ValueError(f"missing keys {sorted(missing)}")
        return {k: v for k, v in given.items() if k in known}  # unknown keys dropped

    return check


def _typeddict_keys(cls: type) -> tuple[frozenset[str], frozenset[str]]:
    """A TypedDict's required and known keys, from its resolved annotations (with
    ``from __future__ import annotations`` its ``__required_keys__`` cannot see
    ``NotRequired``)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    total = getattr(cls, "__total__", True)
    required = set()
    for key, hint in hints.items():
        marker = getattr(typing.get_origin(hint), "_name", None) or getattr(
            typing.get_origin(hint), "__name__", None
        )
        if marker == "Required" or (marker != "NotRequired" and total):
            required.add(key)
    return frozenset(required), frozenset(hints)
