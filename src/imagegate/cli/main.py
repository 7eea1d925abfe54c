"""Entry point of the ``imagegate`` command. Each sub-command lives in its own module and is
registered here, so this file stays a table of contents."""

from __future__ import annotations

import typer

from imagegate import __version__
from imagegate.cli.audit_cmd import app as audit_app
from imagegate.cli.costs_cmd import costs as costs_command
from imagegate.cli.db_cmd import app as db_app
from imagegate.cli.doctor_cmd import doctor as doctor_command
from imagegate.cli.edit_cmd import edit as edit_command
from imagegate.cli.emulator_cmd import emulator as emulator_command
from imagegate.cli.generate_cmd import generate as generate_command
from imagegate.cli.keys_cmd import app as keys_app
from imagegate.cli.models_cmd import models as models_command
from imagegate.cli.price_cmd import price as price_command
from imagegate.cli.serve_cmd import serve as serve_command

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
app.command("generate")(generate_command)
app.command("edit")(edit_command)
app.command("models")(models_command)
app.command("price")(price_command)
app.command("doctor")(doctor_command)
app.add_typer(keys_app, name="keys")
app.command("costs")(costs_command)
app.add_typer(audit_app, name="audit")
app.add_typer(db_app, name="db")
app.command("serve")(serve_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
