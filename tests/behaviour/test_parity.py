"""The two faces are one API: every ``Sync*``/``Async*`` pair pgqueue exports has the
same public members, with the same parameters (names, kinds, defaults) and the same
annotations once async names are mapped to their sync twins (``AsyncBind`` ->
``Bind``, ``AsyncEngine`` -> ``Engine``, ``AsyncProducer`` -> ``SyncProducer`` ...).
Methods are coroutines on the async face exactly where they are plain functions on the
sync face (and async generators where the sync face has generators).

The sync faces are generated, so this mostly guards the generator and whatever is
hand-written next to it (compat modules, base classes): a member added to one face
only fails here.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

import pgqueue
from pgqueue._drive import AsyncBind, Bind

#: Dunders that are part of a public API, async name -> sync name.
DUNDERS = {
    "__init__": "__init__",
    "__call__": "__call__",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
}
_ASYNC_NAME = re.compile(r"\bAsync([A-Z]\w*)")


def pairs() -> list[tuple[str, type, type]]:
    """(stem, async class, sync class) for every pair named in ``pgqueue.__all__``."""
    exported = {name: getattr(pgqueue, name) for name in pgqueue.__all__}
    classes = {n: o for n, o in exported.items() if inspect.isclass(o)}
    stems = {n[len("Async") :] for n in classes if n.startswith("Async")}
    stems |= {n[len("Sync") :] for n in classes if n.startswith("Sync")}
    return [
        (stem, classes.get(f"Async{stem}"), classes.get(f"Sync{stem}"))  # type: ignore[misc]
        for stem in sorted(stems)
    ]


def as_text(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "<none>"
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def to_sync(annotation: Any) -> str:
    """An async-face annotation as text, with async names replaced by their sync twins."""

    def rename(match: re.Match[str]) -> str:
        stem = match.group(1)
        return f"Sync{stem}" if f"Sync{stem}" in pgqueue.__all__ else stem

    return _ASYNC_NAME.sub(rename, as_text(annotation))


def public_members(cls: type, *, async_face: bool) -> dict[str, Any]:
    """Public name (in the sync face's spelling) -> the member, looked up statically."""
    members: dict[str, Any] = {}
    for name in dir(cls):
        if name.startswith("__"):
            if name not in DUNDERS and name not in DUNDERS.values():
                continue
            # Only dunders a pgqueue class defines, not ones inherited from object.
            if not any(k is not object and name in vars(k) for k in cls.__mro__):
                continue
        elif name.startswith("_"):
            continue
        members[DUNDERS.get(name, name) if async_face else name] = inspect.getattr_static(cls, name)
    return members


def _callable_kind(fn: Any) -> str:
    if inspect.iscoroutinefunction(fn):
        return "coroutine"
    if inspect.isasyncgenfunction(fn):
        return "async generator"
    if inspect.isgeneratorfunction(fn):
        return "generator"
    return "function"


#: What a method of each kind on the async face must be on the sync face.
SYNC_KIND = {
    "coroutine": "function",
    "async generator": "generator",
    "function": "function",
}


def _member_kind(member: Any) -> str:
    if isinstance(member, property):
        return "property"
    if isinstance(member, staticmethod):
        return "staticmethod"
    if isinstance(member, classmethod):
        return "classmethod"
    if inspect.isfunction(member):
        return "method"
    return "attribute"


def _signature_differences(where: str, a_fn: Any, s_fn: Any) -> list[str]:
    out: list[str] = []
    a_kind, s_kind = _callable_kind(a_fn), _callable_kind(s_fn)
    if s_kind in ("coroutine", "async generator"):
        out.append(f"{where}: is a {s_kind} on the sync face")
    elif SYNC_KIND[a_kind] != s_kind:
        out.append(f"{where}: a {a_kind} on the async face but a {s_kind} on the sync face")
    a_sig, s_sig = inspect.signature(a_fn), inspect.signature(s_fn)
    a_params, s_params = list(a_sig.parameters.values()), list(s_sig.parameters.values())
    if [p.name for p in a_params] != [p.name for p in s_params]:
        out.append(
            f"{where}: parameters {[p.name for p in a_params]} (async) vs "
            f"{[p.name for p in s_params]} (sync)"
        )
        return out
    for a, s in zip(a_params, s_params, strict=True):
        if a.kind != s.kind:
            out.append(f"{where}({a.name}): kind {a.kind.description} vs {s.kind.description}")
        if a.default != s.default or type(a.default) is not type(s.default):
            out.append(f"{where}({a.name}): default {a.default!r} vs {s.default!r}")
        if to_sync(a.annotation) != as_text(s.annotation):
            out.append(
                f"{where}({a.name}): annotation {a.annotation!r} vs {s.annotation!r} "
                f"(expected {to_sync(a.annotation)!r})"
            )
    if to_sync(a_sig.return_annotation) != as_text(s_sig.return_annotation):
        out.append(f"{where}: returns {a_sig.return_annotation!r} vs {s_sig.return_annotation!r}")
    return out


def differences(async_cls: type, sync_cls: type) -> list[str]:
    """Every way the public API of ``sync_cls`` differs from that of ``async_cls``."""
    a_members = public_members(async_cls, async_face=True)
    s_members = public_members(sync_cls, async_face=False)
    out = [f"{n}: only on {async_cls.__name__}" for n in sorted(a_members.keys() - s_members)]
    out += [f"{n}: only on {sync_cls.__name__}" for n in sorted(s_members.keys() - a_members)]
    for name in sorted(a_members.keys() & s_members.keys()):
        a, s = a_members[name], s_members[name]
        where = f"{sync_cls.__name__}.{name}"
        a_kind, s_kind = _member_kind(a), _member_kind(s)
        if a_kind != s_kind:
            out.append(f"{where}: a {a_kind} on the async face but a {s_kind} on the sync face")
        elif a_kind == "property":
            for part in ("fget", "fset", "fdel"):
                a_fn, s_fn = getattr(a, part), getattr(s, part)
                if (a_fn is None) != (s_fn is None):
                    out.append(f"{where}: {part} on one face only")
                elif a_fn is not None:
                    out += _signature_differences(f"{where}.{part}", a_fn, s_fn)
        elif a_kind in ("staticmethod", "classmethod"):
            out += _signature_differences(where, a.__func__, s.__func__)
        elif a_kind == "method":
            out += _signature_differences(where, a, s)
        elif type(a) is not type(s):
            out.append(f"{where}: {type(a).__name__} vs {type(s).__name__}")
    return out


# --------------------------------------------------------------------------- the faces
def test_every_class_has_a_twin() -> None:
    found = pairs()
    assert {"Admin", "Producer"} <= {stem for stem, _, _ in found}
    lonely = [stem for stem, a, s in found if a is None or s is None]
    assert lonely == [], f"exported on one face only: {lonely}"


@pytest.mark.parametrize(("stem", "async_cls", "sync_cls"), pairs(), ids=[p[0] for p in pairs()])
def test_public_api_is_the_same(stem: str, async_cls: type, sync_cls: type) -> None:
    assert async_cls is not None and sync_cls is not None, f"{stem} has one face only"
    assert differences(async_cls, sync_cls) == []


@pytest.mark.parametrize(("stem", "async_cls", "sync_cls"), pairs(), ids=[p[0] for p in pairs()])
def test_async_face_awaits_where_the_sync_face_blocks(
    stem: str, async_cls: type, sync_cls: type
) -> None:
    members = public_members(async_cls, async_face=True)
    coroutines = [
        n
        for n, m in members.items()
        if _member_kind(m) == "method" and _callable_kind(m) == "coroutine"
    ]
    assert coroutines, f"Async{stem} has no coroutine methods at all"
    for name in coroutines:
        assert _callable_kind(getattr(sync_cls, name)) == "function", name


# --------------------------------------------------------------------------- the checker
# The checker itself must see a difference wherever there is one. Its specimens are
# stubs (their bodies never run); ``self`` is annotated on both faces alike, since the
# checker compares every parameter's annotation.
class AsyncThing:
    def __init__(self: Any, engine: AsyncEngine, *, schema: str = "public") -> None: ...

    @property
    def engine(self: Any) -> AsyncEngine:
        raise NotImplementedError

    async def run(self: Any, n: int = 1, *, bind: AsyncBind | None = None) -> list[int]:
        raise NotImplementedError

    async def items(self: Any) -> AsyncIterator[int]:
        yield 1

    def decorate(self: Any, name: str) -> str:
        raise NotImplementedError

    async def __aenter__(self: Any) -> AsyncThing:
        raise NotImplementedError


class SyncThing:
    """Stands in for the twin's name in annotations; ``_sync_twin`` builds the twin."""


def _sync_twin(**overrides: Any) -> type:
    def __init__(self: Any, engine: Engine, *, schema: str = "public") -> None: ...

    def engine(self: Any) -> Engine:
        raise NotImplementedError

    def run(self: Any, n: int = 1, *, bind: Bind | None = None) -> list[int]:
        raise NotImplementedError

    def items(self: Any) -> Iterator[int]:
        yield 1

    def decorate(self: Any, name: str) -> str:
        raise NotImplementedError

    def __enter__(self: Any) -> SyncThing:
        raise NotImplementedError

    body: dict[str, Any] = {
        "__init__": __init__,
        "engine": property(engine),
        "run": run,
        "items": items,
        "decorate": decorate,
        "__enter__": __enter__,
    }
    body.update(overrides)
    return type("SyncThing", (), {k: v for k, v in body.items() if v is not None})


@pytest.fixture
def thing_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the checker map ``AsyncThing`` to ``SyncThing`` like an exported pair."""
    monkeypatch.setattr(pgqueue, "__all__", [*pgqueue.__all__, "AsyncThing", "SyncThing"])


def _only(diffs: list[str], fragment: str) -> None:
    assert len(diffs) == 1 and fragment in diffs[0], diffs


@pytest.mark.usefixtures("thing_exported")
def test_checker_accepts_a_faithful_twin() -> None:
    assert differences(AsyncThing, _sync_twin()) == []


@pytest.mark.usefixtures("thing_exported")
def test_checker_sees_a_member_on_one_face_only() -> None:
    def extra(self: Any) -> None: ...

    _only(differences(AsyncThing, _sync_twin(extra=extra)), "extra: only on SyncThing")
    _only(differences(AsyncThing, _sync_twin(decorate=None)), "decorate: only on AsyncThing")
    _only(differences(AsyncThing, _sync_twin(__enter__=None)), "__enter__: only on AsyncThing")


@pytest.mark.usefixtures("thing_exported")
def test_checker_sees_signature_changes() -> None:
    def renamed(self: Any, count: int = 1, *, bind: Bind | None = None) -> list[int]:
        raise NotImplementedError

    def default(self: Any, n: int = 2, *, bind: Bind | None = None) -> list[int]:
        raise NotImplementedError

    def kind(self: Any, n: int = 1, bind: Bind | None = None) -> list[int]:
        raise NotImplementedError

    def annotation(self: Any, n: float = 1, *, bind: Bind | None = None) -> list[int]:
        raise NotImplementedError

    def unmapped(self: Any, n: int = 1, *, bind: AsyncBind | None = None) -> list[int]:
        raise NotImplementedError

    def returns(self: Any, n: int = 1, *, bind: Bind | None = None) -> int:
        raise NotImplementedError

    async def coroutine(self: Any, n: int = 1, *, bind: Bind | None = None) -> list[int]:
        raise NotImplementedError

    def items(self: Any) -> Iterator[int]:
        return iter([1])

    def engine(self: Any) -> Engine:
        raise NotImplementedError

    _only(differences(AsyncThing, _sync_twin(run=renamed)), "parameters")
    _only(differences(AsyncThing, _sync_twin(run=default)), "default 1 vs 2")
    _only(differences(AsyncThing, _sync_twin(run=kind)), "kind keyword-only")
    _only(differences(AsyncThing, _sync_twin(run=annotation)), "annotation")
    _only(differences(AsyncThing, _sync_twin(run=unmapped)), "annotation")
    _only(differences(AsyncThing, _sync_twin(run=returns)), "returns")
    _only(differences(AsyncThing, _sync_twin(run=coroutine)), "coroutine on the sync face")
    _only(differences(AsyncThing, _sync_twin(items=items)), "async generator on the async")
    _only(differences(AsyncThing, _sync_twin(engine=engine)), "a property on the async face")


def test_checker_sees_a_coroutine_on_the_sync_face() -> None:
    class AsyncOops:
        def run(self) -> None: ...  # a plain function on both faces is fine (a decorator)

        async def go(self) -> None: ...

    class SyncOops:
        def run(self) -> None: ...

        async def go(self) -> None: ...

    _only(differences(AsyncOops, SyncOops), "SyncOops.go: is a coroutine on the sync face")
