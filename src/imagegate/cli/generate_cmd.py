"""``imagegate generate PROMPT -o out.png``: one library call, a spinner, a short report."""

from __future__ import annotations

from pathlib import Path

import typer

from imagegate.cli.report import report
from imagegate.cli.running import config_option, fail_on_errors, open_gate, run_waiting
from imagegate.types import ImageResult


def generate(
    prompt: str = typer.Argument(..., help="What to draw."),
    output: Path = typer.Option(
        Path("out.png"), "--output", "-o", help="File to write (out-1.png, out-2.png... for --n > 1)."
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Logical model, deployment or catalog model (see `imagegate models`)."
    ),
    size: str | None = typer.Option(
        None, help="WIDTHxHEIGHT or auto (the model's sizes: `imagegate models`)."
    ),
    quality: str | None = typer.Option(
        None, help="low, medium, high, auto (or standard/hd for per-image models)."
    ),
    n: int = typer.Option(1, "--n", "-n", help="How many images."),
    output_format: str | None = typer.Option(None, "--format", help="png, jpeg or webp."),
    compression: int | None = typer.Option(None, help="0-100 for jpeg/webp."),
    background: str | None = typer.Option(None, help="transparent, opaque or auto."),
    style: str | None = typer.Option(None, help="vivid or natural (models that take a style)."),
    translate: bool = typer.Option(
        False, "--translate", help="Map parameters meant for another model to the nearest ones."
    ),
    fallback: str = typer.Option(
        "any", "--fallback", help="any (configured fallback models), same-model, or none."
    ),
    deadline: float | None = typer.Option(
        None, "--deadline", help="Seconds the whole request may take (default: retry.deadline_s)."
    ),
    degrade: bool = typer.Option(
        False, "--degrade", help="Allow a lower quality when the deadline is too short for the one asked."
    ),
    config: Path | None = config_option,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout (for scripts)."),
) -> None:
    """Generate images and save them."""
    with fail_on_errors():
        gate = open_gate(config)

        async def call() -> ImageResult:
            async with gate:
                return await gate.generate(
                    prompt,
                    model=model,
                    n=n,
                    size=size,
                    quality=quality,
                    output_format=output_format,
                    output_compression=compression,
                    background=background,
                    style=style,
                    translate=translate,
                    fallback=fallback,
                    deadline_s=deadline,
                    degrade=degrade,
                )

        result = run_waiting("generating", call, quiet=as_json)
        files = result.save(_with_suffix(output, result))
        report(result, files, as_json=as_json)


def _with_suffix(output: Path, result: ImageResult) -> Path:
    """Keep the user's file name; add the format's extension only when there is none."""
    fmt = result.images[0].format if result.images else None
    if output.suffix or fmt is None:
        return output
    return output.with_suffix("." + ("jpg" if fmt == "jpeg" else fmt))
