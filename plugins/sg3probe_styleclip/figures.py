"""The figures of the styleclip report: matplotlib Figure() objects, never pyplot."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure



def side_effect_heatmaps(table: pd.DataFrame) -> Figure:
    """Prompt (rows) x other attribute (columns) decision flip rates, one panel per model and method."""
    panels = list(dict.fromkeys(zip(table["model"], table["method"])))
    columns = min(2, len(panels))
    rows = math.ceil(len(panels) / columns)
    width = 2.5 + 0.5 * table["attribute"].nunique()
    height = 2.3 + 0.35 * table["prompt"].nunique()  # the rotated attribute names take about 1.3 in
    figure = Figure(figsize=(width * columns + 1, height * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).reshape(-1)
    for ax, (model, method) in zip(axes, panels):
        part = table[(table["model"] == model) & (table["method"] == method)]
        matrix = part.pivot(index="prompt", columns="attribute", values="flip_rate")
        matrix = matrix.reindex(index=list(dict.fromkeys(part["prompt"])))
        sns.heatmap(matrix, ax=ax, vmin=0, vmax=1, cmap="magma", annot=True, fmt=".2f", annot_kws={"size": 6},
                    cbar=ax is axes[len(panels) - 1])
        ax.set_title(f"{model}, {method}", fontsize=9)
        ax.set_xlabel("attribute whose decision flipped")
        ax.set_ylabel("")
        ax.tick_params(axis="x", rotation=45)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return figure


def method_comparison(edits: pd.DataFrame) -> Figure:
    """Target rate against the worst side effect per prompt, one marker style per method and model."""
    figure = Figure(figsize=(5.5, 4.2), layout="constrained")
    ax = figure.subplots()
    markers = {"global (S)": "o", "mapper (W+)": "s"}
    palette = dict(zip(dict.fromkeys(edits["model"]), sns.color_palette("tab10")))
    for (model, method), group in edits.dropna(subset=["target_rate"]).groupby(["model", "method"], sort=False):
        ax.scatter(group["worst_side_effect_rate"], group["target_rate"], marker=markers.get(method, "^"),
                   color=palette[model], label=f"{model}, {method}")
        for row in group.itertuples():
            ax.annotate(row.prompt.removeprefix("a face ").removeprefix("a "), (row.worst_side_effect_rate,
                        row.target_rate), fontsize=6, xytext=(3, 2), textcoords="offset points")
    ax.axhspan(0.7, 1.02, xmin=0.02 / 1.04, xmax=0.17 / 1.04, color="green", alpha=0.08)  # >= 70 %, <= 15 %
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("worst side effect (share of samples)")
    ax.set_ylabel("target reached (share of samples)")
    ax.legend(fontsize=7, loc="lower right")
    return figure


def sweep_heatmaps(table: pd.DataFrame) -> Figure:
    """Per prompt: target rate and worst side effect over beta (rows) x alpha (columns)."""
    panels = list(dict.fromkeys(zip(table["model"], table["prompt"])))
    figure = Figure(figsize=(6.2, 1.2 + 2.1 * len(panels)), layout="constrained")
    axes = figure.subplots(len(panels), 2, squeeze=False)
    for (model, prompt), (left, right) in zip(panels, axes):
        part = table[(table["model"] == model) & (table["prompt"] == prompt)]
        for ax, value, cmap in ((left, "target_rate", "viridis"), (right, "worst_side_effect_rate", "magma")):
            matrix = part.pivot(index="beta", columns="alpha", values=value)
            sns.heatmap(matrix, ax=ax, vmin=0, vmax=1, cmap=cmap, annot=True, fmt=".2f", annot_kws={"size": 7},
                        cbar=False)
            ax.set_title(f"{prompt} ({model})\n{value.replace('_', ' ')}", fontsize=7)
    return figure


def loss_curves(losses: dict[str, np.ndarray]) -> Figure:
    """Mapper training loss (total, smoothed) per model and prompt."""
    figure = Figure(figsize=(6, 3.2), layout="constrained")
    ax = figure.subplots()
    for label, values in losses.items():
        total = values[:, 0]
        window = max(1, len(total) // 20)
        smooth = np.convolve(total, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(len(smooth)) + window, smooth, label=label, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=6)
    return figure
