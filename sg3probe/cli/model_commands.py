"""Commands about one generator: generate, info, convert, and the model zoo listing."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch

from sg3probe.errors import ConfigError

DEFAULT_MODEL = "toyfaces-aligned"


def _parse_pair(text: str | None, what: str) -> tuple[float, float]:
    if text is None:
        return (0.0, 0.0)
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{what} must be two numbers 'X,Y' (fractions of the image), got {text!r}") from None
    return (x, y)


def _class_labels(c_dim: int, class_idx: int | None, batch: int, device) -> torch.Tensor | None:
    if c_dim == 0:
        if class_idx is not None:
            raise ConfigError("--class was given but the model is unconditional; drop --class")
        return None
    if class_idx is None or not 0 <= class_idx < c_dim:
        raise ConfigError(f"the model is conditional with {c_dim} classes: give --class 0..{c_dim - 1}")
    c = torch.zeros(batch, c_dim, device=device)
    c[:, class_idx] = 1
    return c


@click.command()
@click.option("--model", "model_source", default=DEFAULT_MODEL, show_default=True,
              help="NVIDIA .pkl, sg3probe checkpoint, or zoo name.")
@click.option("--seeds", default="0-7", show_default=True, help="Seeds, e.g. '0-7' or '1,5,9-12'.")
@click.option("--trunc", "truncation_psi", type=float, default=1.0, show_default=True, help="Truncation psi.")
@click.option("--trunc-cutoff", "truncation_cutoff", type=int, default=None, help="Truncate only the first N ws rows.")
@click.option("--class", "class_idx", type=int, default=None, help="Class index for conditional models.")
@click.option("--rotate", type=float, default=0.0, show_default=True, help="Rotation in degrees (user transform).")
@click.option("--translate", default=None, help="Translation 'TX,TY' in fractions of the image.")
@click.option("--outdir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--save-latents", is_flag=True, help="Also write z, ws and styles per seed as .npz.")
@click.option("--device", default=None, help="cpu, cuda, mps (default: best available).")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=16, show_default=True)
def generate(model_source, seeds, truncation_psi, truncation_cutoff, class_idx, rotate, translate, outdir,
             save_latents, device, batch_size):
    """Render one PNG per seed (seedNNNN.png), as NVIDIA's gen_images.py does."""
    from sg3probe.checkpoints import load_model
    from sg3probe.models.transforms import inverse_transform
    from sg3probe.sampling.latents import z_from_seeds
    from sg3probe.store.seeds import parse_seeds
    from sg3probe.imaging import save_png

    seed_list = parse_seeds(seeds)
    model = load_model(model_source, device)
    G = model.generator
    transform = inverse_transform(_parse_pair(translate, "--translate"), rotate)
    outdir.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        for start in range(0, len(seed_list), batch_size):
            chunk = seed_list[start:start + batch_size]
            z = z_from_seeds(chunk, G.z_dim, G.device)
            c = _class_labels(G.c_dim, class_idx, len(chunk), G.device)
            ws = G.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
            images = G.synthesis(ws, transform=transform)
            save_png(images, [outdir / f"seed{seed:04d}.png" for seed in chunk])
            if save_latents:
                styles = G.styles(ws)
                for row, seed in enumerate(chunk):
                    np.savez(outdir / f"seed{seed:04d}.npz", z=z[row].cpu().numpy(), ws=ws[row].cpu().numpy(),
                             transform=transform.numpy(),
                             **{f"styles/{name}": s[row].cpu().numpy() for name, s in styles.items()})
    click.echo(f"wrote {len(seed_list)} image(s) to {outdir}")


@click.command()
@click.argument("model_source", default=DEFAULT_MODEL)
def info(model_source):
    """Print a model's configuration and the layout of its StyleSpace S."""
    from sg3probe.checkpoints import load_model
    from sg3probe.models.architecture import describe_styles

    model = load_model(model_source, "cpu")
    G = model.generator
    click.echo(f"model      {model.source}")
    click.echo(f"file       {model.path} ({model.format})")
    click.echo(f"sha256     {model.sha256}")
    click.echo(f"config     {G.config.config_name}, {G.img_resolution}x{G.img_resolution}x{G.img_channels}, "
               f"z_dim {G.z_dim}, w_dim {G.w_dim}, c_dim {G.c_dim}, num_ws {G.num_ws}, "
               f"{sum(p.numel() for p in G.parameters()):,} parameters")
    for key, value in G.config.to_dict().items():
        click.echo(f"  {key:22s} {value}")
    click.echo("")
    click.echo(f"{'S entry':12s} {'ws row':>6s} {'size':>5s} {'out ch':>6s} {'S dims':>7s}")
    total = total_no_rgb = 0
    for row in describe_styles(G.architecture):
        flag = "  (ToRGB)" if row["torgb"] else ("  (geometry)" if row["name"] == "input" else "")
        click.echo(f"{row['name']:12s} {row['ws_index']:6d} {row['resolution']:5d} {row['channels']:6d} {row['s_dims']:7d}{flag}")
        total += row["s_dims"]
        if not row["torgb"] and row["name"] != "input":
            total_no_rgb += row["s_dims"]
    click.echo(f"S total: {total} dims; without 'input': {total - 4}; without 'input' and ToRGB: {total_no_rgb}")


@click.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("destination", type=click.Path(dir_okay=False, path_type=Path))
def convert(source, destination):
    """Convert an NVIDIA .pkl into an sg3probe checkpoint (loads without executing code)."""
    from sg3probe.checkpoints import load_model, save_generator

    model = load_model(source, "cpu")
    save_generator(model.generator, destination, metadata={"converted_from": str(source), "source_sha256": model.sha256})
    click.echo(f"wrote {destination} ({model.generator.config.config_name}, from {model.format})")


@click.command()
def models():
    """List the model zoo: name, kind, resolution, S size, file, sha256, description."""
    from sg3probe.plugin_manager import get_plugin_manager

    entries = get_plugin_manager().get_models()
    if not entries:
        click.echo("the zoo is empty: no installed plugin registers a model")
        return
    from sg3probe.checkpoints import load_generator
    from sg3probe.models.architecture import describe_styles

    click.echo(f"{'name':22s} {'kind':12s} {'res':>5s} {'S dims':>7s}  file")
    for name in sorted(entries):
        entry = entries[name]
        if Path(entry.path).exists():
            rows = describe_styles(load_generator(entry.path, "cpu").architecture)
            s_dims = str(sum(row["s_dims"] for row in rows))
        else:
            s_dims = "?"  # listed all the same: loading it gives the one-line reason
        click.echo(f"{entry.name:22s} {entry.kind:12s} {entry.resolution:5d} {s_dims:>7s}  {entry.path}")
        click.echo(f"{'':22s} sha256 {entry.sha256}")
        if entry.description:
            click.echo(f"{'':22s} {entry.description}")


COMMANDS = [generate, info, convert, models]
