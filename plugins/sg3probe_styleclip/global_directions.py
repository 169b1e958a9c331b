"""StyleCLIP global directions in S (Patashnik, Wu et al. 2021; spec: analyses.md section 4).

Preprocessing, once per (generator, text-image model, settings), cached on disk:

1. S statistics mu_c, sigma_c of every style channel, from the mapping of `stats_seeds`;
2. the image direction of every channel, delta_i_c: for each probe image set s_c = mu_c + k sigma_c
   and s_c = mu_c - k sigma_c (every other channel as the image has it), render both, encode them,
   take the unit difference, average over the images and normalise.

A probe never writes into the images' styles: each generator call gets a fresh batch built from
the base styles in which every row changes one channel of one image, in both signs. Channels are
processed in chunks saved as .npy files beside a manifest, so an interrupted preprocessing resumes
with the chunks it has not finished.

Per text edit (cheap): delta_t = normalize(t_target - t_neutral) from template-averaged prompt
embeddings; relevance R_c = delta_i_c . delta_t; channels with |R_c| < beta are zeroed, the rest
divided by max |R| and multiplied by sigma_c: delta_s. The edit is s' = s + alpha * delta_s.
'input' (the Fourier features' rotation and translation) is left out unless asked for; ToRGB
layers are never probed (as in StyleSpace and StyleCLIP).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from sg3probe.editing import Direction
from sg3probe.errors import ConfigError
from sg3probe.sampling.latents import z_from_seeds
from sg3probe.sampling.sampler import style_layout as full_style_layout
from sg3probe.store.seeds import parse_seeds
from sg3probe.style_channels import RunningMoments, StyleLayout, style_layout
from sg3probe.textimage import TextImageScorer

CACHE_FORMAT = 1


@dataclass(frozen=True)
class ProbeSettings:
    """Everything the channel directions delta_i_c depend on besides the two models."""

    probe_seeds: str = "0-15"  # images probed per channel (the paper: 100-300)
    probe_psi: float = 0.7  # truncation of the probe images
    stats_seeds: str = "0-9999"  # samples of the S statistics
    stats_psi: float = 0.7  # truncation of the statistics samples (spec section 2)
    stats_cutoff: int | None = 8
    k: float = 5.0  # s_c = mu_c +- k sigma_c (5 for faces, 10 for other domains)
    include_input: bool = False  # also probe 'input' (rotation and translation of the features)
    channels_per_chunk: int = 64  # channels per resumable cache file

    def check(self) -> None:
        """Raise ConfigError naming a value that cannot work."""
        if self.k <= 0:
            raise ConfigError(f"k must be > 0 (s_c = mu_c +- k sigma_c), got {self.k}")
        if self.channels_per_chunk < 1:
            raise ConfigError(f"channels_per_chunk must be >= 1, got {self.channels_per_chunk}")
        parse_seeds(self.probe_seeds)
        if len(parse_seeds(self.stats_seeds)) < 2:
            raise ConfigError("stats_seeds must name at least 2 seeds (a std needs two samples)")


def default_cache_dir() -> Path:
    """$SG3PROBE_CACHE_DIR, else $XDG_CACHE_HOME/sg3probe, else ~/.cache/sg3probe."""
    if os.environ.get("SG3PROBE_CACHE_DIR"):
        return Path(os.environ["SG3PROBE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sg3probe"


# ----- identities of the two models ---------------------------------------------------------------

def generator_identity(G, sha256: str = "") -> str:
    """The model file's sha256 when known, else a sha256 of the generator's parameters and buffers."""
    if sha256:
        return sha256
    digest = hashlib.sha256()
    for name, tensor in sorted(G.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return "state-" + digest.hexdigest()


def text_model_identity(model: TextImageScorer) -> str:
    """What identifies a text-image model: its `identity()` when that says more than its name (e.g. a
    weights hash), else its name and a fingerprint of what it computes (embeddings of fixed texts
    and a fixed image, rounded), so that retrained weights never reuse a cache."""
    own = model.identity() if callable(getattr(model, "identity", None)) else ""
    if own and own != model.name:
        return own
    size = 64
    ramp = torch.linspace(-1, 1, size)
    image = torch.stack([ramp[None, :].expand(size, size), ramp[:, None].expand(size, size),
                         (ramp[None, :] * ramp[:, None])])[None]  # [1, 3, 64, 64]
    with torch.no_grad():
        texts = model.encode_text(["a face", "a smiling face with glasses"]).float().cpu().numpy()
        images = model.encode_image(image.to(_device_of(model))).float().cpu().numpy()
    digest = hashlib.sha256(np.round(np.concatenate([texts.ravel(), images.ravel()]), 4).tobytes())
    return f"{model.name} fingerprint:{digest.hexdigest()[:32]}"


def _device_of(model) -> torch.device:
    device = getattr(model, "device", "cpu")
    return torch.device(device if isinstance(device, (str, torch.device)) else "cpu")


# ----- statistics and probes ------------------------------------------------------------------------

def flat_styles(G, ws: torch.Tensor) -> torch.Tensor:
    """Flattened S [B, sum of style sizes] of ws [B, num_ws, w_dim], in G.styles order ('input' first)."""
    return torch.cat(list(G.styles(ws).values()), dim=1)


def unflatten_styles(G, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """The inverse of flat_styles: layer name -> [B, channels]."""
    layout = full_style_layout(G)
    return dict(zip(layout, torch.split(flat, list(layout.values()), dim=1)))


def seed_ws(G, seeds: Sequence[int], psi: float, cutoff: int | None, batch_size: int = 256) -> torch.Tensor:
    """ws [N, num_ws, w_dim] of NVIDIA's per-seed z through the mapping."""
    parts = []
    with torch.no_grad():
        for start in range(0, len(seeds), batch_size):
            z = z_from_seeds(seeds[start:start + batch_size], G.z_dim, G.device)
            parts.append(G.mapping(z, None, truncation_psi=psi, truncation_cutoff=cutoff))
    return torch.cat(parts)


