"""Figures that analyzers share: matplotlib Figure() objects, never pyplot (the reporter embeds them)."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from sg3probe.imaging import tile


def image_rows(rows: dict[str, np.ndarray], title: str, column_labels: list[str] | None = None) -> Figure:
    """One labelled row of pictures per entry (label -> uint8 [k, H, W, C]); shorter rows end in white.

    The usual edit grid: one row per sample or edit, one column per strength (`column_labels`, e.g. "+2σ").
    """
    labels = [label for label, pictures in rows.items() if len(pictures)]
    if not labels:
        raise ValueError("image_rows needs at least one row with pictures")
    columns = max(len(rows[label]) for label in labels)
    shape = rows[labels[0]].shape[1:]
    padded = [np.concatenate([rows[label], np.full((columns - len(rows[label]),) + shape, 255, np.uint8)])
              for label in labels]
    canvas = tile(np.concatenate(padded), columns=columns, gap=2)
    height, width = canvas.shape[:2]
    figure = Figure(figsize=(2.4 + width / 55, 0.5 + height / 55), layout="constrained")
    ax = figure.subplots()
    ax.imshow(canvas, interpolation="nearest")
    ax.set_yticks([2 + (shape[0] + 2) * i + shape[0] / 2 for i in range(len(labels))], labels, fontsize=8)
    if column_labels is None:
        ax.set_xticks([])
    else:
        ax.set_xticks([2 + (shape[1] + 2) * i + shape[1] / 2 for i in range(len(column_labels))], column_labels,
                      fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=9)
    return figure
