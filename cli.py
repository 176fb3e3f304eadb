"""Command line (click): run, attach, collector, aggregator, keygen, version."""
from __future__ import annotations

import click

from s3slower import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-v", "--version", prog_name="s3slower")
def cli() -> None:
    """eBPF tracer of S3 request latency as the client sees it."""


@cli.command()
def version() -> None:
    """Print version information."""
    click.echo(f"s3slower {__version__}")


def main() -> None:
    cli()
