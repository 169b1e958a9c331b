"""The `stylespace` analyzer: S statistics, locally-active channels, attribute-specific channels
and single-channel edits with a measured locality (spec: analyses.md section 2)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from sg3probe.analyzer import AnalysisContext, Analyzer, Needs, RunPlan
from sg3probe.boundaries import train_boundary
from sg3probe.editing import parse_strengths
from sg3probe.errors import ConfigError
from sg3probe.results import AnalysisResult, Section
from sg3probe.style_channels import style_layout, style_statistics
from sg3probe_stylespace import figures
from sg3probe_stylespace.gradients import METHODS, read_gradient_maps, write_gradient_maps
from sg3probe_stylespace.localization import (attribute_relevance, downsample_masks, localize,
                                              overlap_scores, ranked_channels, region_frequency,
                                              select_positives, top_regions)


class StyleSpace(Analyzer):
    name = "stylespace"
    description = ("StyleSpace (Wu et al.): per-channel S statistics, channels localized to segmented regions "
                   "by their gradient maps, attribute-specific channels from a few positives, and single-channel "
                   "edits s_c += alpha * sigma_c with the share of pixel change inside the target region.")
    needs = Needs(spaces={"s", "w", "wplus"}, scores=True, images=True, models="both")

    @dataclass
    class Config:
        gradient_images: int = 8  # images whose gradient maps are computed (the paper: ~1000; costly on CPU)
        gradient_roles: list[str] = field(default_factory=lambda: ["aligned"])  # models that get gradient maps
        pool: int = 32  # gradient maps are of the output average-pooled to pool x pool
        method: str = "auto"  # forward (JVP per channel), reverse (VJP per pooled pixel) or auto
        chunk: int = 0  # channels (forward) or output elements (reverse) per pass; 0: as memory_mb allows
        memory_mb: float = 2048  # memory budget of one pass of gradient maps (sets chunk when it is 0)
        images_per_chunk: int = 2  # images per resumable gradient-map file
        threshold: float = 0.5  # localization rule: sum of frac over the region set above this
        margin: float = 0.25  # ... and above the largest frac outside the set by this
        max_regions: int = 2  # largest region set a channel may be localized to
        top_channels: int = 5  # rows per region in the channel tables
        edit_candidates: int = 20  # per region, the best localized channels whose edits are tried on the
        #                            gradient images; the most local one is measured on the held-out samples
        edit_samples: int = 50  # held-out samples (after the gradient images) for the locality score
        alpha: float = 10.0  # edits for the locality score: s_c +- alpha * sigma_c
        grid_alphas: str = "-20,-10,0,10,20"
        grid_samples: int = 3  # held-out samples shown in each edit grid (0: no grids)
        dilation: int = 2  # pixels by which the target region is grown for the locality score
        w_edit_sigmas: float = 3.0  # W-vs-S: each attribute's W boundary edit, +- this many projection stds
        w_edit_ratio: float = 0.3  # ... boundaries fit on the top / bottom share of the other samples
        positives: int = 10  # attribute-specific channels: positives per attribute
        candidates: int = 100  # ... drawn from this many most extreme samples
        batch_size: int = 16

        def __post_init__(self) -> None:
            if self.method not in METHODS:
                raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
            if self.gradient_images < 1 or self.edit_samples < 1 or self.positives < 2 or self.edit_candidates < 1:
                raise ValueError("gradient_images, edit_samples and edit_candidates must be >= 1, positives >= 2")
            if self.chunk < 0 or self.memory_mb <= 0:
                raise ValueError(f"chunk must be >= 0 (0: from memory_mb) and memory_mb > 0; got {self.chunk}, "
                                 f"{self.memory_mb}")
            if not 0 < self.threshold <= 1 or self.margin < 0:
                raise ValueError(f"threshold must be in (0, 1] and margin >= 0; got {self.threshold}, {self.margin}")
            parse_strengths(self.grid_alphas, "grid_alphas")

    def prepare(self, cfg, plan: RunPlan) -> None:
        """A scorer that segments, and enough seeds: checked before sampling."""
        if plan.scorer is None or not plan.scorer.supports("segment"):
            raise ConfigError("the stylespace analyzer needs a scorer that can segment (e.g. --scorer toyfaces)")
        _check_count(len(plan.seeds), cfg)

    def analyze(self, samples, ctx: AnalysisContext, cfg) -> AnalysisResult:
        self.prepare(cfg, RunPlan.of(samples, ctx))
        study = _Study(ctx, cfg)
        for role, role_samples in samples.items():
            study.run_role(role, role_samples)
        return study.result()


class _Study:
    def __init__(self, ctx: AnalysisContext, cfg) -> None:
        self.ctx, self.cfg = ctx, cfg
        self.tables: dict[str, list[dict]] = {k: [] for k in ("channels", "locality", "w_vs_s", "attributes",
                                                              "timings")}
        self.heatmaps: dict[str, pd.DataFrame] = {}
        self.figures: dict = {}
        self.arrays: dict[str, np.ndarray] = {}
        self.metrics: dict = {}

    def _timing(self, role, step, started, count):
        self.tables["timings"].append({"model": role, "step": step, "seconds": round(time.perf_counter() - started, 2),
                                       "count": count})

    # ----- one model -----------------------------------------------------------------------------
    def run_role(self, role: str, samples) -> None:
        cfg, ctx = self.cfg, self.ctx
        G = ctx.generator(role).eval().requires_grad_(False)
        layout = style_layout(G)
        started = time.perf_counter()
        mean, std, count = style_statistics(samples["s"], layout.names)
        self._timing(role, "S statistics", started, count)
        self.arrays[f"s_mean_{role}"], self.arrays[f"s_std_{role}"] = mean, std
        _check_count(count, cfg)
        transforms = np.asarray(samples["transforms"], dtype=np.float32) if "transforms" in samples else None
        wplus = samples["wplus"]
        region_names, result = None, {}
        if role in cfg.gradient_roles:
            started = time.perf_counter()
            rows = np.arange(cfg.gradient_images)
            paths = write_gradient_maps(
                G, np.asarray(wplus[rows], dtype=np.float32), Path(ctx.work_dir) / role / "gradient_maps", layout,
                pool=cfg.pool, images_per_chunk=cfg.images_per_chunk, chunk=cfg.chunk or None,
                memory_mb=cfg.memory_mb, method=cfg.method,
                transforms=None if transforms is None else transforms[rows], progress=ctx.progress)
            self._timing(role, "gradient maps", started, len(rows))
            started = time.perf_counter()
            images = _render(G, wplus, rows, transforms, None, cfg.batch_size)
            segmentation = ctx.scorer.segment(images)
            region_names = tuple(segmentation.regions)
            masks = downsample_masks(np.asarray(segmentation.masks), cfg.pool, len(region_names))
            scores, first = [], 0
            for maps in read_gradient_maps(paths):
                scores.append(overlap_scores(maps, masks[first:first + len(maps)], len(region_names)))
                if first == 0:
                    overlay_maps = maps[0]
                first += len(maps)
            scores = np.concatenate(scores)
            present = np.stack([(masks == r).any(axis=(1, 2)) for r in range(len(region_names))], axis=1)
            frac = region_frequency(top_regions(scores), present)
            found = localize(frac, cfg.threshold, cfg.margin, cfg.max_regions)
            with np.errstate(all="ignore"):
                self.strength = np.nanmean(scores, axis=0)  # [C, R] mean overlap score n / o^2
            self.arrays[f"frac_{role}"] = frac
            self._localization_tables(role, layout, region_names, frac, found)
            self._timing(role, "localization", started, len(rows))
            selection = (rows, images, torch.as_tensor(np.asarray(segmentation.masks)))
            result = self._edits(role, G, layout, std, samples, transforms, region_names, frac, found, selection)
            self.figures[f"gradient overlays ({role})"] = figures.gradient_overlay(
                images[0], overlay_maps, [result[r][0] for r in result][:6], layout.channel_names(),
                list(result)[:6])
        self._attributes(role, samples, mean, std, layout)

    def _localization_tables(self, role, layout, region_names, frac, found) -> None:
        channel_names = layout.channel_names()
        layer_of = layout.layer_of()
        heat = np.zeros((len(layout.names), len(region_names)), dtype=np.int64)
        for channel, loc in enumerate(found):
            for region in loc.regions:
                heat[layer_of[channel], region] += 1
        self.heatmaps[role] = pd.DataFrame(heat, index=list(layout.names), columns=list(region_names))
        for region, region_name in enumerate(region_names):
            for rank, channel in enumerate(ranked_channels(found, frac, region, self.strength)[:self.cfg.top_channels]):
                loc = found[channel]
                self.tables["channels"].append({
                    "model": role, "region": region_name, "rank": rank + 1, "channel": channel_names[channel],
                    "layer": layout.names[layer_of[channel]], "regions": "+".join(region_names[r] for r in loc.regions),
                    "frac": round(float(np.nan_to_num(frac[channel, region])), 3), "share": round(loc.share, 3),
                    "margin": round(loc.margin, 3)})
        localized = sum(bool(loc.regions) for loc in found)
        self.metrics.setdefault(role, {})["localized_channels"] = localized
        self.metrics[role]["channels"] = len(found)

    def _edits(self, role, G, layout, std, samples, transforms, region_names, frac, found, selection) -> dict:
        """Edit the top channel of each region on the held-out samples; locality per region.

        The top channel is the most local edit, measured on the gradient images (`selection`: their
        rows, images and masks), among the region's `edit_candidates` best-ranked localized channels
        (by frac alone where none is localized); held-out samples then give its reported locality.
        """
        cfg, wplus = self.cfg, samples["wplus"]
        started = time.perf_counter()
        held = np.arange(cfg.gradient_images, cfg.gradient_images + cfg.edit_samples)
        originals = _render(G, wplus, held, transforms, None, cfg.batch_size)
        segmentation = self.ctx.scorer.segment(originals)
        masks = torch.as_tensor(np.asarray(segmentation.masks))
        selection_rows, selection_images, selection_masks = selection
        offsets = layout.offsets()

        def edit_of(channel: int) -> tuple:
            layer = int(np.searchsorted(offsets, channel, side="right") - 1)
            return layout.names[layer], channel - int(offsets[layer]), float(std[channel])

        def shares_of(edit, rows, images, inside) -> list[float]:
            return [_locality(_render(G, wplus, rows, transforms, edit + (sign * cfg.alpha,), cfg.batch_size),
                              images, inside) for sign in (-1.0, 1.0)]

        chosen = {}
        for region, region_name in enumerate(region_names):
            if np.all(np.isnan(frac[:, region])):
                continue  # no gradient image contains the region
            ranked = ranked_channels(found, frac, region, self.strength)
            localized = len(ranked) > 0
            if not localized:
                ranked = np.argsort(-np.nan_to_num(frac[:, region], nan=-1.0), kind="stable")
            candidates = [int(c) for c in ranked[:cfg.edit_candidates]]
            selection_inside = _dilate(selection_masks == region, cfg.dilation)
            tried = np.full(len(candidates), np.nan)  # stays NaN if no gradient image shows the region
            if selection_inside.any():
                tried[:] = [np.nanmean(shares_of(edit_of(c), selection_rows, selection_images, selection_inside))
                            for c in candidates]
            pick = 0 if np.isnan(tried).all() else int(np.nanargmax(tried))
            channel = candidates[pick]
            edit = edit_of(channel)
            inside = _dilate(masks == region, cfg.dilation)  # [N, H, W]
            shares = shares_of(edit, held, originals, inside)
            locality = float(np.nanmean(shares))
            chosen[region_name] = (channel, edit)
            self.tables["locality"].append({
                "model": role, "region": region_name, "channel": f"{edit[0]}:{edit[1]}", "localized": localized,
                "gradient_rank": pick + 1, "candidates": len(candidates),
                "selection_locality": round(float(tried[pick]), 3), "alpha": cfg.alpha, "locality": round(locality, 3),
                "locality_minus": round(shares[0], 3), "locality_plus": round(shares[1], 3),
                "samples_with_region": int(inside.flatten(1).any(dim=1).sum())})
            self.metrics.setdefault(role, {}).setdefault("locality", {})[region_name] = locality
            rows = held[:cfg.grid_samples]
            if len(rows):  # grid_samples = 0: no edit grids
                alphas = parse_strengths(cfg.grid_alphas)
                grid = [_render(G, wplus, rows, transforms, edit + (float(a),), cfg.batch_size) for a in alphas]
                self.figures[f"edit {region_name} ({role})"] = figures.edit_grid(
                    torch.stack(grid, dim=1), alphas, f"{region_name}: {edit[0]}:{edit[1]}  locality {locality:.2f}")
        self._timing(role, "edits", started, len(held))
        self._w_versus_s(role, G, samples, held, transforms, originals, masks, region_names)
        return chosen

    def _w_versus_s(self, role, G, samples, held, transforms, originals, masks, region_names) -> None:
        """The paper's comparison: locality of the best W (InterFaceGAN) edit of any attribute in a
        region versus the best single S channel there, on the same held-out samples."""
        cfg = self.cfg
        if "scores" not in samples:
            return
        started = time.perf_counter()
        w = np.asarray(samples["w"], dtype=np.float64)
        train = np.setdiff1d(np.arange(len(w)), np.arange(cfg.gradient_images + cfg.edit_samples))
        inside = [_dilate(masks == r, cfg.dilation) for r in range(len(region_names))]
        best: dict[str, tuple[float, str]] = {}
        for attribute in self.ctx.scorer.attributes:
            values = np.asarray(samples["scores"][attribute.name], dtype=np.float64)[train]
            try:
                boundary = train_boundary(w[train], values, cfg.w_edit_ratio, random_state=self.ctx.seed)
            except ValueError:
                continue  # too few samples on a side
            shares = np.full((2, len(region_names)), np.nan)
            for k, sign in enumerate((-1.0, 1.0)):
                step = sign * cfg.w_edit_sigmas * boundary.projection_std * boundary.normal
                edited = _render(G, _wplus_plus(samples["wplus"], held, step), np.arange(len(held)),
                                 None if transforms is None else transforms[held], None, cfg.batch_size)
                for r, region_mask in enumerate(inside):
                    shares[k, r] = _locality(edited, originals, region_mask)
            for r, region_name in enumerate(region_names):
                if np.all(np.isnan(shares[:, r])):
                    continue
                locality = float(np.nanmean(shares[:, r]))
                if locality > best.get(region_name, (-1.0, ""))[0]:
                    best[region_name] = (locality, attribute.name)
        for row in self.tables["locality"]:
            if row["model"] != role or row["region"] not in best:
                continue
            w_locality, attribute = best[row["region"]]
            self.tables["w_vs_s"].append({
                "model": role, "region": row["region"], "best S channel": row["channel"],
                "S locality": row["locality"], "best W edit (attribute)": attribute,
                "W locality": round(w_locality, 3), "S - W": round(row["locality"] - w_locality, 3)})
        self._timing(role, "W vs S", started, len(held))


    def _attributes(self, role, samples, mean, std, layout) -> None:
        cfg = self.cfg
        if "scores" not in samples:
            return
        flat = _flat_styles(samples["s"], layout.names)
        channel_names = layout.channel_names()
        rng = self.ctx.rng(2)
        for attribute in self.ctx.scorer.attributes:
            values = np.asarray(samples["scores"][attribute.name], dtype=np.float64)
            for sign in (1.0, -1.0):
                try:
                    positives = select_positives(values, cfg.positives, cfg.candidates, sign, rng)
                except ValueError:
                    continue
                theta = attribute_relevance(flat[positives], mean, std)
                for rank, channel in enumerate(np.argsort(-theta, kind="stable")[:cfg.top_channels]):
                    self.tables["attributes"].append({
                        "model": role, "attribute": attribute.name, "direction": "high" if sign > 0 else "low",
                        "rank": rank + 1, "channel": channel_names[channel], "relevance": round(float(theta[channel]), 3)})

    # ----- result ---------------------------------------------------------------------------------
    def result(self) -> AnalysisResult:
        tables = {name: pd.DataFrame(rows) for name, rows in self.tables.items() if rows}
        figs = dict(self.figures)
        for role, heat in self.heatmaps.items():
            tables[f"localized channels per layer ({role})"] = heat
            figs[f"layer x region ({role})"] = figures.heatmap(heat, f"localized channels, {role}")
        lines = []
        for role, values in self.metrics.items():
            if "locality" in values:
                parts = ", ".join(f"{r} {v:.2f}" for r, v in values["locality"].items())
                lines.append(f"{role}: {values['localized_channels']} of {values['channels']} channels localized; "
                             f"locality of the top channel per region: {parts}.")
        for role, group in pd.DataFrame(self.tables["w_vs_s"]).groupby("model", sort=False) if self.tables["w_vs_s"] else []:
            wins = int((group["S - W"] > 0).sum())
            self.metrics.setdefault(role, {})["regions_s_more_local_than_w"] = wins
            lines.append(f"{role}: the best single S channel is more local than the best W edit in {wins} of "
                         f"{len(group)} regions (median S - W locality {group['S - W'].median():+.2f}).")
        summary = " ".join(lines) or "No gradient maps were computed (gradient_roles is empty)."
        edit_figures = [name for name in figs if name.startswith("edit ")]
        sections = [
            Section("Locally-active channels", "Channels localized to segmented regions by their gradient maps "
                    "(frac rule with thresholds "
                    f"{self.cfg.threshold} / {self.cfg.margin}); ToRGB excluded.",
                    tables=[t for t in tables if t == "channels" or t.startswith("localized")],
                    figures=[f for f in figs if f.startswith("layer x region") or f.startswith("gradient")]),
            Section("Single-channel edits", f"s_c += alpha * sigma_c; locality = share of mean |pixel change| inside "
                    f"the region dilated by {self.cfg.dilation} px over {self.cfg.edit_samples} held-out samples. "
                    f"Each region's channel is the most local edit on the gradient images among its "
                    f"{self.cfg.edit_candidates} best-ranked localized channels (gradient_rank: its place in "
                    "that ranking; selection_locality: its locality there).",
                    tables=["locality"] if "locality" in tables else [], figures=edit_figures),
            Section("W versus S", f"The paper's finding: single S channels edit a region more locally than W "
                    f"directions. For each region, the best single S channel's locality (above) beside the most "
                    f"local of the attributes' InterFaceGAN W edits (+-{self.cfg.w_edit_sigmas:g} projection stds, "
                    "applied to every W+ row), on the same held-out samples.",
                    tables=["w_vs_s"] if "w_vs_s" in tables else []),
            Section("Attribute-specific channels", f"relevance |mean| / std of normalised S over "
                    f"{self.cfg.positives} positives.", tables=["attributes"] if "attributes" in tables else []),
        ]
        return AnalysisResult(metrics=self.metrics, tables=tables, figures=figs, arrays=self.arrays,
                              summary=summary, title="StyleSpace: localized channels and edits", sections=sections)


def _check_count(samples: int, cfg) -> None:
    needed = cfg.gradient_images + cfg.edit_samples
    if samples < needed:
        raise ConfigError(f"stylespace: {samples} samples, but gradient_images + edit_samples = {needed}; "
                          "sample more seeds or lower them")


def _flat_styles(styles, names) -> np.ndarray:
    return np.concatenate([np.asarray(styles[n], dtype=np.float32) for n in names], axis=1)


def _render(G, wplus, rows, transforms, edit, batch_size) -> torch.Tensor:
    """Images [N, C, H, W] of sample rows; edit = (layer, channel, sigma, alpha) adds alpha * sigma."""
    out = []
    for start in range(0, len(rows), batch_size):
        index = rows[start:start + batch_size]
        ws = torch.as_tensor(np.asarray(wplus[index], dtype=np.float32), device=G.device)
        transform = None if transforms is None else torch.as_tensor(transforms[index], device=G.device)
        with torch.no_grad():
            styles = G.styles(ws)
            if edit is not None:
                layer, channel, sigma, alpha = edit
                styles[layer] = styles[layer].clone()
                styles[layer][:, channel] += alpha * sigma
            out.append(G.synthesis(styles=styles, transform=transform).cpu())
    return torch.cat(out)


def _locality(edited: torch.Tensor, originals: torch.Tensor, inside: torch.Tensor) -> float:
    """Share of the mean |pixel change| [N, C, H, W] inside the masks [N, H, W], over the images
    that contain the region (NaN if none does, or nothing changed)."""
    change = (edited - originals).abs().mean(dim=1)  # [N, H, W]
    has = inside.flatten(1).any(dim=1)
    total = change[has].sum()
    return float((change * inside)[has].sum() / total) if total > 0 else float("nan")


def _wplus_plus(wplus, rows, step) -> np.ndarray:
    """The W+ codes of sample rows with a W step added to every row of each."""
    return np.asarray(wplus[rows], dtype=np.float32) + step.astype(np.float32)[None, None, :]


def _dilate(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grow boolean masks [N, H, W] by `pixels` (a square neighbourhood)."""
    if pixels <= 0:
        return masks
    grown = F.max_pool2d(masks[:, None].float(), 2 * pixels + 1, stride=1, padding=pixels)
    return grown[:, 0] > 0
