"""Entry point of the ``imagegate`` command. Each sub-command lives in its own module and is
registered here, so this file stays a table of contents."""

from __future__ import annotations

import typer

from imagegate import __version__
from imagegate.cli.emulator_cmd import emulator as emulator_command

app = typer.Typer(
    name="imagegate",
    help="A reliable, cheap, governed gateway for Azure OpenAI image generation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def root() -> None:
    """A reliable, cheap, governed gateway for Azure OpenAI image generation."""


@app.command()
def version() -> None:
    """Print the imagegate version."""
    typer.echo(__version__)


app.command("emulator")(emulator_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
