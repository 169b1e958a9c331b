"""`sg3probe edit`: move latents along a direction file and write the images and the edited latents.

With --text (instead of a direction file) the direction is a StyleCLIP global direction in S, computed
for the text against --neutral with the text-image model --text-model (the channel directions are
cached, so only the first edit of a model pays for them) and saved as direction.npy/.json in --outdir;
the strengths are --alpha values (s' = s + alpha * delta_s), by default 0 and the alpha calibrated on
--calibration-seeds (sg3probe_styleclip.strength), recorded in direction.json.

With --mapper (a StyleCLIP latent mapper checkpoint, mapper.pt from `sg3probe run styleclip`) the
edit is the mapper's: w_hat = w + strength * 0.1 * M(w), strength 1 being the trained edit; by
default the strengths are 0 and 1.

Sources: seeds (through the mapping), latent files from `sg3probe generate --save-latents` (or an
earlier `edit`), or rows of a sample store. Outputs in --outdir:

    grid.png              rows: sources, columns: strengths
    images/<source>_<strength>.png
    edit.gif              with --gif: one frame per strength, there and back
    edit.mp4              with --mp4: the same frames as an H.264 video (needs PyAV)
    latents.npz           ws [B, num_ws, w_dim] (and styles/<layer> for S edits), transform [B, 3, 3],
                          strength, raw_strength, source, seed: `render_latents` re-renders them
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import torch

from sg3probe.cli.model_commands import DEFAULT_MODEL, _parse_pair
from sg3probe.config import parse_options
from sg3probe.errors import ConfigError


@dataclass
class Sources:
    """The latents to edit: ws [B, num_ws, w_dim], transforms [B, 3, 3], names and seeds."""

    ws: torch.Tensor
    transforms: torch.Tensor
    names: list[str]
    seeds: np.ndarray  # [B] int64, -1 where unknown


def _from_seeds(G, text: str, psi: float, cutoff: int | None) -> Sources:
    from sg3probe.sampling.latents import z_from_seeds
    from sg3probe.store.seeds import parse_seeds

    seeds = parse_seeds(text)
    with torch.no_grad():
        ws = G.mapping(z_from_seeds(seeds, G.z_dim, G.device), None, truncation_psi=psi, truncation_cutoff=cutoff)
    return Sources(ws, torch.eye(3).expand(len(seeds), 3, 3).clone(), [f"seed{s:04d}" for s in seeds],
                   np.asarray(seeds, dtype=np.int64))


def _latent_files(paths: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        files += sorted(path.glob("*.npz")) if path.is_dir() else [path]
    if not files:
        raise ConfigError(f"no .npz latent files in {', '.join(map(str, paths))}")
    return files


def _from_latents(G, paths: tuple[Path, ...]) -> Sources:
    ws_parts, transforms, names, seeds = [], [], [], []
    for path in _latent_files(paths):
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ConfigError(f"{path} is not a latents .npz ({error})") from None
        if "ws" not in data:
            raise ConfigError(f"{path} has no 'ws' array; give files from `sg3probe generate --save-latents` "
                              "or `sg3probe edit`")
        if "render_from" in data and str(data["render_from"]) == "styles":
            raise ConfigError(f"{path} holds StyleSpace edits: their images come from its styles, not its ws, so "
                              "--latents cannot edit them further; edit its source seeds (its 'seed' array) instead")
        ws = data["ws"].reshape(-1, *data["ws"].shape[-2:])  # [b, num_ws, w_dim]
        if ws.shape[1:] != (G.num_ws, G.w_dim):
            raise ConfigError(f"{path}: ws of shape {list(ws.shape[1:])} do not fit this model "
                              f"([{G.num_ws}, {G.w_dim}])")
        transform = data["transform"] if "transform" in data else np.eye(3)
        transforms.append(np.broadcast_to(transform.reshape(-1, 3, 3), (len(ws), 3, 3)))
        ws_parts.append(ws)
        stems = [str(s) for s in data["source"]] if "source" in data and len(data["source"]) == len(ws) else \
            [path.stem] if len(ws) == 1 else [f"{path.stem}_{i}" for i in range(len(ws))]
        names += [f"{stem}_{i}" if stems.count(stem) > 1 else stem for i, stem in enumerate(stems)]
        seeds += list(np.broadcast_to(data["seed"], len(ws))) if "seed" in data else [-1] * len(ws)
    return Sources(torch.as_tensor(np.concatenate(ws_parts), dtype=torch.float32, device=G.device),
                   torch.as_tensor(np.concatenate(transforms), dtype=torch.float32), names,
                   np.asarray(seeds, dtype=np.int64))


def _from_store(G, folder: Path, seeds_text: str | None, model_sha256: str) -> Sources:
    from sg3probe.store import SampleStore
    from sg3probe.store.seeds import parse_seeds

    store = SampleStore.open(folder)
    stored = store.seeds
    seeds = np.asarray(parse_seeds(seeds_text), dtype=np.int64) if seeds_text else stored[:8]
    rows = np.searchsorted(stored, seeds)
    missing = [int(s) for s, r in zip(seeds, rows) if r >= len(stored) or stored[r] != s]
    if missing:
        raise ConfigError(f"the store {folder} has no seed(s) {missing[:5]}; it holds {len(stored)} seeds "
                          f"from {stored[0]} to {stored[-1]}")
    sha = store.metadata.get("model_sha256", "")
    if sha and model_sha256 and sha != model_sha256:
        click.echo(f"warning: the store was sampled from model sha256 {sha[:12]}, not the --model given "
                   f"({model_sha256[:12]})", err=True)
    if "wplus" in store.arrays:
        ws = store.read("wplus", rows)
    elif "w" in store.arrays:
        if store.metadata.get("sampling", {}).get("truncation_cutoff") is not None:
            raise ConfigError(f"the store {folder} was sampled with a truncation cutoff but holds no 'wplus'; "
                              "its ws rows differ and cannot be rebuilt from 'w': sample it with --spaces w,wplus")
        ws = np.repeat(store.read("w", rows)[:, None], G.num_ws, axis=1)
    else:
        raise ConfigError(f"the store {folder} holds neither 'wplus' nor 'w'; sample it with --spaces w")
    return Sources(torch.as_tensor(ws, dtype=torch.float32, device=G.device),
                   torch.as_tensor(store.read("transform", rows), dtype=torch.float32),
                   [f"seed{int(s):04d}" for s in seeds], seeds)


def render_latents(G, path: str | Path) -> torch.Tensor:
    """Re-render a latents.npz written by `sg3probe edit`: images [B, C, H, W]."""
    data = np.load(path, allow_pickle=False)
    transform = torch.as_tensor(data["transform"], dtype=torch.float32, device=G.device)
    layers = [key[len("styles/"):] for key in data.files if key.startswith("styles/")]
    with torch.no_grad():
        if str(data["render_from"]) == "styles":
            styles = {name: torch.as_tensor(data[f"styles/{name}"], device=G.device) for name in layers}
            return G.synthesis(styles=styles, transform=transform)
        return G.synthesis(torch.as_tensor(data["ws"], device=G.device), transform=transform)


def _text_direction(G, model, text, neutral, beta, text_model, text_model_options, probe_seeds, cache_dir,
                    plugins_dir):
    """The StyleCLIP global direction of `text` for this model (cached channel directions) and the
    text-image model it was found with."""
    import sys

    from tqdm.auto import tqdm

    from sg3probe.plugin_manager import get_plugin_manager

    try:
        from sg3probe_styleclip.analyzer import load_text_model
        from sg3probe_styleclip.global_directions import ProbeSettings, text_edit_direction
    except ImportError as error:
        raise ConfigError(f"--text needs the styleclip plugin (sg3probe_styleclip), which did not import: "
                          f"{error}") from None
    if plugins_dir:
        get_plugin_manager(plugins_dir)
    clip = load_text_model(text_model, str(G.device), text_model_options)

    def progress(iterable=None, **kwargs):
        return tqdm(iterable, file=sys.stderr, disable=not sys.stderr.isatty(), **kwargs)

    loaded = text_edit_direction(G, clip, text, neutral, beta=beta, settings=ProbeSettings(probe_seeds=probe_seeds),
                                 cache_dir=cache_dir, model_sha256=model.sha256, progress=progress)
    click.echo(f"global direction for {text!r} against {neutral!r}: {loaded.metadata['channels']} S channels "
               f"(beta {loaded.metadata['beta']:g}); channel directions cached in {loaded.metadata['cache']}",
               err=True)
    return loaded, clip


def _calibrated_alpha(G, clip, loaded, text, seeds_text, psi, cutoff, sigmas, batch_size):
    """The alpha at which the edit raises the similarity to `text` of the calibration seeds by `sigmas`
    natural stds (sg3probe_styleclip.strength), recorded in the direction's metadata."""
    from sg3probe_styleclip.global_directions import prompt_embedding
    from sg3probe_styleclip.strength import calibrate_alpha

    ws = _from_seeds(G, seeds_text, psi, cutoff).ws
    level = {} if sigmas is None else {"sigmas": sigmas}
    found = calibrate_alpha(G, clip, loaded.vector, prompt_embedding(clip, text, loaded.metadata["templates"]), ws,
                            batch_size=batch_size, **level)
    loaded.metadata["alpha_calibration"] = {**found.to_json(), "seeds": seeds_text, "truncation_psi": psi}
    click.echo(f"calibrated on seeds {seeds_text}: {found.describe()}", err=True)
    return found.alpha


