"""The click plumbing the command tree is declared with: parameter types, the shared
option decorators, and ``runs``, which hands a command's options to its ``cmd_*``
function (see :mod:`pgqueue.cli._tree`)."""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .._validate import UNSET
from ._common import duration

F = TypeVar("F", bound=Callable[..., Any])
Command = Callable[[argparse.Namespace], int]


class Positive(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2
    """A finite number of seconds > 0."""

    name = "seconds"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        try:
            number = float(value)
        except ValueError:
            self.fail(f"{value!r} is not a number", param, ctx)
        if not 0 < number < float("inf"):
            self.fail(f"{value!r} must be a number > 0", param, ctx)
        return number


POSITIVE = Positive()


class Duration(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2
    """``30s``, ``15m``, ``12h``, ``1d``, ``2w``, ``1d12h`` or seconds; ``forever``: None."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is UNSET or value is None or isinstance(value, float):
            return value
        try:
            return duration(str(value))
        except argparse.ArgumentTypeError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()


def retention_options(f: F) -> F:
    """``--retain-completed`` / ``--retain-cancelled`` / ``--retain-dead`` (not given:
    UNSET, the queue's default or current value)."""
    for kind, what in reversed(
        (
            ("completed", "archived jobs that completed (default 7d)"),
            ("cancelled", "archived jobs cancelled or deleted (default 7d)"),
            ("dead", "dead jobs, from when they died (default 30d)"),
        )
    ):
        f = click.option(
            f"--retain-{kind}",
            type=DURATION,
            default=UNSET,
            metavar="DURATION",
            help=f"how long to keep {what}: 30s, 15m, 12h, 1d, 2w, or forever",
        )(f)
    return f


def runs(func: Command, **fixed: Any) -> Callable[[Callable[..., Any]], Callable[..., int]]:
    """Make the decorated click callback call ``func(args)``: ``args`` holds the global
    options, this command's options and ``fixed``."""

    def decorate(_: Callable[..., Any]) -> Callable[..., int]:
        @functools.wraps(_)
        def callback(**params: Any) -> int:
            root = click.get_current_context().find_root().obj
            given = {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
            args = argparse.Namespace(**vars(root), **given, **fixed)
            _configure_logging(args)
            return func(args)

        return callback

    return decorate


def json_option(f: F) -> F:
    return click.option("--json", is_flag=True, help="one JSON document on stdout")(f)


def exact_option(f: F) -> F:
    """Counts exact to 1,000 and estimated above (shown ``~N``) unless ``--exact``."""
    return click.option(
        "--exact", is_flag=True, help="count every job (default: exact to 1,000, ~N above)"
    )(f)


def yes_option(help: str) -> Callable[[F], F]:
    return click.option("--yes", is_flag=True, help=help)


def filter_options(f: F) -> F:
    """The job filters of ``jobs list`` and the bulk verbs."""
    for option in reversed(
        [
            click.option("--queue"),
            click.option(
                "--status", multiple=True, help="a status (repeatable, or comma-separated)"
            ),
            click.option("--entrypoint"),
            click.option("--dedupe-key"),
            click.option(
                "--header", multiple=True, help="KEY=VALUE the job's headers contain (repeatable)"
            ),
        ]
    ):
        f = option(f)
    return f


def log_options(f: F) -> F:
    f = click.option(
        "--log-level",
        type=click.Choice(("debug", "info", "warning", "error")),
        help="debug: every transition of every job (started, completed); "
        "default: warning, info with -v",
    )(f)
    return click.option(
        "--log-format",
        type=click.Choice(("text", "json")),
        default="text",
        show_default=True,
        help="json: one JSON object per line, with each job's fields",
    )(f)


def metrics_port_options(help: str) -> Callable[[F], F]:
    def decorate(f: F) -> F:
        f = click.option("--metrics-host", default="0.0.0.0", help="default 0.0.0.0")(f)
        return click.option("--metrics-port", type=int, help=help + " (needs pgqueue[prometheus])")(
            f
        )

    return decorate


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.INFO if args.verbose else logging.WARNING
    if getattr(args, "log_level", None):
        level = getattr(logging, args.log_level.upper())
    if getattr(args, "log_format", "text") == "json":
        from ..logs import configure

        configure("json", level)
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
