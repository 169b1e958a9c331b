"""The `sefa` and `ganspace` analyzers: closed-form W directions and what each one edits.

Neither method looks at labels: they find directions from the weights (SeFa) or from the spread of W
(GANSpace). What a direction means is then measured: held-out samples are edited along it from the
lowest to the highest strength (in sigmas of W along the direction) and read by the run's scorer.
Each direction is saved as a direction file for `sg3probe edit`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from sg3probe.analyzer import AnalysisContext, Analyzer, Needs, RunPlan, model_sha256
from sg3probe.edit_effects import EditBench, View, change_rate
from sg3probe.editing import Direction, format_layers, parse_layers, parse_strengths, save_direction
from sg3probe.errors import ConfigError
from sg3probe.figures import image_rows
from sg3probe.results import AnalysisResult, Section
from sg3probe.steps import StepRecord
from sg3probe_closedform import figures
from sg3probe_closedform.directions import Components, ganspace, sefa

POSE_READINGS = ("angle_deg", "tx", "ty")  # read with the scorer's pose(), when it has one
CAPTIONS = {
    "components": "One row per direction, strongest first. share: its eigenvalue's (SeFa) or variance's (GANSpace) "
                  "share of the total; sigma: the std of the samples' W along it, the unit of the edit strengths; "
                  "strongest / second: the attributes whose mean move between the lowest and highest strength is "
                  "largest, in natural stds (signed: + means the attribute rises with the direction); purity: the "
                  "strongest move's share of the sum of every attribute's |move|; angle_change_deg and "
                  "shift_change: the mean move of the scorer's pose reading (degrees; fractions of the width); "
                  "file: the direction file, for `sg3probe edit --direction`.",
    "effects": "One row per (direction, attribute): move_std, the mean move between the ends in natural stds "
               "(signed); change_rate, the share of samples in which the attribute flips (binary) or moves by "
               "change_std natural stds (continuous) at any strength.",
}


@dataclass
class _Group:
    """Directions found together, and the ws rows they are applied to."""

    name: str  # "synthesis" or "input" (SeFa); "W" (GANSpace)
    components: Components
    rows: list[int]
    sigmas: np.ndarray  # [K] the std of W along each direction
    pseudo_align: bool = True  # False: the directions move ws[0], so the unaligned model keeps its own pose


class _ClosedForm(Analyzer):
    """What both analyzers share: the edit measurements, direction files and the report."""

    method: ClassVar[str]
    needs = Needs(spaces={"w", "wplus"}, scores=True, images=True, models="both")

    def prepare(self, cfg, plan: RunPlan) -> None:
        if plan.scorer is None:
            raise ConfigError(f"the {self.name} analyzer needs a scorer (--scorer) to measure what its directions edit")
        if len(plan.seeds) < cfg.edit_samples:
            raise ConfigError(f"{self.name}: {len(plan.seeds)} samples are fewer than the {cfg.edit_samples} it edits "
                              f"({self.name}.edit_samples); sample more seeds or lower it")

    def find(self, role: str, G, samples, ctx: AnalysisContext, cfg) -> list[_Group]:
        raise NotImplementedError

    def analyze(self, samples, ctx: AnalysisContext, cfg) -> AnalysisResult:
        self.prepare(cfg, RunPlan.of(samples, ctx))
        records = {}
        for role, role_samples in samples.items():
            steps = ctx.saved_steps(cfg, role_samples)
            record = steps.get(role)
            if record is None:
                record = self._study(role, role_samples, ctx, cfg)
                steps.put(role, record)
            else:
                ctx.log.info("%s: the %s model's directions are taken from %s", self.name, role, steps.folder)
            records[role] = record
        return self._result(records, cfg)

    # ----- one model -----------------------------------------------------------------------------
    def _study(self, role: str, samples, ctx: AnalysisContext, cfg) -> StepRecord:
        G = ctx.generator(role)
        strengths = np.sort(parse_strengths(cfg.strengths))
        scores = {name: np.asarray(values, np.float64) for name, values in samples["scores"].items()}
        natural_std = {name: float(np.nanstd(values)) or 1.0 for name, values in scores.items()}
        kinds = {a.name: a.kind for a in ctx.scorer.attributes}
        held = np.sort(ctx.rng(1).choice(len(samples["seeds"]), cfg.edit_samples, replace=False))
        held_ws = torch.from_numpy(np.asarray(samples["wplus"], np.float32)[held])
        readings = _Readings(ctx.scorer)
        record = StepRecord(tables={"components": [], "effects": [], "spectrum": [], "grids": []},
                            arrays={f"held_out_seeds_{role}": np.asarray(samples["seeds"])[held]})
        folder = Path(ctx.work_dir) / "directions" / role
        sha256 = model_sha256(samples)
        for group in self.find(role, G, samples, ctx, cfg):
            for k, share in enumerate(group.components.share):
                record.tables["spectrum"].append({"model": role, "group": group.name, "component": k,
                                                  "share": float(share)})
            record.arrays[f"{group.name}_{role}"] = group.components.vectors
            view = View("aligned") if role == "aligned" or not group.pseudo_align else View(
                "pseudo-aligned", pseudo_align=True)
            bench = EditBench(G, readings, held_ws, view, batch_size=cfg.batch_size, keep=cfg.grid_samples)
            shown = min(cfg.components, len(group.components.vectors))
            for k in ctx.progress(range(shown), total=shown, desc=f"{self.name} {role} {group.name}"):
                metadata = {"kind": f"{self.name}-direction", "model": role, "model_sha256": sha256,
                            "group": group.name, "component": k, "share": float(group.components.share[k]),
                            "value": float(group.components.values[k])}
                direction = Direction(group.components.vectors[k], layers=group.rows,
                                      projection_std=float(group.sigmas[k]),
                                      attribute=f"{self.name} {group.name} {k}", metadata=metadata)
                path = save_direction(direction, folder / f"{group.name}_{k:02d}")
                effect = bench.measure(direction, strengths, direction.raw_strengths(strengths, raw=False))
                row, effects = _summarise(effect, kinds, natural_std, cfg.change_std)
                record.tables["components"].append({
                    "model": role, "group": group.name, "component": k, "layers": format_layers(group.rows) or "all",
                    "share": float(group.components.share[k]), "sigma": float(group.sigmas[k]), **row,
                    "file": ctx.shown_path(path)})
                record.tables["effects"] += [{"model": role, "group": group.name, "component": k, **e} for e in effects]
                if effect.grid is not None:
                    for sample in range(len(effect.grid)):
                        key = f"grid {role} {group.name} {k} {sample}"
                        label = _label(k, row, geometry=not group.pseudo_align)
                        record.tables["grids"].append({"title": f"{role}, {group.name}",
                                                       "label": label + (f" ({sample})" if sample else ""),
                                                       "array": key})
                        record.arrays[key] = effect.grid[sample]
        return record

    # ----- the result ----------------------------------------------------------------------------
    def _result(self, records: dict[str, StepRecord], cfg) -> AnalysisResult:
        rows = {name: [row for record in records.values() for row in record.tables[name]]
                for name in ("components", "effects", "spectrum", "grids")}
        tables = {name: pd.DataFrame(rows[name]) for name in ("components", "effects") if rows[name]}
        strengths = np.sort(parse_strengths(cfg.strengths))
        figs = {}
        if rows["spectrum"]:
            figs["spectrum"] = figures.spectrum(pd.DataFrame(rows["spectrum"]), self.method)
        if "effects" in tables:
            figs["what each direction edits"] = figures.effect_heatmaps(tables["effects"])
        grids: dict[str, dict[str, np.ndarray]] = {}
        arrays = {}
        for record in records.values():
            for row in record.tables["grids"]:
                grids.setdefault(row["title"], {})[row["label"]] = record.arrays[row["array"]]
            arrays.update({name: value for name, value in record.arrays.items() if not name.startswith("grid ")})
        for title, grid in grids.items():
            figs[f"edits: {title}"] = image_rows(grid, title, [f"{s:+g}σ" for s in strengths])
        components = tables.get("components", pd.DataFrame())
        summary = _reading(self.method, components, strengths, cfg)
        sections = [
            Section("Directions", f"{self.method}; edits from {strengths[0]:+g} to {strengths[-1]:+g} sigma of "
                                  f"{cfg.edit_samples} held-out samples per model.", ["components"], ["spectrum"]),
            Section("What each direction edits", "", ["effects"], ["what each direction edits"]),
            Section("Edit grids", "", [], [name for name in figs if name.startswith("edits: ")]),
        ]
        return AnalysisResult(metrics=_metrics(components, cfg), tables=tables, figures=figs, arrays=arrays,
                              summary=summary, title=f"{self.method}: closed-form directions and what they edit",
                              sections=sections, captions=CAPTIONS)


class SeFa(_ClosedForm):
    name = "sefa"
    method = "SeFa (Shen & Zhou)"
    description = ("SeFa: W directions in closed form from the style affines' weights (eigenvectors of A A^T), for "
                   "the synthesis layers and apart for the input affine (geometry); what each edits, measured.")

    @dataclass
    class Config:
        components: int = 10  # directions measured and saved, per group
        layers: str = ""  # ws rows whose style affines are factorised and edited; "" = every synthesis layer (1-)
        input: bool = True  # also factorise the input affine (ws row 0: rotation and translation), apart
        strengths: str = "-3:3:5"  # sigmas of W along the direction, start:stop:count, ends included
        edit_samples: int = 32
        change_std: float = 1.0
        grid_samples: int = 1
        batch_size: int = 32

        def __post_init__(self) -> None:
            _check_common(self)
            if self.layers.strip():
                rows = parse_layers(self.layers, 1 << 20)
                if 0 in rows:
                    raise ValueError(f"layers {self.layers!r}: row 0 is the input affine (geometry, rank <= 4); "
                                     "it is factorised apart with input = true")

    def find(self, role: str, G, samples, ctx, cfg) -> list[_Group]:
        rows = parse_layers(cfg.layers, G.num_ws) if cfg.layers.strip() else list(range(1, G.num_ws))
        synthesis = G.synthesis
        weights = [_affine_weight(getattr(synthesis, synthesis.layer_names[row - 1]).affine) for row in rows]
        w = np.asarray(samples["w"], np.float64)

        def spread(found: Components) -> np.ndarray:  # the std of the samples' W along each direction
            return np.std(w @ found.vectors.T, axis=0)

        found = sefa(weights, cfg.components)
        groups = [_Group("synthesis", found, rows, spread(found))]
        if cfg.input:
            found = sefa([_affine_weight(synthesis.input.affine)], cfg.components)
            if len(found.vectors):
                groups.append(_Group("input", found, [0], spread(found), pseudo_align=False))
            else:
                ctx.log.warning("sefa: the %s model's input affine has rank 0 (its pose does not depend on w)", role)
        return groups


class GANSpace(_ClosedForm):
    name = "ganspace"
    method = "GANSpace (Härkönen et al.)"
    description = ("GANSpace: the principal components of W (incremental PCA over many mapped samples), edits "
                   "along each in sigmas of its spread; what each edits, measured.")

    @dataclass
    class Config:
        components: int = 10  # directions measured and saved
        pca_components: int = 80
        pca_samples: int = 300_000  # z mapped to W for the PCA (its own seeds, from the run seed)
        chunk: int = 2000  # samples per incremental PCA step (>= pca_components)
        layers: str = ""  # ws rows the edits move, ends included; "" = every row
        strengths: str = "-3:3:5"
        edit_samples: int = 32
        change_std: float = 1.0
        grid_samples: int = 1
        batch_size: int = 32

        def __post_init__(self) -> None:
            _check_common(self)
            if not 1 <= self.components <= self.pca_components:
                raise ValueError(f"components ({self.components}) must be 1 to pca_components ({self.pca_components})")
            if self.chunk < self.pca_components or self.pca_samples < self.chunk:
                raise ValueError(f"chunk ({self.chunk}) must be >= pca_components ({self.pca_components}) and "
                                 f"pca_samples ({self.pca_samples}) >= chunk")
            if self.layers.strip():
                parse_layers(self.layers, 1 << 20)

    def find(self, role: str, G, samples, ctx, cfg) -> list[_Group]:
        if G.c_dim:
            raise ConfigError("ganspace: conditional generators (c_dim > 0) are not supported")
        if cfg.pca_components > G.w_dim:
            raise ConfigError(f"ganspace.pca_components ({cfg.pca_components}) exceeds this model's w_dim ({G.w_dim})")
        rows = parse_layers(cfg.layers, G.num_ws) if cfg.layers.strip() else []
        rng = ctx.rng(7)
        counts = [cfg.chunk] * (cfg.pca_samples // cfg.chunk)
        counts[-1] += cfg.pca_samples % cfg.chunk

        def chunks():
            for count in ctx.progress(counts, total=len(counts), desc="ganspace: mapping W for the PCA"):
                z = torch.from_numpy(rng.standard_normal((count, G.z_dim)).astype(np.float32)).to(G.device)
                with torch.no_grad():
                    yield G.mapping(z, None)[:, 0].double().cpu().numpy()

        found = ganspace(chunks(), cfg.pca_components)
        return [_Group("W", found, rows, found.stds)]


class _Readings:
    """The run's scorer as EditBench reads it, with the pose (angle_deg, tx, ty) added when it has one."""

    def __init__(self, scorer) -> None:
        self.scorer = scorer
        self.pose = scorer.supports("pose")

    def supports(self, capability: str) -> bool:
        return False if capability == "segment" else self.scorer.supports(capability)

    def score(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        readings = dict(self.scorer.score(images))
        if self.pose:
            pose = self.scorer.pose(images)
            readings.update({f"pose {name}": np.asarray(pose[name]) for name in POSE_READINGS})
        return readings


def _affine_weight(affine) -> np.ndarray:
    """The effective weight [out, w_dim] of an equalised-lr FullyConnected (the stored weight times its gain)."""
    return (affine.weight.detach().double() * affine.weight_gain).cpu().numpy()


def _check_common(cfg) -> None:
    strengths = parse_strengths(cfg.strengths)
    if not strengths.min() < 0 < strengths.max():
        raise ValueError(f"strengths {cfg.strengths!r} must go from below 0 to above 0, e.g. '-3:3:5'")
    if cfg.components < 1 or cfg.edit_samples < 2 or cfg.grid_samples < 0 or cfg.batch_size < 1:
        raise ValueError("components must be >= 1, edit_samples >= 2, grid_samples >= 0 and batch_size >= 1")
    if cfg.change_std <= 0:
        raise ValueError("change_std must be > 0")


def _summarise(effect, kinds: dict[str, str], natural_std: dict[str, float], change_std: float):
    """One direction's row of the components table, and its rows of the effects table."""
    moves, effects = {}, []
    for name, kind in kinds.items():
        if name not in effect.scores:
            continue
        scores, std = effect.scores[name], natural_std.get(name, 1.0)
        moves[name] = float(np.nanmean(scores[-1] - scores[0]) / std)
        effects.append({"attribute": name, "kind": kind, "move_std": moves[name],
                        "change_rate": change_rate(scores, effect.original[name], kind, std, change_std)})
    order = sorted(moves, key=lambda n: -abs(moves[n]))
    total = sum(abs(v) for v in moves.values())
    row = {"strongest": order[0] if order else "", "strongest_move_std": moves[order[0]] if order else np.nan,
           "second": order[1] if len(order) > 1 else "",
           "second_move_std": moves[order[1]] if len(order) > 1 else np.nan,
           "purity": abs(moves[order[0]]) / total if total else np.nan}
    if "pose angle_deg" in effect.scores:
        turn = (effect.scores["pose angle_deg"][-1] - effect.scores["pose angle_deg"][0] + 180) % 360 - 180
        shift = np.hypot(effect.scores["pose tx"][-1] - effect.scores["pose tx"][0],
                         effect.scores["pose ty"][-1] - effect.scores["pose ty"][0])
        row.update({"angle_change_deg": float(np.mean(turn)), "shift_change": float(np.mean(shift))})
    return row, effects


def _label(k: int, row: dict, geometry: bool) -> str:
    """A grid row's name: the pose change of a geometry direction, else its strongest attribute and sign."""
    if geometry and np.isfinite(row.get("angle_change_deg", np.nan)):
        return f"{k}: turn {row['angle_change_deg']:+.0f}°, shift {row['shift_change']:.2f}"
    return f"{k}: {row['strongest']}{'+' if row['strongest_move_std'] >= 0 else '-'}"


def _named(components: pd.DataFrame) -> pd.DataFrame:
    """The directions that move one attribute by at least one natural std, at least half of all they move."""
    if components.empty:
        return components
    return components[(components["strongest_move_std"].abs() >= 1.0) & (components["purity"] >= 0.5)]


def _metrics(components: pd.DataFrame, cfg) -> dict:
    metrics = {}
    named = _named(components)
    for (model, group), part in components.groupby(["model", "group"], sort=False) if not components.empty else ():
        found = named[(named["model"] == model) & (named["group"] == group)]
        metrics[f"{model} {group}"] = entry = {"directions": len(part), "single_attribute": len(found),
                                               "attributes": sorted(set(found["strongest"]))}
        if "angle_change_deg" in part:
            entry.update({"max_turn_deg": float(part["angle_change_deg"].abs().max()),
                          "max_shift": float(part["shift_change"].max())})
    return metrics


def _reading(method: str, components: pd.DataFrame, strengths: np.ndarray, cfg) -> str:
    if components.empty:
        return f"{method} found no directions."
    parts = []
    named = _named(components)
    for (model, group), part in components.groupby(["model", "group"], sort=False):
        if group == "input" and "angle_change_deg" in part:
            turn = part.loc[part["angle_change_deg"].abs().idxmax()]
            shift = part.loc[part["shift_change"].idxmax()]
            parts.append(f"{model} model, input affine ({len(part)} directions): direction {int(turn['component'])} "
                         f"turns the face by {turn['angle_change_deg']:+.1f} degrees and direction "
                         f"{int(shift['component'])} moves it by {shift['shift_change']:.2f} of the width between "
                         f"{strengths[0]:+g} and {strengths[-1]:+g} sigma.")
            continue
        found = named[(named["model"] == model) & (named["group"] == group)]
        top = part.iloc[0]
        text = (f"{model} model, {group}: {len(found)} of its {len(part)} strongest directions edit one attribute "
                f"(it moves by at least one natural std between {strengths[0]:+g} and {strengths[-1]:+g} sigma, "
                f"purity >= 0.5: {', '.join(sorted(set(found['strongest']))) or 'none'}); the first direction moves "
                f"{top['strongest']} by {top['strongest_move_std']:+.2f} std (purity {top['purity']:.2f})")
        if "angle_change_deg" in part and part["angle_change_deg"].notna().any():
            turn = part.loc[part["angle_change_deg"].abs().idxmax()]
            text += f"; direction {int(turn['component'])} turns the face by {turn['angle_change_deg']:+.1f} degrees"
        parts.append(text + ".")
    return " ".join(parts)
