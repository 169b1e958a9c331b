"""The `disentanglement` analyzer: DCI, MIG and SAP of Z, W, W+ and S, aligned vs unaligned."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from sg3probe.analyzer import AnalysisContext, Analyzer, Needs
from sg3probe.errors import ConfigError
from sg3probe.results import AnalysisResult, Section
from sg3probe.steps import StepRecord
from sg3probe_disentanglement.metrics import (dci_per_attribute_subsets, mig_per_attribute_subsets,
                                              sap_per_attribute_subsets, select_attribute_subsets)


def _spaces(samples) -> "OrderedDict[str, np.ndarray]":
    """The code spaces to compare, flattened to [N, dims]."""
    styles = samples["s"]
    layers = [name for name in styles if name != "input"]
    spaces = OrderedDict()
    spaces["Z"] = np.asarray(samples["z"], dtype=np.float32)
    spaces["W"] = np.asarray(samples["w"], dtype=np.float32)
    wplus = np.asarray(samples["wplus"], dtype=np.float32)
    spaces["W+"] = wplus.reshape(len(wplus), -1)
    spaces["S"] = np.concatenate([styles[name] for name in layers], axis=1)
    spaces["S+input"] = np.concatenate([styles["input"], spaces["S"]], axis=1)
    return spaces


def _scored_views(samples):
    """(role, samples, label, scores) for each model and each way its images were scored.

    The unaligned model's images are scored pseudo-aligned (ws[0] = w_avg) by default; the sampler
    then also keeps the scores of the images as generated, and both are measured. The label of a
    model's primary scores is its role, so per-layer results and the reading key on it.
    """
    for role, role_samples in samples.items():
        yield role, role_samples, role, role_samples["scores"]
        if "scores_as_generated" in role_samples:
            yield role, role_samples, f"{role} as generated", role_samples["scores_as_generated"]


class Disentanglement(Analyzer):
    name = "disentanglement"
    description = ("DCI disentanglement (Eastwood & Williams) with MIG and SAP, for Z, W, W+ and StyleSpace S "
                   "(with and without the 'input' geometry codes, and per S layer), with the StyleSpace attribute "
                   "protocol; aligned and unaligned models side by side.")
    needs = Needs(spaces={"z", "w", "wplus", "s"}, scores=True, models="both")

    @dataclass
    class Config:
        percentile: float = 20.0  # keep samples below this / above 100 - this percentile (paper: 2 with 100k)
        min_side_fraction: float = 0.05  # drop attributes with fewer samples on a side
        per_layer: bool = True  # also DCI of each S layer alone
        mig_bins: int = 20
        n_jobs: int = 2  # GBT fits in parallel over attributes
        heatmap_codes: int = 30  # codes shown in each importance heatmap

    def analyze(self, samples, ctx: AnalysisContext, cfg) -> AnalysisResult:
        if ctx.scorer is None:
            raise ConfigError("the disentanglement analyzer needs a scorer (--scorer)")
        rows, attribute_rows, layer_rows, selections = [], [], [], []
        figures, arrays = {}, {}
        for role, role_samples, label, scores in _scored_views(samples):
            # Each scored view is one step, kept in the work folder: a rerun after an interrupt skips it.
            steps = ctx.saved_steps(cfg, role_samples, view=label)
            view = steps.get(label)
            if view is None:
                view = self._view(role_samples, label, label == role, scores, ctx, cfg)
                steps.put(label, view)
            else:
                ctx.log.info("disentanglement: %s taken from %s", label, steps.folder)
            rows += view.tables["spaces"]
            attribute_rows += view.tables["attributes"]
            layer_rows += view.tables["layers"]
            if view.tables["selection"]:
                selections.append(pd.DataFrame(view.tables["selection"]))
            arrays.update(view.arrays)
            for space in ("W", "S"):
                name = _importance_name(label, space)
                if name in view.arrays:
                    factors = [r["attribute"] for r in view.tables["attributes"] if r["space"] == space]
                    figures[f"importance {label} {space}"] = _importance_heatmap(
                        view.arrays[name], factors, f"{label}: {space}", cfg.heatmap_codes,
                        _code_labels(role_samples, space))
        spaces_table = pd.DataFrame(rows)
        tables = {"spaces": spaces_table, "attributes": pd.DataFrame(attribute_rows),
                  "selection": pd.concat(selections) if selections else pd.DataFrame()}
        if layer_rows:
            tables["layers"] = pd.DataFrame(layer_rows)
        if not spaces_table.empty:
            figures = {"D, C, I by space": _dci_bars(spaces_table), **figures}
            if layer_rows:
                figures["DCI per S layer"] = _layer_lines(tables["layers"])
        metrics = {f"{r['model']}/{r['space']}": {k: r[k] for k in ("dims", "D", "C", "I", "MIG", "SAP")} for r in rows}
        return AnalysisResult(
            metrics=metrics, tables=tables, figures=figures, arrays=arrays, summary=_reading(spaces_table, _tiled_wplus(samples)),
            title="Disentanglement (DCI, MIG, SAP)",
            sections=[Section("Spaces compared", "D, C, I per space; C uses entropy base = dims, so compare C "
                              "only between spaces of equal size. The unaligned model's images are scored "
                              "pseudo-aligned (ws[0] = w_avg) when sampling.pseudo_align_unaligned is on (the "
                              "default); 'unaligned as generated' is the same samples scored as they come out, "
                              "rotated and shifted.", tables=["spaces"],
                              figures=[f for f in figures if not f.startswith("importance")]),
                      Section("Per attribute", tables=["attributes", "selection"]),
                      Section("Importance matrices", "GBT feature importances, the codes with the largest total "
                              "importance.", figures=[f for f in figures if f.startswith("importance")])],
        )


    def _view(self, role_samples, label: str, primary: bool, scores, ctx: AnalysisContext, cfg) -> StepRecord:
        """DCI, MIG and SAP of every space (and, for a model's primary scores, of each S layer) for one view."""
        attributes = list(ctx.scorer.attributes)
        rows, attribute_rows, layer_rows, arrays = [], [], [], {}
        names = [a.name for a in attributes if a.name in scores]
        matrix = np.stack([np.asarray(scores[n], dtype=np.float64) for n in names], axis=1)
        thresholds = [0.0 if a.kind == "binary" else "median" for a in attributes if a.name in scores]
        subsets = select_attribute_subsets(matrix, names, percentile=cfg.percentile, threshold=thresholds,
                                           min_side_fraction=cfg.min_side_fraction, random_state=ctx.seed)
        selection = subsets.selection.copy()
        selection.insert(0, "model", label)
        tables = {"selection": selection.to_dict(orient="records"), "spaces": rows, "attributes": attribute_rows,
                  "layers": layer_rows}
        if not subsets.names:
            ctx.log.warning("%s: no attribute passes the selection rule", label)
            return StepRecord(tables=tables)
        for space, codes in ctx.progress(list(_spaces(role_samples).items()), desc=f"DCI {label}"):
            dci = dci_per_attribute_subsets(codes, subsets, n_jobs=cfg.n_jobs, random_state=ctx.seed)
            mig = mig_per_attribute_subsets(codes, subsets, n_bins=cfg.mig_bins)
            sap = sap_per_attribute_subsets(codes, subsets)
            rows.append({"model": label, "space": space, "dims": codes.shape[1], "D": dci.disentanglement,
                         "C": dci.completeness, "I": dci.informativeness, "MIG": mig.mig, "SAP": sap.sap})
            for j, attribute in enumerate(dci.factor_names):
                attribute_rows.append({"model": label, "space": space, "attribute": attribute,
                                       "test_accuracy": dci.test_accuracy[j], "C": dci.factor_completeness[j],
                                       "MIG": mig.factor_mig[j], "SAP": sap.factor_sap[j]})
            arrays[_importance_name(label, space)] = dci.importance
        if cfg.per_layer and primary:  # per layer: the primary scores of each model only
            for layer, codes in role_samples["s"].items():
                if layer == "input" or codes.shape[1] < 2:
                    continue
                dci = dci_per_attribute_subsets(np.asarray(codes, np.float32), subsets, n_jobs=cfg.n_jobs,
                                                random_state=ctx.seed)
                layer_rows.append({"model": label, "layer": layer, "dims": codes.shape[1],
                                   "D": dci.disentanglement, "C": dci.completeness, "I": dci.informativeness})
        return StepRecord(tables=tables, arrays=arrays)


def _importance_name(label: str, space: str) -> str:
    return f"importance_{label.replace(' ', '_')}_{space}"


def _dci_bars(table: pd.DataFrame) -> Figure:
    long = table.melt(id_vars=["model", "space"], value_vars=["D", "C", "I"], var_name="metric")
    models = list(dict.fromkeys(table["model"]))
    figure = Figure(figsize=(5.5 * len(models), 3.6), layout="constrained")
    axes = figure.subplots(1, len(models), sharey=True, squeeze=False)[0]
    for ax, model in zip(axes, models):
        sns.barplot(data=long[long["model"] == model], x="space", y="value", hue="metric", ax=ax)
        ax.set_title(model)
        ax.set_ylim(0, 1.05)
    return figure


def _layer_lines(table: pd.DataFrame) -> Figure:
    figure = Figure(figsize=(9, 3.4), layout="constrained")
    ax = figure.subplots()
    long = table.melt(id_vars=["model", "layer"], value_vars=["D", "I"], var_name="metric")
    sns.lineplot(data=long, x="layer", y="value", hue="metric", style="model", marker="o", ax=ax)
    ax.tick_params(axis="x", rotation=60)
    ax.set_ylim(0, 1.05)
    return figure


def _code_labels(samples, space: str) -> list[str]:
    """Names of a space's codes as the heatmaps show them: 'w[i]' in W, 'layer:channel' in S (without 'input')."""
    if space == "W":
        return [f"w[{i}]" for i in range(np.asarray(samples["w"]).shape[1])]
    styles = samples["s"]
    return [f"{layer}:{c}" for layer in styles if layer != "input" for c in range(np.asarray(styles[layer]).shape[1])]


def _importance_heatmap(importance: np.ndarray, factors: list[str], title: str, top: int,
                        labels: list[str]) -> Figure:
    order = np.argsort(-importance.sum(axis=1))[:top]
    frame = pd.DataFrame(importance[order], index=[labels[i] for i in order], columns=factors)
    figure = Figure(figsize=(1.0 + 0.7 * len(factors), 0.9 + 0.2 * len(order)), layout="constrained")
    ax = figure.subplots()
    sns.heatmap(frame, ax=ax, cmap="viridis", cbar_kws={"label": "importance"})
    ax.set_title(title)
    ax.set_ylabel("code")
    return figure


def _tiled_wplus(samples) -> list[str]:
    """The models whose sampled W+ repeats W in every row (no truncation cutoff, no edits)."""
    tiled = []
    for role, role_samples in samples.items():
        wplus = np.asarray(role_samples["wplus"][:64], dtype=np.float32)
        if np.array_equal(wplus, np.repeat(wplus[:, :1], wplus.shape[1], axis=1)):
            tiled.append(role)
    return tiled


def _reading(table: pd.DataFrame, tiled_wplus: list[str] = ()) -> str:
    if table.empty:
        return "No attribute passed the selection rule, so nothing was measured."
    parts, notes = [], []
    if tiled_wplus:
        notes.append(f"Note: W+ of the {' and '.join(tiled_wplus)} samples is W repeated in every row (sampled "
                     "through the mapping without a truncation cutoff), so every W+ code has identical twins: "
                     "its MIG and SAP, gaps between the two best codes, are 0 by construction. DCI fits the copies "
                     "once and shares their importance equally, so W+'s D and I equal W's, and its C is lower "
                     "only because the same importance is spread over one copy per layer.")
    for model, group in table.groupby("model", sort=False):
        best = group.loc[group["D"].idxmax()]
        values = ", ".join(f"{r.space} D={r.D:.2f} I={r.I:.2f}" for r in group.itertuples())
        parts.append(f"For the {model} model, {values}; the most disentangled space is {best.space} (D={best.D:.2f}).")
    w_s = table[table["space"].isin(["W", "S"])].pivot(index="model", columns="space", values="D")
    if {"W", "S"} <= set(w_s.columns):
        verdict = all(w_s["S"] > w_s["W"])
        parts.append("As the paper reports for StyleGAN3, S is more disentangled than W here." if verdict else
                     "Unlike the paper's finding for StyleGAN3, S is not more disentangled than W for every model here.")
    parts.append("I is the mean test accuracy of per-attribute classifiers on the extreme samples; "
                 "C is comparable only between spaces of the same dimensionality.")
    return " ".join(parts + notes)
