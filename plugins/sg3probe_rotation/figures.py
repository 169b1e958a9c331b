"""The rotation analyzer's figures: where pose lives (bar chart) and image strips."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from sg3probe.imaging import tile, to_uint8


def share_bars(table: pd.DataFrame, mode: str) -> Figure:
    """Per W+ index: its share of all rotation, translation and content change (one panel per model)."""
    rows = table[(table["mode"] == mode) & (table["kind"] == "index")]
    models = list(dict.fromkeys(rows["model"]))
    figure = Figure(figsize=(11, 2.8 * len(models) + 0.4), layout="constrained")
    axes = figure.subplots(len(models), 1, squeeze=False)[:, 0]
    columns = [("pose_rotation_share", "rotation (pose scorer)"), ("image_rotation_share", "rotation (image)"),
               ("translation_share", "translation"), ("content_share", "content")]
    columns = [(column, label) for column, label in columns if column in rows and rows[column].notna().any()]
    width = 0.8 / len(columns)
    for ax, model in zip(axes, models):
        group = rows[rows["model"] == model]
        positions = np.arange(len(group))
        for number, (column, label) in enumerate(columns):
            offset = (number - (len(columns) - 1) / 2) * width
            ax.bar(positions + offset, group[column].to_numpy(dtype=float), width=width, label=label)
        ax.set_xticks(positions, [f"ws[{t}]" for t in group["target"]], rotation=45)
        ax.set_ylabel("share of change")
        ax.set_title(f"{model}: ws[k] replaced ({mode})")
        ax.set_ylim(0, 1)
    axes[0].legend(loc="upper right", fontsize="small")
    return figure


def image_strips(rows: Sequence[tuple[str, torch.Tensor]], title: str) -> Figure:
    """Rows of images [n, C, H, W], each under its label, as one picture."""
    columns = max(len(images) for _, images in rows)
    figure = Figure(figsize=(max(4.0, 1.0 * columns), 0.5 + 1.25 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, (label, images) in zip(axes, rows):
        ax.imshow(tile(to_uint8(images), columns=columns, gap=2), interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(label, loc="left", fontsize="small")
    figure.suptitle(title, fontsize="medium")
    return figure
