"""`sg3probe toy ...`: the embedded toy world (render, train, evaluate)."""
from __future__ import annotations

from pathlib import Path

import click


@click.group()
def toy() -> None:
    """The embedded toy world: procedural faces, and the models and scorers trained on them."""


@toy.command()
@click.option("--n", "count", type=click.IntRange(min=1, max=4096), default=64, show_default=True,
              help="Number of faces in the grid.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the face sampling.")
@click.option("--unaligned", is_flag=True, help="Rotate (+-30 deg) and translate (+-12 %) the faces.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default="toyfaces.png",
              show_default=True, help="PNG file for the image grid.")
@click.option("--masks", "write_masks", is_flag=True,
              help="Also write the colour-coded region masks to <out>-masks.png.")
@click.option("--scale", type=click.IntRange(min=1, max=16), default=1, show_default=True,
              help="Enlarge each pixel this many times (nearest neighbour).")
def render(count: int, seed: int, unaligned: bool, out: Path, write_masks: bool, scale: int) -> None:
    """Render a grid of toy faces (and optionally their part masks) to a PNG file."""
    # Imported here so that listing the commands does not import torch.
    from sg3probe.imaging import image_grid
    from sg3probe.toyworld.grid import mask_grid
    from sg3probe.toyworld.render import render as render_faces
    from sg3probe.toyworld.render import sample_params

    output = render_faces(sample_params(seed, count, aligned=not unaligned))
    out.parent.mkdir(parents=True, exist_ok=True)
    _enlarge(image_grid(output.images), scale).save(out)
    click.echo(f"wrote {count} faces to {out}")
    if write_masks:
        masks_path = out.with_name(f"{out.stem}-masks.png")
        _enlarge(mask_grid(output.masks), scale).save(masks_path)
        click.echo(f"wrote their region masks to {masks_path}")


def _enlarge(picture, scale: int):
    """The PIL picture with each pixel repeated `scale` times in both directions."""
    from PIL import Image

    if scale == 1:
        return picture
    return picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
