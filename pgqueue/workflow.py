"""Workflows: jobs that run after other jobs (chains, groups, any DAG with fan-in).

>>> wf = Workflow("nightly-report")                                   # doctest: +SKIP
>>> extract = wf.add({"day": "2026-12-01"}, entrypoint="extract")      # doctest: +SKIP
>>> parts = [wf.add({"part": i}, entrypoint="transform", after=[extract]) for i in range(100)]
>>> report = wf.add({}, entrypoint="report", after=parts)              # doctest: +SKIP
>>> run = producer.enqueue_workflow(wf)                                # doctest: +SKIP

A workflow is built in memory (nothing is written until ``enqueue_workflow``), then
enqueued in one transaction. Each node is an ordinary job; one waits (``blocked``)
until every parent has completed. See docs/workflows.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from . import _validate, _validate_jobs
from .errors import ForeignNode, InvalidWorkflow, WorkflowCycle
from .types import JOB_OPTIONS, JSON, JobSpec

OnParentFailure = Literal["cancel", "run"]
#: Most nodes one workflow may have.
MAX_NODES = 100_000


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    """One node of a :class:`Workflow` (what ``Workflow.add`` returns): pass it in
    ``after=`` of the nodes that depend on it."""

    workflow: Workflow = field(repr=False)
    position: int
    payload: JSON = field(repr=False)
    entrypoint: str | None
    queue: str | None
    priority: int | None = None
    max_attempts: int | None = None
    dedupe_key: str | None = None
    headers: Mapping[str, Any] | None = field(default=None, repr=False)
    on_parent_failure: OnParentFailure = "cancel"


class Workflow:
    """A graph of jobs to enqueue together (see the module's docstring)."""

    def __init__(self, name: str = "workflow") -> None:
        if not isinstance(name, str) or not name or len(name) > 255:
            raise InvalidWorkflow("workflow name must be a str of 1 to 255 characters")
        self.name = name
        self._nodes: list[Node] = []
        self._parents: list[list[int]] = []

    def __len__(self) -> int:
        return len(self._nodes)

    @property
    def nodes(self) -> tuple[Node, ...]:
        return tuple(self._nodes)

    def parents(self, node: Node) -> list[Node]:
        """The nodes ``node`` runs after."""
        self._own(node)
        return [self._nodes[p] for p in self._parents[node.position]]

    def add(
        self,
        payload: JSON,
        *,
        entrypoint: str | None = None,
        after: Iterable[Node] = (),
        priority: int | None = None,
        queue: str | None = None,
        max_attempts: int | None = None,
        dedupe_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
        on_parent_failure: OnParentFailure = "cancel",
    ) -> Node:
        """Add a job that runs once every node of ``after`` has completed (at once when
        ``after`` is empty). ``queue`` defaults to the producer's; ``entrypoint`` to the
        queue's name; the other options are those of ``producer.enqueue``.
        ``on_parent_failure``: when a parent ends dead or cancelled, ``"cancel"`` this
        node (and what depends on it), or ``"run"`` it anyway."""
        if on_parent_failure not in ("cancel", "run"):
            raise InvalidWorkflow('on_parent_failure must be "cancel" or "run"')
        if isinstance(after, Node):
            after = [after]
        parents = [self._own(p) for p in after]
        if len(self._nodes) >= MAX_NODES:
            raise InvalidWorkflow(f"a workflow has at most {MAX_NODES} nodes")
        node = Node(
            self,
            len(self._nodes),
            payload,
            entrypoint,
            queue,
            priority,
            max_attempts,
            dedupe_key,
            headers,
            on_parent_failure,
        )
        self._nodes.append(node)
        self._parents.append(sorted(set(parents)))
        return node

    def depend(self, node: Node, *parents: Node) -> None:
        """Make ``node`` also run after ``parents`` (nodes of this workflow). A cycle is
        reported when the workflow is enqueued (:class:`~pgqueue.errors.WorkflowCycle`)."""
        child = self._own(node)
        self._parents[child] = sorted(set(self._parents[child]) | {self._own(p) for p in parents})

    def chain(
        self, items: Iterable[JSON | JobSpec], *, after: Iterable[Node] = (), **options: Any
    ) -> list[Node]:
        """Nodes that run one after the other (each after the previous; the first after
        ``after``). Items are payloads or :class:`~pgqueue.JobSpec` (their own options);
        ``options`` (``entrypoint=``, ``queue=``...) apply to every item."""
        nodes: list[Node] = []
        previous = list(after)
        for item in items:
            node = self._add_item(item, previous, options)
            nodes.append(node)
            previous = [node]
        return nodes

    def group(
        self,
        items: Iterable[JSON | JobSpec],
        *,
        after: Iterable[Node] = (),
        callback: JSON | JobSpec | None = None,
        **options: Any,
    ) -> tuple[list[Node], Node | None]:
        """Nodes that run side by side (each after ``after``), and a ``callback`` node
        that runs once all of them have completed (a fan-out and its fan-in)."""
        previous = list(after)
        nodes = [self._add_item(item, previous, options) for item in items]
        if callback is None:
            return nodes, None
        return nodes, self._add_item(callback, nodes, options)

    # ------------------------------------------------------------------ internals
    def _add_item(
        self, item: JSON | JobSpec, after: Sequence[Node], options: Mapping[str, Any]
    ) -> Node:
        if not isinstance(item, JobSpec):
            return self.add(item, after=after, **options)
        if item.delay is not None or item.run_at is not None:
            raise InvalidWorkflow("workflow nodes take no delay or run_at")
        own = {
            name: getattr(item, name)
            for name in JOB_OPTIONS
            if name not in ("delay", "run_at") and getattr(item, name) is not None
        }
        return self.add(item.payload, after=after, **{**options, **own})

    def _own(self, node: object) -> int:
        if not isinstance(node, Node):
            raise ForeignNode(f"after= takes nodes of this workflow, not {type(node).__name__}")
        if node.workflow is not self:
            raise ForeignNode(
                f"node {node.position} belongs to workflow {node.workflow.name!r}, "
                f"not to {self.name!r}"
            )
        return node.position

    def _cycle(self) -> list[int] | None:
        """The positions on a dependency cycle, or None (Kahn's algorithm)."""
        n = len(self._nodes)
        children: list[list[int]] = [[] for _ in range(n)]
        waiting = [len(p) for p in self._parents]
        for child, parents in enumerate(self._parents):
            for p in parents:
                children[p].append(child)
        ready = [i for i in range(n) if waiting[i] == 0]
        seen = 0
        while ready:
            i = ready.pop()
            seen += 1
            for c in children[i]:
                waiting[c] -= 1
                if waiting[c] == 0:
                    ready.append(c)
        if seen == n:
            return None
        return [i for i in range(n) if waiting[i] > 0]

    def arrays(self, default_queue: str) -> dict[str, list[Any]]:
        """The validated workflow as the parallel arrays INSERT_WORKFLOW unnests. Raises a
        typed error (nothing written yet) for an empty workflow, a cycle, bad options."""
        if not self._nodes:
            raise InvalidWorkflow(f"workflow {self.name!r} has no nodes")
        cycle = self._cycle()
        if cycle is not None:
            raise WorkflowCycle(cycle)
        out: dict[str, list[Any]] = {
            k: []
            for k in (
                "b_queue",
                "b_entrypoint",
                "b_payload",
                "b_headers",
                "b_priority",
                "b_max_attempts",
                "b_dedupe_key",
                "b_waiting",
                "b_run",
                "b_leaf",
                "b_parents",
                "b_children",
            )
        }
        inner = {p for parents in self._parents for p in parents}
        keyed: dict[tuple[str, str], int] = {}  # one live job per (queue, dedupe_key)
        for node in self._nodes:
            where = f"workflow node {node.position}"
            queue = default_queue if node.queue is None else node.queue
            _validate.check_queue_name(queue)
            spec = JobSpec(
                node.payload,
                priority=node.priority,
                dedupe_key=node.dedupe_key,
                headers=node.headers,
                entrypoint=node.entrypoint,
                max_attempts=node.max_attempts,
            )
            opts = dict(
                zip(
                    JOB_OPTIONS,
                    _validate_jobs.job_options(queue, where, spec, JobSpec(None)),
                    strict=True,
                )
            )
            if opts["dedupe_key"] is not None:
                twin = keyed.setdefault((queue, opts["dedupe_key"]), node.position)
                if twin != node.position:
                    raise InvalidWorkflow(
                        f"{where}: dedupe_key {opts['dedupe_key']!r} is also node {twin}'s, on "
                        f"queue {queue!r} (a queue holds one live job per key)"
                    )
            out["b_queue"].append(queue)
            out["b_entrypoint"].append(opts["entrypoint"])
            out["b_payload"].append(_validate.json_text(node.payload, f"{where}: payload"))
            out["b_headers"].append(opts["headers"])
            out["b_priority"].append(opts["priority"])
            out["b_max_attempts"].append(opts["max_attempts"])
            out["b_dedupe_key"].append(opts["dedupe_key"])
            out["b_waiting"].append(len(self._parents[node.position]))
            out["b_run"].append(node.on_parent_failure == "run")
            out["b_leaf"].append(node.position not in inner)
            for p in self._parents[node.position]:
                out["b_parents"].append(p)
                out["b_children"].append(node.position)
        return out


def chain(name: str, items: Iterable[JSON | JobSpec], **options: Any) -> Workflow:
    """A workflow of ``items`` run one after the other (see :meth:`Workflow.chain`)."""
    wf = Workflow(name)
    wf.chain(items, **options)
    return wf


def group(
    name: str,
    items: Iterable[JSON | JobSpec],
    *,
    callback: JSON | JobSpec | None = None,
    **options: Any,
) -> Workflow:
    """A workflow of ``items`` run side by side, then ``callback`` once all completed
    (see :meth:`Workflow.group`)."""
    wf = Workflow(name)
    wf.group(items, callback=callback, **options)
    return wf
