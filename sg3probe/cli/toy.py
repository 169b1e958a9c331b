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


@toy.command("train-scorers")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for scorers.pt (the shipped file is plugins/sg3probe_toyworld/weights/scorers.pt).")
@click.option("--steps", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Training steps of 32 fresh renders each (about 0.5 s per step on one CPU core).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of faces, augmentations and weights.")
@click.option("--held-out", "held_out", type=click.IntRange(min=10), default=1000, show_default=True,
              help="Held-out renders on which the gates are measured after training.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="torch CPU threads.")
def train_scorers(out_dir: Path, steps: int, seed: int, held_out: int, threads: int) -> None:
    """Train the toy scorer net (attributes, part masks, pose) on renders and measure its gates."""
    from sg3probe.toyworld import scorer_training

    _train_and_check(scorer_training, out_dir, steps, seed, held_out, threads)


def _train_and_check(module, out_dir: Path, steps: int, seed: int, held_out: int, threads: int,
                     gates: str = "gates") -> None:
    """Train a shipped toy network with `module.train_and_save`, print its held-out figures, and
    exit non-zero when a gate fails."""
    import json

    import torch

    torch.set_num_threads(threads)
    path, figures = module.train_and_save(out_dir, module.TrainingConfig(steps=steps, seed=seed),
                                          n_held_out=held_out, log=click.echo)
    click.echo(json.dumps(figures, indent=1))
    click.echo(f"wrote {path}")
    failed = [name for name, passed in figures["passed"].items() if not passed]
    if failed:
        raise click.ClickException(f"held-out {gates} failed: {', '.join(failed)}; train longer (--steps)")


@toy.command("train-textimage")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for toyclip.pt (the shipped file is plugins/sg3probe_toyworld/weights/toyclip.pt).")
@click.option("--steps", type=click.IntRange(min=1), default=1200, show_default=True,
              help="Training steps of 64 fresh captioned renders each (about 0.7 s per step on one CPU core).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of faces, captions, augmentations and weights.")
@click.option("--held-out", "held_out", type=click.IntRange(min=20), default=1000, show_default=True,
              help="Held-out renders on which the retrieval gate is measured after training.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="torch CPU threads.")
def train_textimage(out_dir: Path, steps: int, seed: int, held_out: int, threads: int) -> None:
    """Train the toy text-image model (toyclip) on captioned renders and measure its retrieval gate."""
    from sg3probe.toyworld import textimage

    _train_and_check(textimage, out_dir, steps, seed, held_out, threads, gates="gate")


@toy.command("evaluate")
@click.option("--model", "models", multiple=True, default=("toyfaces-aligned", "toyfaces-unaligned"),
              show_default=True, help="Zoo name or checkpoint (repeatable); a name with 'unaligned' "
                                      "in it is compared with the unaligned renderer.")
@click.option("--n", "count", type=click.IntRange(min=10), default=2000, show_default=True,
              help="Generated samples per model.")
@click.option("--seed", type=int, default=0, show_default=True, help="First sampling seed.")
@click.option("--unaligned", "unaligned_flags", multiple=True,
              help="Treat this --model as unaligned whatever its name (repeatable).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              default="toyworld-gates.json", show_default=True, help="Where to write the measured gate values (JSON).")
@click.option("--device", default="cpu", show_default=True, help="torch device.")
def evaluate(models: tuple[str, ...], count: int, seed: int, unaligned_flags: tuple[str, ...],
             json_path: Path, device: str) -> None:
    """Measure the toy generators' gates (docs/toyworld.md) on generated samples with the toy scorers."""
    import json

    from sg3probe.checkpoints import load_model
    from sg3probe.plugin_manager import get_plugin_manager
    from sg3probe.toyworld.evaluation import evaluate_generator, format_gates, gates_to_json, render_fidelity
    from sg3probe.toyworld.latents import noise_matrix_from_metadata

    scorer = get_plugin_manager().get_scorer("toyfaces")(device=device)
    results, all_passed = {}, True
    for source in models:
        model = load_model(source, device)
        aligned = "unaligned" not in source and source not in unaligned_flags
        try:
            matrix = noise_matrix_from_metadata(model.metadata)
        except ValueError:
            matrix = None
            click.echo(f"{source}: no toy-world ground truth in its metadata; regions are compared "
                       "with the renderer's frequencies")
        gates = evaluate_generator(model.generator, scorer, aligned=aligned, n=count, seed=seed,
                                   noise_matrix=matrix)
        click.echo(format_gates(f"{source} ({'aligned' if aligned else 'unaligned'}, n={count}, "
                                f"sha256 {model.sha256[:12]})", gates))
        results[source] = {"aligned": aligned, "n": count, "seed": seed, "sha256": model.sha256,
                           "regions_from_ground_truth": matrix is not None,
                           **gates_to_json(gates)}
        if matrix is not None:
            fidelity = render_fidelity(model.generator, aligned, matrix, n=count, seed=seed)
            click.echo("  not a gate: mean |generated - render of z| per region (0-1 units): " +
                       ", ".join(f"{name} {value:.3f}" for name, value in fidelity.items()))
            results[source]["render_fidelity"] = fidelity
        all_passed &= results[source]["passed"]
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    click.echo(f"wrote {json_path}")
    if not all_passed:
        raise click.ClickException("some gates failed (see FAIL above)")


@toy.command()
@click.option("--variant", type=click.Choice(["aligned", "unaligned"]), required=True,
              help="aligned: upright, centred faces; unaligned: rotated +-30 deg, moved +-12 %.")
@click.option("--steps", type=click.IntRange(min=1), required=True,
              help="Train until this many steps in total (a resumed run counts its earlier steps).")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True, help="Images per step.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the resumable training state (state.pt) and history.tsv.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the generator (G_ema) at each checkpoint [default: <workdir>/generator.pt].")
@click.option("--resume", is_flag=True, help="Continue from <workdir>/state.pt if it exists.")
@click.option("--init-from", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Start a fresh run from these generator weights (same config), e.g. unaligned from aligned.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the weights and latents.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch CPU threads [default: torch's choice].")
@click.option("--checkpoint-minutes", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Write state and weights this often (and at the end, and on SIGTERM / Ctrl-C).")
@click.option("--device", default=None, help="torch device [default: cuda if available, else cpu].")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Learning rate from this step on (e.g. lower it when resuming); default: keep the current one.")
@click.option("--mapping-lr-scale", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Extra factor on the mapping network's learning rate (its equalised-lr multiplier stays 0.01).")
@click.option("--part-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Weight of an extra L1 inside the small parts (eyes, brows, mouth, glasses), a mean over their pixels.")
@click.option("--channel-base", type=click.IntRange(min=1), default=None,
              help="Generator width: a layer whose cutoff frequency is f gets min(channel_base / (2 f), channel_max) "
                   "channels, as in NVIDIA's code [default: 512, the shipped models'].")
@click.option("--channel-max", type=click.IntRange(min=1), default=None,
              help="The most channels of any layer [default: 64, the shipped models'].")
def train(variant: str, steps: int, batch: int, workdir: Path, out: Path | None, resume: bool,
          init_from: Path | None, seed: int, threads: int | None, checkpoint_minutes: float,
          device: str | None, lr: float | None, mapping_lr_scale: float, part_weight: float,
          channel_base: int | None, channel_max: int | None) -> None:
    """Train a toy StyleGAN3-T generator to map latents to renders of their faces (supervised)."""
    import signal

    import torch

    from sg3probe.toyworld.training import TrainingConfig, TrainingStateError
    from sg3probe.toyworld.training import train as run_training

    if threads is not None:
        torch.set_num_threads(threads)
    stop_requested = []

    def request_stop(signum, frame) -> None:  # finish the step, checkpoint, exit
        stop_requested.append(signum)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        width = {k: v for k, v in (("channel_base", channel_base), ("channel_max", channel_max)) if v is not None}
        config = TrainingConfig(variant=variant, seed=seed, batch=batch, mapping_lr_scale=mapping_lr_scale,
                                part_weight=part_weight, **width)
        result = run_training(config, workdir, steps,
                              out=out, resume=resume, init_from=init_from, device=device,
                              checkpoint_seconds=checkpoint_minutes * 60, should_stop=lambda: bool(stop_requested),
                              lr=lr)
    except TrainingStateError as error:
        raise click.ClickException(str(error)) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo(f"{variant}: step {result.step}, {result.images_seen} images, loss {result.loss:.4f}; "
               f"weights {result.weights_path}, state {result.state_path}")