def _load_mapper(path: Path, G, model):
    """The mapper of a checkpoint, checked against G; a warning when it was trained on another model."""
    try:
        from sg3probe_styleclip.global_directions import generator_identity
        from sg3probe_styleclip.mapper import load_mapper
    except ImportError as error:
        raise ConfigError(f"--mapper needs the styleclip plugin (sg3probe_styleclip), which did not import: "
                          f"{error}") from None
    mapper, payload = load_mapper(path, G.device)
    if (mapper.num_ws, mapper.w_dim) != (G.num_ws, G.w_dim):
        raise ConfigError(f"the mapper {path} edits ws of shape [{mapper.num_ws}, {mapper.w_dim}], but this model's "
                          f"are [{G.num_ws}, {G.w_dim}]; give the model it was trained on (--model)")
    meta = payload.get("meta", {})
    trained_on = str(meta.get("model", ""))
    here = generator_identity(G) if trained_on.startswith("state-") else model.sha256
    if trained_on and trained_on != here:
        click.echo(f"warning: the mapper was trained on model {trained_on[:12]}, not on {model.source} "
                   f"({here[:12]})", err=True)
    click.echo(f"mapper for {meta.get('prompt', '?')!r}, {int(payload['step'])} steps, groups "
               f"{', '.join(mapper.config()['groups'])}", err=True)
    return mapper


