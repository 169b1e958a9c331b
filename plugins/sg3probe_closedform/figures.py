"""The figures of the sefa and ganspace reports: matplotlib Figure() objects, never pyplot."""
from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure


def spectrum(table: pd.DataFrame, method: str) -> Figure:
    """Each direction's share of the total (eigenvalue or variance), one line per model and group."""
    figure = Figure(figsize=(6.0, 3.2), layout="constrained")
    ax = figure.subplots()
    for (model, group), part in table.groupby(["model", "group"], sort=False):
        ax.plot(part["component"], part["share"], marker="o", markersize=3, label=f"{model}, {group}")
    ax.set_yscale("log")
    ax.set_xlabel("direction (strongest first)")
    ax.set_ylabel("share of the total")
    ax.set_title(method, fontsize=9)
    ax.legend(fontsize=7)
    return figure


def effect_heatmaps(effects: pd.DataFrame) -> Figure:
    """Direction x attribute: the signed mean move in natural stds, one panel per model and group."""
    panels = list(effects.groupby(["model", "group"], sort=False))
    attributes = list(dict.fromkeys(effects["attribute"]))
    height = max(len(part["component"].unique()) for _, part in panels)
    figure = Figure(figsize=(1.2 + 0.55 * len(attributes) * len(panels), 1.6 + 0.3 * height), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(panels)))
    limit = max(1.0, float(np.nanmax(np.abs(effects["move_std"].to_numpy()))))
    for ax, ((model, group), part) in zip(axes, panels):
        matrix = part.pivot_table(index="component", columns="attribute", values="move_std", sort=False)
        matrix = matrix.reindex(columns=[a for a in attributes if a in matrix.columns])
        sns.heatmap(matrix, ax=ax, cmap="RdBu_r", vmin=-limit, vmax=limit, center=0, annot=True, fmt=".1f",
                    annot_kws={"fontsize": 6}, cbar=ax is axes[-1], cbar_kws={"label": "move (natural stds)"})
        ax.set_title(f"{model}, {group}", fontsize=9)
        ax.set_xlabel("")
        ax.set_ylabel("direction")
    return figure
