"""StyleSpace channels: the style layers a channel-level analysis covers, and per-channel statistics.

Shared by the analyses that work channel by channel in S (StyleSpace, StyleCLIP global directions):

- `StyleLayout` / `style_layout(G)`: the non-ToRGB style layers in G.styles order (and 'input', the
  Fourier features' pose, on request), with offsets of each layer in the flattened channel axis;
- `RunningMoments`: per-channel mean and std of rows fed in chunks;
- `style_statistics`: the streamed mean and std of a sample set's S layers.

`sg3probe.sampling.sampler.style_layout` is the other layout: every S entry, ToRGB included, which
is what a flattened S direction (`sg3probe.editing`) spans.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class StyleLayout:
    """The style layers a channel analysis covers, in G.styles order, and their channel counts."""

    names: tuple[str, ...]
    sizes: tuple[int, ...]

    @property
    def channels(self) -> int:
        return int(sum(self.sizes))

    def offsets(self) -> np.ndarray:
        """Start of each layer in the flattened channel axis, plus the total at the end."""
        return np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    def layer_of(self) -> np.ndarray:
        """[channels] index into `names` of each flattened channel."""
        return np.repeat(np.arange(len(self.names)), self.sizes)

    def channel_names(self) -> list[str]:
        """'layer:channel' for each flattened channel."""
        return [f"{name}:{c}" for name, size in zip(self.names, self.sizes) for c in range(size)]


def style_layout(G, include_input: bool = False) -> StyleLayout:
    """The non-ToRGB style layers of G (and 'input', the Fourier features' pose, on request)."""
    names, sizes = (["input"], [4]) if include_input else ([], [])
    for spec in G.architecture.layers:
        if not spec.is_torgb:
            names.append(spec.name)
            sizes.append(int(spec.style_dim))
    return StyleLayout(tuple(names), tuple(sizes))


class RunningMoments:
    """Per-channel mean and std of rows fed in chunks (Chan et al.'s parallel update, float64)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None

    def update(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.float64)
        if not len(rows):
            return
        mean, m2 = rows.mean(axis=0), ((rows - rows.mean(axis=0)) ** 2).sum(axis=0)
        if self.mean is None:
            self.count, self.mean, self._m2 = len(rows), mean, m2
            return
        total = self.count + len(rows)
        delta = mean - self.mean
        self.mean = self.mean + delta * len(rows) / total
        self._m2 = self._m2 + m2 + delta ** 2 * self.count * len(rows) / total
        self.count = total

    @property
    def std(self) -> np.ndarray:
        """Population std (ddof 0)."""
        if self.mean is None:
            raise ValueError("no rows were added")
        return np.sqrt(self._m2 / self.count)


def style_statistics(styles: Mapping[str, np.ndarray], names, rows_per_chunk: int = 1000
                     ) -> tuple[np.ndarray, np.ndarray, int]:
    """Streamed per-channel mean and std of the S layers `names` (concatenated), and the row count.

    `styles` maps a layer name to [N, channels] (a sample set's "s", possibly memory-mapped).
    """
    count = len(styles[names[0]])
    moments = RunningMoments()
    for start in range(0, count, rows_per_chunk):
        stop = min(start + rows_per_chunk, count)
        moments.update(np.concatenate([np.asarray(styles[n][start:stop], dtype=np.float64) for n in names], axis=1))
    return moments.mean, moments.std, count