def style_statistics_from_seeds(G, seeds: Sequence[int], psi: float, cutoff: int | None,
                                batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std [sum of style sizes] of flattened S over the mapping of `seeds`."""
    moments = RunningMoments()
    with torch.no_grad():
        for start in range(0, len(seeds), batch_size):
            ws = seed_ws(G, seeds[start:start + batch_size], psi, cutoff, batch_size)
            moments.update(flat_styles(G, ws).double().cpu().numpy())
    return moments.mean, moments.std


def full_index(G, layout: StyleLayout) -> np.ndarray:
    """[layout.channels] position of each layout channel in the flattened S of G."""
    full = full_style_layout(G)
    offsets = dict(zip(full, np.concatenate([[0], np.cumsum(list(full.values()))[:-1]])))
    return np.concatenate([offsets[name] + np.arange(size) for name, size in zip(layout.names, layout.sizes)])


def probe_batch(base: torch.Tensor, images: torch.Tensor, positions: torch.Tensor,
                values: torch.Tensor) -> torch.Tensor:
    """Rows of flattened styles: row r is base[images[r]] with position positions[r] set to values[r].

    base [N, S] is only read: every row is a copy, so nothing needs restoring after the probe.
    """
    rows = base[images].clone()  # [R, S]
    rows[torch.arange(len(rows), device=rows.device), positions] = values.to(rows.dtype)
    return rows


def channel_image_directions(G, model: TextImageScorer, base: torch.Tensor, positions: np.ndarray,
                             mean: np.ndarray, std: np.ndarray, k: float, batch_size: int = 32) -> np.ndarray:
    """delta_i_c [len(positions), D] for the flattened-S positions given, over the probe images' styles
    base [N, S]: mean over images of normalize(E(s_c = mu + k sigma) - E(s_c = mu - k sigma)), normalised.

    A channel of layer L changes nothing before L, so each probe is rendered from the probe image's
    features at L's input onwards (computed once per layer), which gives the same images for less.
    """
    count = base.shape[0]
    owners = _owner_layers(G, positions)
    per_call = max(1, batch_size // 2)
    sums: torch.Tensor | None = None
    with torch.no_grad():
        for layer in dict.fromkeys(owners):
            members = [c for c, owner in enumerate(owners) if owner == layer]
            prefix = _layer_input(G, unflatten_styles(G, base), layer)  # [N, ...] or None
            pairs = [(c, i) for c in members for i in range(count)]  # channel-major
            for start in range(0, len(pairs), per_call):
                chunk = pairs[start:start + per_call]
                channel = torch.as_tensor([c for c, _ in chunk])
                image = torch.as_tensor([i for _, i in chunk], device=base.device)
                index = positions[channel.numpy()]
                position = torch.as_tensor(index, device=base.device)
                centre = torch.as_tensor(mean[index], device=base.device)
                spread = torch.as_tensor(std[index], device=base.device)
                rows = torch.cat([probe_batch(base, image, position, centre + k * spread),
                                  probe_batch(base, image, position, centre - k * spread)])
                styles = unflatten_styles(G, rows)
                if prefix is None:
                    images = G.synthesis(styles=styles)
                else:
                    images = _render_from(G, layer, prefix[torch.cat([image, image])], styles)
                embeddings = model.encode_image(images).float().cpu()
                plus, minus = embeddings[:len(chunk)], embeddings[len(chunk):]
                differences = F.normalize(plus - minus, dim=1)  # [b, D]; 0 where the channel changes nothing
                if sums is None:
                    sums = torch.zeros(len(positions), differences.shape[1], dtype=torch.float64)
                sums.index_add_(0, channel, differences.double())
    return F.normalize(sums, dim=1).numpy().astype(np.float32)


def _owner_layers(G, positions: np.ndarray) -> list[str]:
    """The S entry ('input' or a layer name) each flattened-S position belongs to."""
    layout = full_style_layout(G)
    ends = np.cumsum(list(layout.values()))
    names = list(layout)
    return [names[int(np.searchsorted(ends, p, side="right"))] for p in positions]


def _layer_input(G, styles: dict[str, torch.Tensor], layer: str) -> torch.Tensor | None:
    """The features entering synthesis layer `layer` for these styles; None for 'input', or for a
    generator whose synthesis network does not expose its layers (then probes render in full)."""
    net = G.synthesis
    names = getattr(net, "layer_names", None)
    if layer == "input" or names is None:
        return None
    t = styles["input"]
    x = net.input(t, torch.eye(3, dtype=t.dtype, device=t.device).expand(len(t), 3, 3))
    for name in names[:names.index(layer)]:
        x = getattr(net, name)(x, styles[name])
    return x


def _render_from(G, layer: str, x: torch.Tensor, styles: dict[str, torch.Tensor]) -> torch.Tensor:
    """Images from the features x entering `layer` onwards (the rest of G.synthesis)."""
    net = G.synthesis
    for name in net.layer_names[net.layer_names.index(layer):]:
        x = getattr(net, name)(x, styles[name])
    return x * net.output_scale


# ----- the cache ----------------------------------------------------------------------------------

@dataclass
class ChannelDirections:
    """delta_i_c of every probed channel, with the statistics and where each channel sits in S."""

    layout: StyleLayout  # the probed layers (no ToRGB; 'input' only when asked for)
    directions: np.ndarray  # [C, D] unit image-space directions (zero rows: channels without effect)
    mean: np.ndarray  # [C] mu_c
    std: np.ndarray  # [C] sigma_c
    positions: np.ndarray  # [C] index of each channel in flattened S
    style_size: int  # length of flattened S (ToRGB and 'input' included)
    folder: Path | None = None
    computed_chunks: int = 0  # chunks computed by this call (the rest came from the cache)

    def relevance(self, text_direction: np.ndarray) -> np.ndarray:
        """R_c = delta_i_c . delta_t, [C]."""
        return self.directions.astype(np.float64) @ np.asarray(text_direction, dtype=np.float64)

    def style_direction(self, text_direction: np.ndarray, beta: float, *, attribute: str = "",
                        metadata: dict | None = None) -> Direction:
        """delta_s over flattened S as an "s" Direction (strength = alpha, in raw units)."""
        values = style_step(self.relevance(text_direction), self.std, beta)
        vector = np.zeros(self.style_size)
        vector[self.positions] = values
        return Direction(vector, space="s", attribute=attribute,
                         metadata={"space": "s", "beta": beta, "channels": int(np.count_nonzero(values)),
                                   **(metadata or {})})


def style_step(relevance: np.ndarray, std: np.ndarray, beta: float) -> np.ndarray:
    """delta_s [C]: R with |R| < beta zeroed, divided by max |R|, times sigma_c (zero if none is kept)."""
    relevance = np.asarray(relevance, dtype=np.float64)
    kept = np.where(np.abs(relevance) >= beta, relevance, 0.0)
    top = np.abs(kept).max(initial=0.0)
    if top == 0:
        return np.zeros_like(kept)
    return kept / top * np.asarray(std, dtype=np.float64)


def cache_folder(root: Path, model_id: str, text_id: str, settings: ProbeSettings) -> Path:
    """The cache folder of one (generator, text model, settings): a readable prefix and a hash."""
    key = json.dumps({"model": model_id, "text_model": text_id, "settings": asdict(settings),
                      "format": CACHE_FORMAT}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    model_part = model_id.removeprefix("state-")[:12]
    text_part = "".join(ch if ch.isalnum() else "-" for ch in text_id.split(" ")[0])[:24]
    return Path(root) / "styleclip" / "global-directions" / f"{model_part}-{text_part}-{digest}"


def _save_atomic(path: Path, array: np.ndarray) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        np.save(handle, array)
    os.replace(temporary, path)


def _chunk_path(folder: Path, start: int, stop: int) -> Path:
    return folder / f"channels_{start:06d}_{stop:06d}.npy"


def _check_manifest(folder: Path, manifest: dict) -> None:
    """Write the cache's manifest, or check that the one there describes the same computation."""
    path = folder / "manifest.json"
    if path.exists():
        found = json.loads(path.read_text())
        if {k: found.get(k) for k in manifest} != manifest:
            raise ConfigError(f"the global-direction cache {folder} holds another computation (its manifest "
                              "differs); delete that folder")
        return
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(temporary, path)


def _read_chunks(folder: Path, channels: int, per_chunk: int) -> np.ndarray:
    """The cached delta_i_c [channels, D]; NaN rows for chunks not computed yet."""
    parts = []
    for start in range(0, channels, per_chunk):
        path = _chunk_path(folder, start, min(start + per_chunk, channels))
        parts.append((start, np.load(path) if path.exists() else None))
    dim = next((part.shape[1] for _, part in parts if part is not None), 0)
    return np.concatenate([part if part is not None else np.full((min(per_chunk, channels - start), dim), np.nan,
                                                                 np.float32) for start, part in parts])


def channel_directions(G, model: TextImageScorer, settings: ProbeSettings = ProbeSettings(), *,
                       cache_dir: str | Path | None = None, model_sha256: str = "", batch_size: int = 32,
                       progress: Callable | None = None, max_chunks: int | None = None) -> ChannelDirections:
    """delta_i_c of every channel of G for `model`, computed chunk by chunk into the cache, or read from it.

    `max_chunks` stops after computing that many new chunks (for tests of resumption); the result
    then has NaN rows for the channels not computed yet.
    """
    settings.check()
    layout = style_layout(G, include_input=settings.include_input)
    positions = full_index(G, layout)
    style_size = int(sum(full_style_layout(G).values()))
    model_id, text_id = generator_identity(G, model_sha256), text_model_identity(model)
    folder = cache_folder(Path(cache_dir) if cache_dir else default_cache_dir(), model_id, text_id, settings)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"format": CACHE_FORMAT, "model": model_id, "text_model": text_id, "settings": asdict(settings),
                "layers": list(layout.names), "sizes": list(layout.sizes), "channels": layout.channels}
    _check_manifest(folder, manifest)
    stats_path = folder / "statistics.npy"
    if stats_path.exists():
        mean_full, std_full = np.load(stats_path)
    else:
        mean_full, std_full = style_statistics_from_seeds(G, parse_seeds(settings.stats_seeds), settings.stats_psi,
                                                          settings.stats_cutoff)
        _save_atomic(stats_path, np.stack([mean_full, std_full]))

    starts = list(range(0, layout.channels, settings.channels_per_chunk))
    missing = [s for s in starts if not _chunk_path(folder, s, min(s + settings.channels_per_chunk,
                                                                   layout.channels)).exists()]
    computed = 0
    if missing:
        probe_ws = seed_ws(G, parse_seeds(settings.probe_seeds), settings.probe_psi, None)
        with torch.no_grad():
            base = flat_styles(G, probe_ws)  # [N, S]
        bar = progress(total=len(starts), initial=len(starts) - len(missing),
                       desc="global directions: channel chunks") if progress else None
        for start in missing:
            if max_chunks is not None and computed >= max_chunks:
                break
            stop = min(start + settings.channels_per_chunk, layout.channels)
            directions = channel_image_directions(G, model, base, positions[start:stop], mean_full, std_full,
                                                  settings.k, batch_size)
            _save_atomic(_chunk_path(folder, start, stop), directions)
            computed += 1
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
    directions = _read_chunks(folder, layout.channels, settings.channels_per_chunk)
    return ChannelDirections(layout, directions, mean_full[positions], std_full[positions], positions, style_size,
                             folder, computed)


