"""Latent edits: direction files, strength and layer syntax, applying a direction to ws or styles.

A *direction file* is `name.npy` (the direction) with an optional JSON sidecar `name.json`;
any analyzer that finds directions (InterFaceGAN boundaries, GANSpace, ...) writes this form and
`sg3probe edit` reads it. The sidecar keys the core uses:

    space           "w" (default), "wplus" or "s": where the direction lives
    layers          ws rows it applies to ([] or absent: every row; "wplus": the rows it spans)
    projection_std  the std of (code . direction) over samples, so strengths can be in sigmas
    attribute       a name for captions (optional)

Shapes of the array: "w" [w_dim] or [1, w_dim]; "wplus" [len(layers), w_dim] (or flattened);
"s" [sum of style sizes] in the order of G.styles(ws) (flattened styles, 'input' first).
"""
from __future__ import annotations

import json
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from sg3probe.errors import ConfigError

DIRECTION_SPACES = ("w", "wplus", "s")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*:\s*({_NUMBER})\s*:\s*(\d+)\s*$")


def parse_strengths(text: str, what: str = "strengths") -> np.ndarray:
    """'-3:3:7' -> 7 evenly spaced values from -3 to 3, both ends included; or '-2,0,2'; or '1.5'.
    `what` names the setting in the error messages (e.g. '--alpha')."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{what} must be text like '-3:3:7' (start:stop:count, both ends included) "
                          "or '-2,0,2'")
    match = _RANGE.match(text)
    if match:
        start, stop, count = float(match.group(1)), float(match.group(2)), int(match.group(3))
        if count < 1 or (count == 1 and start != stop):
            raise ConfigError(f"{what} {text!r}: the count must be at least 2 to go from {start:g} "
                              f"to {stop:g} (both ends are included)")
        values = np.linspace(start, stop, count) if np.isfinite([start, stop]).all() else np.array([start, stop])
    else:
        try:
            values = np.array([float(item) for item in text.split(",")], dtype=np.float64)
        except ValueError:
            raise ConfigError(f"{what} {text!r} is neither start:stop:count (e.g. '-3:3:7') nor a "
                              "comma list of numbers (e.g. '-2,0,2')") from None
    if not np.isfinite(values).all():
        raise ConfigError(f"{what} {text!r}: every strength must be a finite number (not nan or inf)")
    return values


def parse_layers(text: str | None, num_ws: int) -> list[int]:
    """'0-7', '0,3,8-15' or 'all' (also None / '') -> sorted distinct ws row indices < num_ws."""
    if text is None or not str(text).strip() or str(text).strip() == "all":
        return list(range(num_ws))
    rows: set[int] = set()
    for item in str(text).split(","):
        match = re.match(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$", item)
        if match is None:
            raise ConfigError(f"layers {text!r}: {item.strip()!r} is not a row or a range; write e.g. "
                              "'0-7' or '0,3,8-15' (ws rows, 0-based, ends included)")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise ConfigError(f"layers {text!r}: the range {first}-{last} goes downwards")
        if last >= num_ws:
            raise ConfigError(f"layers {text!r}: row {last} does not exist; this generator has "
                              f"ws rows 0-{num_ws - 1}")
        rows.update(range(first, last + 1))
    return sorted(rows)


def format_layers(rows: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5': the inverse of parse_layers."""
    parts, start = [], None
    for index, row in enumerate(rows):
        if start is None:
            start = row
        if index + 1 == len(rows) or rows[index + 1] != row + 1:
            parts.append(str(start) if start == row else f"{start}-{row}")
            start = None
    return ",".join(parts)


@dataclass
class Direction:
    """A latent direction and where it applies (see the module docstring for the file form)."""

    vector: np.ndarray  # [dims] float64, flattened
    space: str = "w"
    layers: list[int] = field(default_factory=list)  # [] = every ws row (space "w")
    projection_std: float | None = None
    attribute: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)  # the whole sidecar

    def __post_init__(self) -> None:
        if self.space not in DIRECTION_SPACES:
            raise ConfigError(f"direction space {self.space!r} is not one of {', '.join(DIRECTION_SPACES)}")
        self.vector = np.asarray(self.vector, dtype=np.float64).reshape(-1)

    def raw_strengths(self, strengths: np.ndarray, raw: bool) -> np.ndarray:
        """Strengths in the direction's own units: sigmas times projection_std unless `raw`."""
        strengths = np.asarray(strengths, dtype=np.float64)
        if raw:
            return strengths
        if not self.projection_std:
            raise ConfigError("this direction has no projection_std (no JSON sidecar with it), so strengths "
                              "cannot be in sigmas; give raw units (--raw)")
        return strengths * self.projection_std


