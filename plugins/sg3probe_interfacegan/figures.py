"""The figures of the interfacegan report: matplotlib Figure() objects, never pyplot."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure



def response_curves(curves: pd.DataFrame) -> Figure:
    """Mean target score (with the 25-75 % band) against strength, one panel per attribute.

    curves: columns attribute, kind, model (role/view), strength, mean, q25, q75.
    """
    attributes = list(dict.fromkeys(curves["attribute"]))
    columns = min(4, len(attributes))
    rows = math.ceil(len(attributes) / columns)
    figure = Figure(figsize=(3.2 * columns, 2.6 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).reshape(-1)
    palette = dict(zip(dict.fromkeys(curves["model"]), sns.color_palette("tab10")))
    for ax, attribute in zip(axes, attributes):
        part = curves[curves["attribute"] == attribute]
        for model, group in part.groupby("model", sort=False):
            ax.plot(group["strength"], group["mean"], marker="o", ms=3, color=palette[model], label=model)
            ax.fill_between(group["strength"], group["q25"], group["q75"], color=palette[model], alpha=0.15)
        if part["kind"].iloc[0] == "binary":
            ax.axhline(0, color="grey", lw=0.8, ls="--")
            ax.set_ylabel("logit")
        else:
            ax.set_ylabel("value")
        ax.set_title(attribute)
        ax.set_xlabel("strength (sigmas)")
    for ax in axes[len(attributes):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    return figure


def entanglement_heatmaps(table: pd.DataFrame, value: str = "change_rate") -> Figure:
    """Edited attribute (rows) x measured attribute (columns) of `value`: a column of panels per
    model/view, a row per edit kind (the table's `edit` column: all rows, own rows)."""
    models = list(dict.fromkeys(table["model"]))
    edits = list(dict.fromkeys(table["edit"])) if "edit" in table else [None]
    size = 1.6 + 0.45 * table["measured"].nunique()
    figure = Figure(figsize=(size * len(models) + 1.5, size * len(edits)), layout="constrained")
    axes = figure.subplots(len(edits), len(models), squeeze=False)
    for row, edit in enumerate(edits):
        for column, model in enumerate(models):
            ax = axes[row, column]
            part = table[(table["model"] == model) & ((table["edit"] == edit) if edit else True)]
            if part.empty:
                ax.set_visible(False)
                continue
            order = list(dict.fromkeys(part["edited"]))
            matrix = part.pivot(index="edited", columns="measured", values=value).reindex(index=order, columns=order)
            sns.heatmap(matrix, ax=ax, vmin=0, vmax=1, cmap="magma", annot=True, fmt=".2f", annot_kws={"size": 6},
                        cbar=column == len(models) - 1)
            ax.set_title(f"{model}, {edit}" if edit else model)
            ax.set_xlabel("measured attribute" if row == len(edits) - 1 else "")
            ax.set_ylabel("edited attribute" if column == 0 else "")
            ax.tick_params(axis="x", rotation=45)
            ax.tick_params(axis="y", rotation=0)
    return figure


def layer_heatmaps(table: pd.DataFrame) -> Figure:
    """Attribute x layer range: the target's move relative to editing every row, and side effects."""
    models = list(dict.fromkeys(table["model"]))
    figure = Figure(figsize=(11, 0.9 + 2.6 * len(models) * 2), layout="constrained")
    axes = figure.subplots(2 * len(models), 1, squeeze=False)[:, 0]
    for index, model in enumerate(models):
        part = table[table["model"] == model]
        ranges = list(dict.fromkeys(part["layers"]))
        attributes = list(dict.fromkeys(part["attribute"]))
        for ax, value, title, cmap in (
                (axes[2 * index], "relative_effect", "target move / move when editing every row", "viridis"),
                (axes[2 * index + 1], "side_effect_std", "mean |change| of the other attributes (stds)", "magma")):
            matrix = part.pivot(index="attribute", columns="layers", values=value).reindex(index=attributes, columns=ranges)
            sns.heatmap(matrix, ax=ax, cmap=cmap, annot=True, fmt=".2f", annot_kws={"size": 6},
                        vmin=0 if value == "side_effect_std" else min(0.0, float(np.nanmin(matrix.values))),
                        vmax=max(1.0, float(np.nanmax(matrix.values))) if value == "relative_effect" else None)
            ax.set_title(f"{model}: {title}")
            ax.set_xlabel("ws rows edited")
            ax.set_ylabel("")
    return figure