# ----- text directions ----------------------------------------------------------------------------

def prompt_embedding(model: TextImageScorer, text: str, templates: Sequence[str] = ("{}",)) -> np.ndarray:
    """Unit mean of the unit embeddings of `text` in each template ('{}' marks where it goes), [D]."""
    texts = [template.format(text) for template in templates] or [text]
    with torch.no_grad():
        embeddings = F.normalize(model.encode_text(texts).float().cpu(), dim=1)
    return F.normalize(embeddings.mean(dim=0), dim=0).numpy()


def text_direction(model: TextImageScorer, target: str, neutral: str,
                   templates: Sequence[str] = ("{}",)) -> np.ndarray:
    """delta_t = normalize(t_target - t_neutral), [D]."""
    difference = prompt_embedding(model, target, templates) - prompt_embedding(model, neutral, templates)
    norm = np.linalg.norm(difference)
    if norm < 1e-8:
        raise ConfigError(f"the texts {target!r} and {neutral!r} have the same embedding; give a neutral text "
                          "that differs from the target")
    return difference / norm


# ----- one text edit --------------------------------------------------------------------------------

def text_edit_direction(G, model: TextImageScorer, target: str, neutral: str, *, beta: float | None = None,
                        templates: Sequence[str] = ("{}",), settings: ProbeSettings = ProbeSettings(),
                        cache_dir: str | Path | None = None, model_sha256: str = "", batch_size: int = 32,
                        progress: Callable | None = None) -> Direction:
    """The global direction of `target` against `neutral` as an "s" Direction (strength = alpha).

    `beta` None: the text model's `global_beta`. The channel directions come from the cache when it
    has them; a ConfigError says what to change when no channel passes the beta threshold.
    """
    beta = float(model.global_beta) if beta is None else beta
    directions = channel_directions(G, model, settings, cache_dir=cache_dir, model_sha256=model_sha256,
                                    batch_size=batch_size, progress=progress)
    delta_t = text_direction(model, target, neutral, templates)
    relevance = directions.relevance(delta_t)
    top = float(np.abs(relevance).max(initial=0.0))
    if top < beta:
        raise ConfigError(f"no S channel has |relevance| >= beta {beta:g} for {target!r} against {neutral!r} "
                          f"(the largest is {top:.3f}); lower --beta below {top:.3f} or rephrase the text")
    return directions.style_direction(delta_t, beta, attribute=target, metadata={
        "text": target, "neutral": neutral, "templates": list(templates), "text_model": text_model_identity(model),
        "model_sha256": model_sha256, "max_abs_relevance": top, "settings": asdict(settings),
        "cache": str(directions.folder)})


def save_direction(direction: Direction, path: str | Path) -> Path:
    """Write a Direction as `path`.npy with its JSON sidecar, the form `sg3probe edit DIRECTION` reads."""
    path = Path(path).with_suffix(".npy")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, direction.vector)
    sidecar = {**direction.metadata, "space": direction.space, "layers": direction.layers,
               "attribute": direction.attribute}
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, sort_keys=True))
    return path