def load_direction(path: str | Path) -> Direction:
    """Read a direction .npy and its JSON sidecar (if any); errors say what is wrong with the file."""
    path = Path(path)
    if path.suffix != ".npy":
        path = path.with_suffix(".npy")
    if not path.is_file():
        raise ConfigError(f"direction file {str(path)!r} does not exist")
    try:
        vector = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise ConfigError(f"{str(path)!r} is not a numeric .npy array ({error})") from None
    sidecar = path.with_suffix(".json")
    metadata: dict[str, Any] = {}
    if sidecar.is_file():
        try:
            metadata = json.loads(sidecar.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ConfigError(f"direction sidecar {str(sidecar)!r} is not valid JSON: {error}") from None
    if not np.issubdtype(vector.dtype, np.number) or not np.all(np.isfinite(vector)):
        raise ConfigError(f"{str(path)!r} must hold finite numbers")
    std = metadata.get("projection_std")
    return Direction(vector, space=metadata.get("space", "w"), layers=list(metadata.get("layers") or []),
                     projection_std=float(std) if std else None, attribute=metadata.get("attribute", ""),
                     metadata=metadata)


def save_direction(direction: Direction, path: str | Path) -> Path:
    """Write `path`.npy (the vector, [1, dims] float32) and its sidecar `path`.json: the inverse of
    load_direction. The sidecar holds the direction's metadata with space, layers, projection_std and
    attribute set from the direction itself."""
    path = Path(path)
    path = path if path.suffix == ".npy" else path.with_name(path.name + ".npy")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, direction.vector.reshape(1, -1).astype(np.float32), allow_pickle=False)
    sidecar = {**direction.metadata, "space": direction.space, "layers": list(direction.layers),
               "projection_std": direction.projection_std, "attribute": direction.attribute}
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    return path


def check_direction(direction: Direction, G: Any) -> None:
    """Raise ConfigError if the direction's size does not fit generator G."""
    dims = direction.vector.size
    if direction.space == "w":
        expected = G.w_dim
    elif direction.space == "wplus":
        expected = G.w_dim * len(direction.layers or range(G.num_ws))
    else:
        from sg3probe.sampling.sampler import style_layout

        expected = sum(style_layout(G).values())
    if dims != expected:
        raise ConfigError(f"the {direction.space} direction has {dims} numbers but this generator needs "
                          f"{expected}; was it found on another model?")


def edit_ws(ws: torch.Tensor, vector: np.ndarray | torch.Tensor, strength: float | torch.Tensor,
            layers: list[int] | None = None) -> torch.Tensor:
    """ws [B, num_ws, w_dim] moved by strength * vector on the given rows (all when None/[]).

    `vector` is [w_dim] (the same step on every row) or [len(layers), w_dim] (W+: one per row).
    `strength` is a number or a tensor [B] (one strength per sample).
    """
    rows = list(layers) if layers else list(range(ws.shape[1]))
    step = torch.as_tensor(np.asarray(vector), dtype=ws.dtype, device=ws.device)
    step = step.reshape(-1, ws.shape[2])  # [1 or len(rows), w_dim]
    if step.shape[0] not in (1, len(rows)):
        raise ValueError(f"a W+ direction with {step.shape[0]} rows does not fit {len(rows)} layers")
    factor = torch.as_tensor(strength, dtype=ws.dtype, device=ws.device).reshape(-1, 1, 1)  # [B or 1, 1, 1]
    edited = ws.clone()
    edited[:, rows] = ws[:, rows] + factor * step.unsqueeze(0)
    return edited


def edit_styles(styles: Mapping[str, torch.Tensor], vector: np.ndarray | torch.Tensor,
                strength: float | torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
    """Styles (as G.styles gives) moved by strength * vector, vector over the flattened styles."""
    first = next(iter(styles.values()))
    step = torch.as_tensor(np.asarray(vector), dtype=first.dtype, device=first.device).reshape(-1)
    total = sum(int(s.shape[1]) for s in styles.values())
    if step.numel() != total:
        raise ValueError(f"an S direction of {step.numel()} numbers does not fit styles of {total}")
    factor = torch.as_tensor(strength, dtype=first.dtype, device=first.device).reshape(-1, 1)
    edited, offset = OrderedDict(), 0
    for name, value in styles.items():
        size = int(value.shape[1])
        edited[name] = value + factor * step[offset:offset + size].unsqueeze(0)
        offset += size
    return edited


@dataclass
class EditedLatents:
    """What a batch of edits renders from: ws, and for S edits the edited styles."""

    ws: torch.Tensor  # [B, num_ws, w_dim]
    styles: "OrderedDict[str, torch.Tensor] | None" = None  # set for S-space edits

    def render(self, G: Any, transform: Any = None) -> torch.Tensor:
        """Images [B, C, H, W] of these latents."""
        if self.styles is not None:
            return G.synthesis(styles=self.styles, transform=transform)
        return G.synthesis(self.ws, transform=transform)


def apply_direction(G: Any, ws: torch.Tensor, direction: Direction, strength: float | torch.Tensor,
                    layers: list[int] | None = None) -> EditedLatents:
    """Edit ws [B, num_ws, w_dim] by `strength` (raw units) along `direction`.

    For "w" directions `layers` (ws rows) overrides the direction's own rows; "wplus" directions
    use their own rows; "s" directions edit the styles of ws.
    """
    if direction.space == "s":
        return EditedLatents(ws, edit_styles(G.styles(ws), direction.vector, strength))
    if direction.space == "wplus":
        rows = direction.layers or list(range(ws.shape[1]))
        return EditedLatents(edit_ws(ws, direction.vector.reshape(len(rows), -1), strength, rows))
    return EditedLatents(edit_ws(ws, direction.vector, strength, layers or direction.layers))
