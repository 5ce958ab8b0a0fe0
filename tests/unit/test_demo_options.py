"""``pgqueue demo``'s options that need no database: where its /metrics is served."""

from __future__ import annotations

import argparse

import click
from click.testing import CliRunner

from pgqueue.cli.demo import DEMO_METRICS_HOST, _local_metrics


def test_the_demo_serves_its_metrics_on_localhost_unless_told() -> None:
    seen: list[str] = []

    @click.command()
    @click.option("--metrics-host", default="0.0.0.0")  # as pgqueue's shared option
    def probe(metrics_host: str) -> None:
        args = argparse.Namespace(metrics_host=metrics_host)
        _local_metrics(args)
        seen.append(args.metrics_host)

    runner = CliRunner()
    assert runner.invoke(probe, []).exit_code == 0
    assert runner.invoke(probe, ["--metrics-host", "0.0.0.0"]).exit_code == 0
    assert runner.invoke(probe, ["--metrics-host", "10.0.0.5"]).exit_code == 0
    assert seen == [DEMO_METRICS_HOST, "0.0.0.0", "10.0.0.5"]
    assert DEMO_METRICS_HOST == "127.0.0.1"
    called = argparse.Namespace(metrics_host=None)  # not from the command line
    _local_metrics(called)
    assert called.metrics_host == DEMO_METRICS_HOST
