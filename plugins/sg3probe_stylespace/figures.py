"""Figures of the stylespace analyzer, as matplotlib Figure objects (never pyplot)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure


def _rgb(image: torch.Tensor) -> np.ndarray:
    """[3, H, W] in about [-1, 1] -> [H, W, 3] in [0, 1]."""
    return ((image.detach().cpu().float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def heatmap(table: pd.DataFrame, title: str) -> Figure:
    """Layer x region counts of localized channels."""
    figure = Figure(figsize=(1.0 + 0.7 * table.shape[1], 1.0 + 0.3 * table.shape[0]))
    axes = figure.add_subplot()
    image = axes.imshow(table.to_numpy(), cmap="viridis", aspect="auto")
    axes.set_xticks(range(table.shape[1]), table.columns, rotation=45, ha="right")
    axes.set_yticks(range(table.shape[0]), table.index)
    for (row, col), value in np.ndenumerate(table.to_numpy()):
        if value:
            axes.text(col, row, str(value), ha="center", va="center", color="w", fontsize=7)
    axes.set_title(title)
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    return figure


def edit_grid(images: torch.Tensor, alphas: np.ndarray, title: str) -> Figure:
    """images [rows, len(alphas), 3, H, W]: one sample per row, one alpha per column."""
    rows, columns = images.shape[:2]
    figure = Figure(figsize=(1.3 * columns, 1.3 * rows + 0.4))
    for row in range(rows):
        for col in range(columns):
            axes = figure.add_subplot(rows, columns, row * columns + col + 1)
            axes.imshow(_rgb(images[row, col]))
            axes.set_axis_off()
            if row == 0:
                axes.set_title(f"{alphas[col]:+g}", fontsize=8)
    figure.suptitle(title, fontsize=9)
    return figure


def gradient_overlay(image: torch.Tensor, maps: np.ndarray, channels: list[int], channel_names: list[str],
                     regions: list[str]) -> Figure:
    """An image and the gradient maps [C, P, P] of some channels laid over it."""
    figure = Figure(figsize=(1.6 * (len(channels) + 1), 2.0))
    axes = figure.add_subplot(1, len(channels) + 1, 1)
    axes.imshow(_rgb(image))
    axes.set_axis_off()
    size = image.shape[-1]
    for index, (channel, region) in enumerate(zip(channels, regions)):
        axes = figure.add_subplot(1, len(channels) + 1, index + 2)
        axes.imshow(_rgb(image))
        axes.imshow(maps[channel], cmap="inferno", alpha=0.6, extent=(0, size, size, 0))
        axes.set_title(f"{region}\n{channel_names[channel]}", fontsize=7)
        axes.set_axis_off()
    return figure