def _strength_label(value: float) -> str:
    return f"{value:+.2f}".replace(".", "p")


@click.command()
@click.argument("direction", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False)
@click.option("--model", "model_source", default=DEFAULT_MODEL, show_default=True,
              help="NVIDIA .pkl, sg3probe checkpoint, or zoo name.")
@click.option("--seeds", default=None, help="Seeds to edit (with a store: which of its seeds; default its first 8).")
@click.option("--latents", "latent_paths", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Latent .npz files or folders (from `generate --save-latents`, or `edit` in W or W+); repeatable.")
@click.option("--store", "store_path", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A sample store (from `sg3probe sample` or a run's samples/<role>).")
@click.option("--strength", "strength_text", default=None,
              help="start:stop:count (both ends included) or a comma list; sigmas unless --raw "
                   "[default: -3:3:7; with --mapper 0,1, in multiples of the trained edit].")
@click.option("--raw", is_flag=True, help="Strengths in raw latent units instead of sigmas of the projection.")
@click.option("--layers", default=None, help="ws rows to edit, e.g. 0-7 or 0,3,8-15 (W directions; default all).")
@click.option("--trunc", "truncation_psi", type=float, default=1.0, show_default=True, help="Truncation psi (seeds).")
@click.option("--trunc-cutoff", "truncation_cutoff", type=int, default=None)
@click.option("--rotate", type=float, default=None, help="Rotation in degrees (replaces the sources' transforms).")
@click.option("--translate", default=None, help="Translation 'TX,TY' in fractions of the image.")
@click.option("--outdir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--gif", is_flag=True, help="Also write edit.gif, one frame per strength.")
@click.option("--mp4", is_flag=True, help="Also write edit.mp4, one frame per strength (needs PyAV: pip install av).")
@click.option("--device", default=None, help="cpu, cuda, mps (default: best available).")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--text", default=None,
              help="Edit towards this text (a StyleCLIP global direction) instead of DIRECTION.")
@click.option("--neutral", default="a face", show_default=True, help="With --text: the text it is compared with.")
@click.option("--beta", type=float, default=None,
              help="With --text: channels with |relevance| below this are left alone (default: the text "
                   "model's, toyclip 0.45, CLIP models 0.13).")
@click.option("--alpha", "alpha_text", default=None,
              help="With --text: edit strengths, e.g. 4 or -4:4:5 (replaces --strength; default: 0 and the "
                   "calibrated alpha, at which the similarity to the text of --calibration-seeds rises by "
                   "--alpha-sigmas natural stds).")
@click.option("--alpha-sigmas", type=float, default=None,
              help="With --text and no --alpha: the similarity gain the calibrated alpha reaches, in natural stds "
                   "(default 0.8).")
@click.option("--calibration-seeds", default="1000-1063", show_default=True,
              help="With --text and no --alpha: the seeds alpha is calibrated on (at --trunc).")
@click.option("--text-model", default="toyclip", show_default=True, help="With --text: a text-image scorer.")
@click.option("--text-model-option", "text_model_options", multiple=True, metavar="KEY=VALUE",
              help="With --text: an option of the text-image model, e.g. checkpoint=ViT-B-32.bin (repeatable).")
@click.option("--probe-seeds", default="0-15", show_default=True,
              help="With --text: images each S channel is probed on (part of the cache key).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --text: where channel directions are cached (default ~/.cache/sg3probe).")
@click.option("--plugins-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Also load the plugin files in this folder (e.g. a text-image model).")
@click.option("--mapper", "mapper_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Edit with this StyleCLIP latent mapper (mapper.pt from `sg3probe run styleclip`) instead of "
                   "DIRECTION.")
def edit(direction, model_source, seeds, latent_paths, store_path, strength_text, raw, layers, truncation_psi,
         truncation_cutoff, rotate, translate, outdir, gif, mp4, device, batch_size, text, neutral, beta, alpha_text,
         alpha_sigmas, calibration_seeds, text_model, text_model_options, probe_seeds, cache_dir, plugins_dir,
         mapper_path):
    """Edit latents along DIRECTION (.npy, with its .json sidecar if any), towards --text, or with --mapper, at
    several strengths."""
    from sg3probe.checkpoints import load_model
    from sg3probe.editing import (EditedLatents, apply_direction, check_direction, load_direction, parse_layers,
                                  parse_strengths)
    from sg3probe.imaging import require_video, tile, to_pil, to_uint8, write_gif, write_mp4
    from sg3probe.models.transforms import inverse_transform

    given = [bool(latent_paths), store_path is not None, seeds is not None and store_path is None]
    if sum(given) != 1 or (latent_paths and seeds is not None):
        raise ConfigError("give exactly one source: --seeds, --latents or --store (a store takes --seeds too)")
    if (direction is not None) + (text is not None) + (mapper_path is not None) != 1:
        raise ConfigError("give a DIRECTION file, --text \"...\" or --mapper mapper.pt (exactly one of them)")
    if mapper_path is not None and (raw or layers):
        raise ConfigError("--raw and --layers do not apply to --mapper: its strengths are multiples of the trained "
                          "edit, on the rows of the mapper's groups")
    if mp4:
        require_video()  # before any work, so that a missing PyAV costs nothing
    loaded = mapper = None
    if mapper_path is not None:
        strengths = raw_strengths = parse_strengths(strength_text or "0,1", "--strength")
    elif text is None:
        loaded = load_direction(direction)
        strengths = parse_strengths(strength_text or "-3:3:7", "--strength")
        raw_strengths = loaded.raw_strengths(strengths, raw)
    else:
        if alpha_text is not None:
            parse_strengths(alpha_text, "--alpha")  # a bad --alpha fails before any work
        raw = True  # alpha multiplies delta_s as it is
    model = load_model(model_source, device)
    G = model.generator
    if text is not None:
        from sg3probe_styleclip.global_directions import save_direction

        loaded, clip = _text_direction(G, model, text, neutral, beta, text_model, parse_options(
            text_model_options, "--text-model-option"), probe_seeds, cache_dir, plugins_dir)
        if alpha_text is None:
            alpha = _calibrated_alpha(G, clip, loaded, text, calibration_seeds, truncation_psi, truncation_cutoff,
                                      alpha_sigmas, batch_size)
            strengths = raw_strengths = np.asarray([0.0, alpha])
        else:
            strengths = raw_strengths = parse_strengths(alpha_text, "--alpha")
        direction = save_direction(loaded, outdir / "direction.npy")
    if mapper_path is not None:
        mapper = _load_mapper(mapper_path, G, model)

        def edit_batch(ws, value):
            return EditedLatents(mapper.edit(ws, value))
    else:
        check_direction(loaded, G)
        boundary_sha = loaded.metadata.get("model_sha256", "")
        if boundary_sha and boundary_sha != model.sha256:
            click.echo(f"warning: {direction.name} was found on model sha256 {boundary_sha[:12]}, not on "
                       f"{model.source} ({model.sha256[:12]})", err=True)
        rows = parse_layers(layers, G.num_ws) if layers else None
        if rows and loaded.space != "w":
            raise ConfigError(f"--layers applies to W directions; this one is in {loaded.space!r} and has its own "
                              "rows")

        def edit_batch(ws, value):
            return apply_direction(G, ws, loaded, value, rows)
    if store_path:
        sources = _from_store(G, store_path, seeds, model.sha256)
    elif latent_paths:
        sources = _from_latents(G, latent_paths)
    else:
        sources = _from_seeds(G, seeds, truncation_psi, truncation_cutoff)
    if rotate is not None or translate is not None:
        transform = inverse_transform(_parse_pair(translate, "--translate"), rotate or 0.0)
        sources.transforms = transform.expand(len(sources.names), 3, 3).clone()

    count, steps = len(sources.names), len(strengths)
    (outdir / "images").mkdir(parents=True, exist_ok=True)
    pixels = None
    saved: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for s, value in enumerate(raw_strengths):
            for start in range(0, count, batch_size):
                ws = sources.ws[start:start + batch_size]
                latents = edit_batch(ws, float(value))
                transform = sources.transforms[start:start + batch_size].to(G.device)
                images = to_uint8(latents.render(G, transform))
                if pixels is None:
                    pixels = np.empty((count, steps) + images.shape[1:], np.uint8)
                pixels[start:start + len(ws), s] = images
                saved.setdefault("ws", []).append(latents.ws.cpu().numpy())
                saved.setdefault("transform", []).append(transform.cpu().numpy())
                if latents.styles is not None:
                    for name, style in latents.styles.items():
                        saved.setdefault(f"styles/{name}", []).append(style.cpu().numpy())
    # Images and latents in the same order: source-major, then strength.
    order = np.arange(count * steps).reshape(steps, count).T.reshape(-1)  # saved is strength-major
    arrays = {key: np.concatenate(parts)[order] for key, parts in saved.items()}
    arrays.update(strength=np.tile(strengths, count), raw_strength=np.tile(raw_strengths, count),
                  source=np.repeat(np.asarray(sources.names), steps), seed=np.repeat(sources.seeds, steps),
                  render_from=np.asarray("styles" if loaded is not None and loaded.space == "s" else "ws"))
    np.savez(outdir / "latents.npz", **arrays)
    for i, name in enumerate(sources.names):
        for s, value in enumerate(strengths):
            to_pil(pixels[i, s]).save(outdir / "images" / f"{name}_{_strength_label(value)}.png")
    to_pil(tile(pixels.reshape(-1, *pixels.shape[2:]), columns=steps)).save(outdir / "grid.png")
    if gif or mp4:
        frames = [tile(pixels[:, s], columns=count) for s in range(steps)]
        frames = frames + frames[-2:0:-1]  # there and back
        if gif:
            write_gif(frames, outdir / "edit.gif")
        if mp4:
            write_mp4(frames, outdir / "edit.mp4")
    unit = "alpha" if text is not None else "x the mapper's edit" if mapper is not None else \
        "raw units" if raw else "sigmas"
    click.echo(f"wrote {count} x {steps} edits ({strengths[0]:g} to {strengths[-1]:g} {unit}) to {outdir}")


COMMANDS = [edit]
