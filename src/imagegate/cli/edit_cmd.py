"""``imagegate edit --image A [--image B] [--mask M] PROMPT -o out.png``."""

from __future__ import annotations

from pathlib import Path

import typer

from imagegate.cli.report import report
from imagegate.cli.running import config_option, fail_on_errors, open_gate, run_waiting
from imagegate.types import ImageResult


def edit(
    prompt: str = typer.Argument(..., help="What to change."),
    image: list[Path] = typer.Option(
        ..., "--image", "-i", help="Input image (repeat for several; the mask applies to the first)."
    ),
    mask: Path | None = typer.Option(
        None, "--mask", help="PNG with alpha, the first image's size: transparent pixels are edited."
    ),
    output: Path = typer.Option(
        Path("out.png"), "--output", "-o", help="File to write (out-1.png... for --n > 1)."
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Logical model, deployment or catalog model."
    ),
    size: str | None = typer.Option(None, help="Output size, or auto."),
    quality: str | None = typer.Option(None, help="low, medium, high or auto."),
    n: int = typer.Option(1, "--n", "-n", help="How many images."),
    input_fidelity: str | None = typer.Option(
        None, help="low or high: how closely to keep the input's details."
    ),
    output_format: str | None = typer.Option(None, "--format", help="png, jpeg or webp."),
    config: Path | None = config_option,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout (for scripts)."),
) -> None:
    """Edit images (optionally only inside a mask) and save the result."""
    with fail_on_errors():
        gate = open_gate(config)

        async def call() -> ImageResult:
            async with gate:
                return await gate.edit(
                    list(image),
                    prompt,
                    mask=mask,
                    model=model,
                    n=n,
                    size=size,
                    quality=quality,
                    input_fidelity=input_fidelity,
                    output_format=output_format,
                )

        result = run_waiting("editing", call, quiet=as_json)
        report(result, result.save(output), as_json=as_json)
