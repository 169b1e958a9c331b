"""The `interfacegan` analyzer: attribute boundaries, their edits, side effects and layer ranges."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sg3probe.analyzer import AnalysisContext, Analyzer, Needs, RunPlan, model_sha256
from sg3probe.boundaries import Boundary, class_sizes, conditional_boundary, train_boundary
from sg3probe.edit_effects import EditBench, View, change_rate, mean_shift, target_response
from sg3probe.editing import Direction, format_layers, parse_layers, parse_strengths
from sg3probe.errors import ConfigError
from sg3probe.figures import image_rows
from sg3probe.models.transforms import batch_inverse_transforms
from sg3probe.results import AnalysisResult, Section
from sg3probe.steps import StepRecord
from sg3probe_interfacegan import figures
from sg3probe_interfacegan.row_search import forward_rows

UNALIGNED_VIEWS = ("pseudo-aligned", "transformed", "natural")
# Where each toy-world attribute shows in the toy scorer's segmentation.
TOY_REGIONS = {"smiling": "mouth", "eyeglasses": "eyeglasses", "bangs": "hair", "skin_tone": "skin",
               "hair_color": "hair", "eye_openness": "eyes", "face_width": "skin", "background_hue": "background"}
LAYER_RANGES = {"coarse": "0-4", "medium": "5-7", "fine": "8-15"}
# What each table's columns mean, shown under the table in the report.
CAPTIONS = {
    "boundaries": "One SVM boundary per model, space (W+ with its layer range) and attribute. dims: the code size; "
                  "validation_accuracy on the held-back part of the top/bottom classes; middle_accuracy on the "
                  "samples between them (labelled by score > (max + min) / 2); projection_std: the std of the "
                  "samples' projection on the unit normal, the sigma of the edit strengths.",
    "edits": "Held-out samples edited from the lowest to the highest strength. success_rate: a binary decision "
             "crosses 0, a continuous value rises by change_std natural stds; monotone_rate: no step between "
             "neighbouring strengths goes down by more than 0.1 natural std; mean_change_std: the mean move between "
             "the ends in natural stds; worst_uncorrelated(_change_rate): the attribute with |r| below the "
             "correlation threshold that changes in most samples, and that share. change_inside / outside: mean "
             "|pixel change| (0-255) per pixel inside / outside the attribute's region; share_inside: the inside "
             "part of the total; region_area: the region's share of the image.",
    "reach": "The same success and side-effect rates for an edit going only to +-reach_sigma.",
    "entanglement": "One row per (edit, measured attribute): change_rate, the share of samples in which the "
                    "measured attribute changes (flips, or moves by change_std natural stds); mean_shift_std, its "
                    "mean move between the ends; correlation, its correlation with the edited attribute.",
    "conditional": "The boundary of `attribute` with `condition` projected out. side_effect_*: the condition's "
                   "|mean move| in natural stds between the ends; reduction: 1 - conditional / unconditional; "
                   "target_move_*: the target's own mean move; cosine_to_unconditional: of the two normals.",
    "layers": "The W boundary applied to some ws rows only, pushing training samples across it at the largest "
              "strength: target_effect_std and side_effect_std (mean move of the others) in natural stds; "
              "relative_effect: the target effect as a share of the all-row one.",
    "attribute rows": "The rows forward selection found for each attribute (found: whether any row gained enough), "
                      "their target and side effects against all rows', and how many row sets were tried.",
    "timings": "Seconds and renders per model and step.",
    "not studied": "Attributes left out for a model, and why.",
}
MIN_TRAINING = 20  # samples left for boundary training after the held-out ones
MIN_CLASS = 4  # a binary attribute needs this many training samples on its rarer side


class InterFaceGAN(Analyzer):
    name = "interfacegan"
    description = ("InterFaceGAN (Shen et al.): a linear SVM boundary per attribute in W (and on request W+ per "
                   "layer range, and S), conditional boundaries, edits of held-out samples with their response "
                   "and side effects, the W+ rows each attribute lives in; aligned and unaligned models.")
    needs = Needs(spaces={"w", "wplus"}, scores=True, images=True, models="both")

    @dataclass
    class Config:
        attributes: list[str] = field(default_factory=list)  # [] = every attribute of the scorer
        spaces: list[str] = field(default_factory=lambda: ["w"])  # w, wplus (per layer range), s
        # Top/bottom share per class (a count if > 1); the paper's 0.02 assumes 500k samples. For a binary
        # attribute it is capped at the smaller side of its decision, so that no class takes wrong labels.
        ratio: float = 0.3
        split: float = 0.7  # training share of each class
        conditions: list[str] = field(default_factory=list)  # project these out of every other boundary
        auto_condition: bool = True  # also condition on attributes correlated with the target
        correlation_threshold: float = 0.2  # |r| from which attributes count as correlated
        edit_samples: int = 32  # held out from boundary training, edited and scored
        strengths: str = "-3:3:5"  # sigmas of the projection, start:stop:count, ends included
        change_std: float = 1.0  # a continuous attribute "moves" by this many natural stds
        regions: dict[str, str] = field(default_factory=lambda: dict(TOY_REGIONS))  # attribute -> region
        unaligned_views: list[str] = field(default_factory=lambda: ["pseudo-aligned", "transformed"])
        max_angle: float = 30.0  # degrees, user transforms of the "transformed" view
        max_translate: float = 0.12  # fraction of the image, "transformed" view
        layer_ranges: dict[str, str] = field(default_factory=lambda: dict(LAYER_RANGES))
        single_layers: bool = True  # also every ws row alone
        # Training samples (never the held-out ones) pushed across each boundary per layer range.
        layer_samples: int = 16
        layer_roles: list[str] = field(default_factory=lambda: ["aligned", "unaligned"])
        # Find the ws rows each attribute lives in (forward selection on the layer samples: add the row
        # that most raises target move - row_side_weight * mean side move, while it gains >= row_min_gain
        # natural stds; candidates: rows that alone give row_candidate_share of the all-row move) and edit
        # those rows alone too ("w rows" in the tables, `<attribute>_rows` files).
        row_search: bool = True
        row_side_weight: float = 2.0
        row_min_gain: float = 0.05
        row_candidate_share: float = 0.05  # only rows that alone move the target this share of all rows' move
        grid_samples: int = 2  # held-out samples shown in the edit grids
        batch_size: int = 32

        def __post_init__(self) -> None:
            unknown = sorted(set(self.spaces) - {"w", "wplus", "s"})
            if unknown or "w" not in self.spaces:
                raise ValueError(f"spaces must include 'w' and may add 'wplus', 's'; got {self.spaces}")
            unknown = sorted(set(self.unaligned_views) - set(UNALIGNED_VIEWS))
            if unknown or not self.unaligned_views:
                raise ValueError(f"unaligned_views: {unknown or 'none given'}; accepted: {', '.join(UNALIGNED_VIEWS)}")
            strengths = parse_strengths(self.strengths)
            if not (strengths.min() < 0 < strengths.max()):
                raise ValueError(f"strengths {self.strengths!r} must go from below 0 to above 0, e.g. '-3:3:5'")
            if self.edit_samples < 2 or self.layer_samples < 1:
                raise ValueError("edit_samples must be >= 2 and layer_samples >= 1")
            if self.ratio <= 0 or not 0 < self.split < 1:
                raise ValueError(f"ratio must be > 0 (a share, or a count if > 1) and split in (0, 1); "
                                 f"got ratio {self.ratio}, split {self.split}")
            if self.change_std <= 0 or self.batch_size < 1 or self.grid_samples < 0:
                raise ValueError("change_std must be > 0, batch_size >= 1 and grid_samples >= 0")
            for name, text in self.layer_ranges.items():
                try:
                    parse_layers(text, 1 << 20)  # the syntax; rows beyond a generator's are clipped
                except ConfigError as error:
                    raise ValueError(f"layer_ranges.{name}: {error}") from None

    def prepare(self, cfg, plan: RunPlan) -> None:
        """Check the attributes against the scorer and the sample count against the split, before sampling."""
        if plan.scorer is None:
            raise ConfigError("the interfacegan analyzer needs a scorer (--scorer)")
        declared = [a.name for a in plan.scorer.attributes]
        missing = [name for name in cfg.attributes + cfg.conditions if name not in declared]
        if missing:
            raise ConfigError(f"interfacegan: scorer {plan.scorer.name!r} has no attribute(s) {', '.join(missing)}; "
                              f"it has {', '.join(declared)}")
        training = len(plan.seeds) - cfg.edit_samples
        if training < MIN_TRAINING:
            raise ConfigError(f"interfacegan: {len(plan.seeds)} samples leave {max(training, 0)} for training after "
                              f"holding out {cfg.edit_samples} (at least {MIN_TRAINING} needed); sample more seeds "
                              "or lower interfacegan.edit_samples")
        try:
            class_sizes(training, cfg.ratio, cfg.split)
        except ValueError as error:
            raise ConfigError(f"interfacegan: {error} (interfacegan.ratio, or more seeds)") from None

    def analyze(self, samples, ctx: AnalysisContext, cfg) -> AnalysisResult:
        self.prepare(cfg, RunPlan.of(samples, ctx))  # checked again when called from Python
        study = _Study(ctx, cfg)
        for role, role_samples in samples.items():
            study.run_role(role, role_samples)
        return study.result()


class _Study:
    """The state of one analysis: tables grow role by role, then become the result."""

    def __init__(self, ctx: AnalysisContext, cfg) -> None:
        self.ctx, self.cfg, self.scorer = ctx, cfg, ctx.scorer
        declared = {a.name: a for a in self.scorer.attributes}
        # Conditions need boundaries of their own, so they are studied too.
        names = list(dict.fromkeys(cfg.attributes + cfg.conditions)) if cfg.attributes else list(declared)
        self.attributes = [declared[n] for n in names]
        self.role_attributes = self.attributes  # narrowed per model by _varied
        self.kinds = {a.name: a.kind for a in self.scorer.attributes}
        self.strengths = np.sort(parse_strengths(cfg.strengths))
        self.rows: dict[str, list[dict]] = {k: [] for k in (
            "boundaries", "edits", "reach", "entanglement", "conditional", "layers", "attribute rows", "curves",
            "pixels", "timings", "not studied")}
        self.arrays: dict[str, np.ndarray] = {}
        self.grids: dict[str, dict[str, np.ndarray]] = {}
        self.correlations: dict[str, pd.DataFrame] = {}
        self.boundary_dir = Path(ctx.work_dir) / "boundaries"

    # ----- one model ---------------------------------------------------------------------------
    def run_role(self, role: str, samples) -> None:
        """Study one model, or take its finished study from the work folder (a rerun after an interrupt)."""
        steps = self.ctx.saved_steps(self.cfg, samples)
        saved = steps.get(role)
        if saved is not None:
            self._restore(saved)
            self.ctx.log.info("interfacegan: the %s model's study is taken from %s", role, steps.folder)
            return
        mark = self._mark()
        self._study_role(role, samples)
        steps.put(role, self._since(mark))

    def _mark(self) -> dict:
        return {"rows": {name: len(rows) for name, rows in self.rows.items()}, "arrays": set(self.arrays),
                "grids": set(self.grids), "correlations": set(self.correlations)}

    def _since(self, mark: dict) -> StepRecord:
        """What the study added since `mark`, as a step record (grids and correlations as tables and arrays)."""
        tables = {name: rows[mark["rows"][name]:] for name, rows in self.rows.items()}
        arrays = {name: value for name, value in self.arrays.items() if name not in mark["arrays"]}
        tables["_grids"] = []
        for title in (t for t in self.grids if t not in mark["grids"]):
            for label, grid in self.grids[title].items():
                key = f"_grid {len(tables['_grids'])}"
                tables["_grids"].append({"title": title, "label": label, "array": key})
                arrays[key] = grid
        tables["_correlations"] = [{"role": role, "matrix": corr.to_dict(orient="split")}
                                   for role, corr in self.correlations.items() if role not in mark["correlations"]]
        return StepRecord(tables=tables, arrays=arrays)

    def _restore(self, saved: StepRecord) -> None:
        for name, rows in saved.tables.items():
            if not name.startswith("_"):
                self.rows[name].extend(rows)
        for row in saved.tables["_grids"]:
            self.grids.setdefault(row["title"], {})[row["label"]] = saved.arrays[row["array"]]
        for row in saved.tables["_correlations"]:
            matrix = row["matrix"]
            self.correlations[row["role"]] = pd.DataFrame(matrix["data"], index=matrix["index"],
                                                          columns=matrix["columns"])
        self.arrays.update({name: value for name, value in saved.arrays.items() if not name.startswith("_grid ")})

    def _study_role(self, role: str, samples) -> None:
        cfg, ctx = self.cfg, self.ctx
        G = ctx.generator(role)
        started = time.perf_counter()
        all_scores = samples["scores"]
        scores = {a.name: np.asarray(all_scores[a.name], dtype=np.float64) for a in self.scorer.attributes
                  if a.name in all_scores}
        count = len(next(iter(scores.values())))
        held = np.sort(ctx.rng(1).choice(count, cfg.edit_samples, replace=False))
        train = np.setdiff1d(np.arange(count), held)
        natural_std = {name: float(np.nanstd(values[train])) or 1.0 for name, values in scores.items()}
        self.role_attributes = self._varied(role, scores, train)
        corr = pd.DataFrame({n: v[train] for n, v in scores.items()}).corr()
        self.correlations[role] = corr
        w = np.asarray(samples["w"], dtype=np.float64)
        # All of W+ only when boundaries are trained on it; the edits need the held-out rows only.
        wplus = (np.asarray(samples["wplus"], dtype=np.float32) if {"wplus", "s"} & set(cfg.spaces) else None)
        held_ws = wplus[held] if wplus is not None else _rows_of(samples, "wplus", held)
        sha256 = model_sha256(samples)

        boundaries = self._train(role, G, w, wplus, scores, train, sha256)
        conditional = self._conditional(role, boundaries, w[train], corr)
        self._timing(role, "boundaries", started, 0)

        views = [View("aligned")] if role == "aligned" else [self._view(name, len(held)) for name in cfg.unaligned_views]
        if role in cfg.layer_roles:
            started = time.perf_counter()
            probe = np.sort(ctx.rng(3).choice(train, min(cfg.layer_samples, len(train)), replace=False))
            probe_ws = wplus[probe] if wplus is not None else _rows_of(samples, "wplus", probe)
            # The first view without user transforms (they are drawn for the held-out samples).
            view = replace(views[0], transforms=None)
            bench = EditBench(G, self.scorer, torch.from_numpy(probe_ws), view, batch_size=cfg.batch_size)
            model = role if role == "aligned" else f"{role} ({view.name})"
            own_rows = self._layers(role, model, bench, boundaries[("w", "")], w[probe], natural_std)
            if own_rows:
                boundaries[("w", "rows")] = own_rows
            self._timing(role, "layer ranges and rows", started, bench.renders)
        for number, view in enumerate(views):
            started = time.perf_counter()
            bench = EditBench(G, self.scorer, torch.from_numpy(held_ws), view, batch_size=cfg.batch_size,
                              keep=cfg.grid_samples)
            model = role if role == "aligned" else f"{role} ({view.name})"
            effects = self._edits(model, bench, boundaries, natural_std, corr)
            if number == 0:
                self._compare_conditional(model, bench, boundaries, conditional, effects, natural_std, corr)
            self._timing(role, f"edits {view.name}", started, bench.renders)
        self.arrays[f"held_out_seeds_{role}"] = np.asarray(samples["seeds"])[held]

    def _varied(self, role: str, scores, train) -> list:
        """The attributes this model varies; a binary one it decides the same way for all but a few
        training samples has no boundary to find, so it is left out for this model and listed in
        the report (not an error: an unaligned model may, say, never smile)."""
        kept = []
        for attribute in self.attributes:
            values = scores[attribute.name][train]
            valid, rarer = _decision_sides(values)
            if attribute.kind == "binary" and rarer < MIN_CLASS:
                self.rows["not studied"].append({
                    "model": role, "attribute": attribute.name,
                    "why": f"decided the same way for all but {rarer} of {len(valid)} training samples"})
                self.ctx.log.warning("interfacegan: %s: %s is decided the same way for all but %d training "
                                     "samples; no boundary for it", role, attribute.name, rarer)
            else:
                kept.append(attribute)
        if not kept:
            raise ConfigError(f"interfacegan: the {role} model varies none of the attributes "
                              f"({', '.join(a.name for a in self.attributes)}); sample more seeds")
        return kept

    def _train(self, role, G, w, wplus, scores, train, sha256) -> dict[tuple[str, str], dict[str, Boundary]]:
        """Boundaries by (space, layer-range name) -> attribute; saved as direction files."""
        cfg = self.cfg
        codes = {("w", ""): (w, [])}
        if "wplus" in cfg.spaces:
            for label, text in cfg.layer_ranges.items():
                rows = _rows(text, G.num_ws)
                if rows:
                    codes[("wplus", label)] = (wplus[:, rows].reshape(len(wplus), -1), rows)
        if "s" in cfg.spaces:
            codes[("s", "")] = (_flat_styles(G, wplus, cfg.batch_size), [])
        found: dict[tuple[str, str], dict[str, Boundary]] = {}
        for (space, label), (space_codes, rows) in codes.items():
            found[space, label] = {}
            for attribute in self.role_attributes:
                values = scores[attribute.name][train]
                ratio = _class_size(attribute.name, values, attribute.kind, cfg.ratio)
                boundary = train_boundary(space_codes[train], values, ratio, cfg.split, random_state=self.ctx.seed)
                boundary = replace(boundary, space=space, attribute=attribute.name, layers=rows, model_sha256=sha256)
                found[space, label][attribute.name] = boundary
                stem = f"{attribute.name}" + (f"_{label}" if label else "")
                boundary.save(self.boundary_dir / role / space / stem)
                self.arrays[f"boundary_{role}_{space}{'_' + label if label else ''}_{attribute.name}"] = boundary.normal
                self.rows["boundaries"].append({
                    "model": role, "space": space if not label else f"{space} {label} ({format_layers(rows)})",
                    "attribute": attribute.name, "kind": attribute.kind, "dims": space_codes.shape[1],
                    "validation_accuracy": boundary.validation_accuracy, "middle_accuracy": boundary.middle_accuracy,
                    "projection_std": boundary.projection_std, "train_per_class": boundary.train_count,
                    "validation_samples": boundary.validation_count})
        return found

    def _conditions_of(self, target: str, corr: pd.DataFrame) -> list[str]:
        names = [a.name for a in self.role_attributes]
        chosen = [c for c in self.cfg.conditions if c != target and c in names]
        if self.cfg.auto_condition:
            chosen += [c for c in names if c != target and c not in chosen
                       and abs(corr.loc[target, c]) >= self.cfg.correlation_threshold]
        return chosen

    def _conditional(self, role, boundaries, w_train, corr) -> dict[str, Boundary]:
        """W boundaries with their conditions projected out, for the targets that have any."""
        out = {}
        for attribute, boundary in boundaries[("w", "")].items():
            conditions = self._conditions_of(attribute, corr)
            if not conditions:
                continue
            normal = conditional_boundary(boundary.normal, [boundaries[("w", "")][c].normal for c in conditions])
            out[attribute] = replace(boundary, normal=normal, intercept=0.0, conditions=conditions,
                                     validation_accuracy=float("nan"), middle_accuracy=float("nan"),
                                     projection_std=float(np.std(w_train @ normal)))
            out[attribute].save(self.boundary_dir / role / "w" / f"{attribute}_conditional")
        return out

    def _view(self, name: str, count: int) -> View:
        if name == "pseudo-aligned":
            return View(name, pseudo_align=True)
        if name == "natural":
            return View(name)
        rng = self.ctx.rng(2)
        angles = rng.uniform(-self.cfg.max_angle, self.cfg.max_angle, count)
        shifts = rng.uniform(-self.cfg.max_translate, self.cfg.max_translate, (count, 2))
        return View(name, pseudo_align=True, transforms=batch_inverse_transforms(angles, shifts))

    # ----- measurements ------------------------------------------------------------------------
    def _edits(self, model, bench: EditBench, boundaries, natural_std, corr) -> dict:
        effects = {}
        measured = [a.name for a in self.scorer.attributes]
        for (space, label), by_attribute in self.ctx.progress(list(boundaries.items()), desc=f"edits {model}"):
            for attribute in self.role_attributes:
                boundary = by_attribute[attribute.name]
                direction = Direction(boundary.normal, space=space, layers=boundary.layers,
                                      projection_std=boundary.projection_std, attribute=attribute.name)
                region = bench.region_index(self.cfg.regions.get(attribute.name, "")) if space == "w" else None
                effect = bench.measure(direction, self.strengths, self.strengths * boundary.projection_std,
                                       region=region)
                effects[space, label, attribute.name] = effect
                space_name = space if not label else f"{space} {label}"
                response = target_response(effect.scores[attribute.name], attribute.kind,
                                           natural_std[attribute.name], self.cfg.change_std)
                uncorrelated = [m for m in measured if m != attribute.name
                                and abs(corr.loc[attribute.name, m]) < self.cfg.correlation_threshold]
                rates = {m: change_rate(effect.scores[m], effect.original[m], self.kinds[m], natural_std[m],
                                        self.cfg.change_std) for m in measured if m != attribute.name}
                worst = max(uncorrelated, key=lambda m: rates[m]) if uncorrelated else ""
                self.rows["edits"].append({
                    "model": model, "space": space_name, "attribute": attribute.name,
                    "rows": format_layers(boundary.layers) if boundary.layers else "all", **response,
                    "worst_uncorrelated": worst, "worst_uncorrelated_change_rate": rates.get(worst, float("nan")),
                    **effect.pixels})
                self._by_reach(model, space_name, attribute, effect, natural_std, uncorrelated)
                if space != "w":
                    continue
                for m in measured:
                    self.rows["entanglement"].append({
                        "model": model, "edit": "own rows" if label else "all rows",
                        "edited": attribute.name, "measured": m,
                        "change_rate": response["success_rate"] if m == attribute.name else rates[m],
                        "mean_shift_std": mean_shift(effect.scores[m], natural_std[m]),
                        "correlation": float(corr.loc[attribute.name, m])})
                target = effect.scores[attribute.name]
                for s, strength in enumerate(self.strengths):
                    self.rows["curves"].append({
                        "attribute": attribute.name, "kind": attribute.kind, "model": model, "strength": strength,
                        "mean": float(np.mean(target[s])), "q25": float(np.percentile(target[s], 25)),
                        "q75": float(np.percentile(target[s], 75))})
                if effect.grid is not None and not label:
                    for k in range(len(effect.grid)):
                        self.grids.setdefault(f"{model}, held-out sample {k}", {})[attribute.name] = effect.grid[k]
        return effects

    def _by_reach(self, model, space_name, attribute, effect, natural_std, uncorrelated) -> None:
        """The edit's success and worst uncorrelated change when it goes only as far as +-reach sigma,
        for each reach in the strength range: how far an edit stays clean."""
        for reach in sorted({abs(float(x)) for x in self.strengths if x != 0}):
            inside = np.abs(self.strengths) <= reach + 1e-9
            if np.sum(inside) < 2:
                continue
            part = {name: values[inside] for name, values in effect.scores.items()}
            response = target_response(part[attribute.name], attribute.kind, natural_std[attribute.name],
                                       self.cfg.change_std)
            rates = {m: change_rate(part[m], effect.original[m], self.kinds[m], natural_std[m], self.cfg.change_std)
                     for m in uncorrelated}
            worst = max(rates, key=rates.get) if rates else ""
            self.rows["reach"].append({
                "model": model, "space": space_name, "attribute": attribute.name, "reach_sigma": reach,
                "success_rate": response["success_rate"], "worst_uncorrelated": worst,
                "worst_uncorrelated_change_rate": rates.get(worst, float("nan"))})

    def _compare_conditional(self, model, bench, boundaries, conditional, effects, natural_std, corr) -> None:
        """Side effects on the conditions: unconditional vs conditional boundary, same strengths."""
        ends = self.strengths[[0, -1]]
        for attribute, boundary in conditional.items():
            direction = Direction(boundary.normal, projection_std=boundary.projection_std, attribute=attribute)
            effect = bench.measure(direction, ends, ends * boundary.projection_std)
            plain = effects["w", "", attribute]
            plain_ends = {name: values[[0, -1]] for name, values in plain.scores.items()}
            cosine = float(boundary.normal @ boundaries[("w", "")][attribute].normal)
            for condition in boundary.conditions:
                before = mean_shift(plain_ends[condition], natural_std[condition])
                after = mean_shift(effect.scores[condition], natural_std[condition])
                self.rows["conditional"].append({
                    "model": model, "attribute": attribute, "condition": condition,
                    "correlation": float(corr.loc[attribute, condition]), "cosine_to_unconditional": cosine,
                    "side_effect_unconditional": before, "side_effect_conditional": after,
                    "reduction": 1 - after / before if before > 0 else float("nan"),
                    "target_move_unconditional": mean_shift(plain_ends[attribute], natural_std[attribute]),
                    "target_move_conditional": mean_shift(effect.scores[attribute], natural_std[attribute])})

    def _layers(self, role, model, bench: EditBench, w_boundaries, w_probe, natural_std) -> dict[str, Boundary]:
        """Each W boundary applied to some ws rows only, pushing the layer samples across it at the
        largest strength: which rows move each attribute (the layer-range table) and, with
        row_search, the rows to edit it by (returned as boundaries with those rows, and saved)."""
        cfg = self.cfg
        num_ws = bench.G.num_ws
        ranges = {"all": None}
        for label, text in cfg.layer_ranges.items():
            rows = _rows(text, num_ws)
            if rows:
                ranges[f"{label} {format_layers(rows)}"] = rows
        if cfg.single_layers:
            ranges.update({str(row): [row] for row in range(num_ws)})
        top = float(np.max(np.abs(self.strengths)))
        own: dict[str, Boundary] = {}
        for attribute in self.ctx.progress(self.role_attributes, desc=f"layer ranges {model}"):
            name = attribute.name
            boundary = w_boundaries[name]
            push = _Push(bench, boundary, w_probe, top, natural_std, name)
            full_target, full_side = push.effect(None)
            for label, rows in ranges.items():
                target, side = push.effect(rows)
                self.rows["layers"].append({
                    "model": model, "attribute": name, "layers": label, "target_effect_std": target,
                    "relative_effect": target / full_target if full_target else float("nan"),
                    "side_effect_std": side})
            if not cfg.row_search:
                continue

            def objective(rows: list[int]) -> float:
                target, side = push.effect(rows)
                return target - cfg.row_side_weight * side

            # Candidates: the rows that alone move the attribute by a share of the all-row move.
            candidates = [row for row in range(num_ws)
                          if push.effect([row])[0] >= cfg.row_candidate_share * abs(full_target)]
            rows, _ = forward_rows(objective, candidates, cfg.row_min_gain)
            found = bool(rows)
            rows = rows or list(range(num_ws))
            target, side = push.effect(rows)
            own[name] = replace(boundary, layers=rows)
            own[name].save(self.boundary_dir / role / "w" / f"{name}_rows")
            self.rows["attribute rows"].append({
                "model": model, "attribute": name, "rows": format_layers(rows), "found": found,
                "target_effect_std": target, "side_effect_std": side,
                "all_rows_target_effect_std": full_target, "all_rows_side_effect_std": full_side,
                "row_sets_tried": push.tried})
        return own

    def _timing(self, role, step, started, renders) -> None:
        self.rows["timings"].append({"model": role, "step": step, "seconds": time.perf_counter() - started,
                                     "renders": renders})

    # ----- the result --------------------------------------------------------------------------
    def result(self) -> AnalysisResult:
        tables = {name: pd.DataFrame(rows) for name, rows in self.rows.items() if rows and name != "curves"}
        for role, corr in self.correlations.items():
            tables[f"score correlations {role}"] = corr.round(3)
        figs = {}
        if self.rows["curves"]:
            figs["response curves"] = figures.response_curves(pd.DataFrame(self.rows["curves"]))
        if self.rows["entanglement"]:
            figs["entanglement"] = figures.entanglement_heatmaps(tables["entanglement"])
        if self.rows["layers"]:
            figs["layer ranges"] = figures.layer_heatmaps(tables["layers"])
        for title, grids in self.grids.items():
            figs[f"edits: {title}"] = image_rows(grids, title, [f"{s:+g}σ" for s in self.strengths])
        metrics = self._metrics(tables)
        sections = [
            Section("Boundaries", "Linear SVM (C=1) between the top and bottom share of each attribute's scores; "
                    f"the boundary files (direction .npy + JSON) are in {self._boundary_place()}; apply them with "
                    "`sg3probe edit`.", tables=["boundaries"]),
            Section("Edit response", "Held-out samples edited at each strength (in stds of the projection onto the "
                    "normal). success: a binary decision crosses 0 between the ends, a continuous value rises by "
                    f"{self.cfg.change_std:g} natural std; change rates of the other attributes count flips or moves "
                    "of that size from the unedited sample, at any strength. reach: the same for the edit going only "
                    "as far as +-reach sigma (a bounded attribute leaves its natural range before +-3 sigma, and "
                    "side effects grow there).", tables=["edits", "reach"], figures=["response curves"]),
            Section("Entanglement", "Rows: the attribute edited along its W boundary, on every ws row or on its own "
                    "rows; columns: the share of samples in which each attribute changed (diagonal: the success "
                    "rate).", tables=["entanglement"],
                    figures=["entanglement"]),
            Section("Conditional boundaries", "The side effect (|mean move| of the condition, in natural stds, "
                    "between the ends of the strength range) of the unconditional and the conditional boundary.",
                    tables=["conditional"] if "conditional" in tables else []),
            Section("Layer ranges", "Each W boundary applied only to some ws rows, pushing training samples (never "
                    "the held-out ones) across the boundary at the largest strength; moves in natural stds. "
                    "attribute rows: the rows found by forward selection among the rows that alone give "
                    f"{self.cfg.row_candidate_share:.0%} of the all-row move (add the row that most raises target move - "
                    f"{self.cfg.row_side_weight:g} x mean side move while it gains >= {self.cfg.row_min_gain:g}); the "
                    "edit tables show the W boundary on those rows alone as space 'w rows', and "
                    "`<attribute>_rows.npy` applies it with `sg3probe edit`.",
                    tables=[n for n in ("layers", "attribute rows") if n in tables],
                    figures=["layer ranges"] if "layer ranges" in figs else []),
            Section("Edit grids", "Rows: the attribute edited along its W boundary; columns: the strength in sigmas. "
                    "The unaligned model is shown pseudo-aligned and under random user transforms.",
                    figures=[name for name in figs if name.startswith("edits:")]),
            Section("Score correlations and timings", tables=[n for n in tables if n.startswith("score")] + ["timings"]
                    + (["not studied"] if "not studied" in tables else [])),
        ]
        captions = {name: caption for name, caption in CAPTIONS.items() if name in tables}
        captions.update({name: f"Pearson correlations of the scores over the {name.rsplit(' ', 1)[-1]} model's "
                               "training samples." for name in tables if name.startswith("score correlations")})
        return AnalysisResult(metrics=metrics, tables=tables, figures=figs, arrays=self.arrays, captions=captions,
                              summary=_reading(tables, self.strengths), title="InterFaceGAN boundaries and edits",
                              sections=sections)

    def _boundary_place(self) -> str:
        shown = self.ctx.shown_path(self.boundary_dir)
        return shown if Path(shown).is_absolute() else f"{shown} of the run folder"

    def _metrics(self, tables) -> dict:
        metrics: dict = {"strengths": self.strengths.tolist(), "boundary_dir": self.ctx.shown_path(self.boundary_dir)}
        for row in self.rows["boundaries"]:
            metrics.setdefault("boundaries", {}).setdefault(row["model"], {}).setdefault(row["space"], {})[
                row["attribute"]] = {"validation_accuracy": row["validation_accuracy"],
                                     "middle_accuracy": row["middle_accuracy"], "projection_std": row["projection_std"]}
        for row in self.rows["edits"]:
            metrics.setdefault("edits", {}).setdefault(row["model"], {}).setdefault(row["space"], {})[
                row["attribute"]] = {k: row[k] for k in ("success_rate", "monotone_rate", "mean_change_std",
                                                         "worst_uncorrelated", "worst_uncorrelated_change_rate")}
        for row in self.rows["conditional"]:
            metrics.setdefault("conditional", {}).setdefault(row["model"], {})[
                f"{row['attribute']} | {row['condition']}"] = {
                    k: row[k] for k in ("side_effect_unconditional", "side_effect_conditional", "reduction")}
        return metrics


class _Push:
    """The samples of `bench` pushed across one W boundary by `sigmas` (each towards the other side),
    with the edit on some ws rows only; the moves are cached by row set, so the layer-range table
    and the row search share their renders."""

    def __init__(self, bench: EditBench, boundary: Boundary, w: np.ndarray, sigmas: float,
                 natural_std: dict[str, float], attribute: str) -> None:
        self.bench, self.attribute, self.natural_std = bench, attribute, natural_std
        self.sides = np.where(boundary.distance(w) < 0, 1.0, -1.0)
        self.direction = Direction(boundary.normal, projection_std=boundary.projection_std)
        self.raw = sigmas * boundary.projection_std
        self.original = bench.original()[0]
        self._effects: dict[tuple[int, ...] | None, tuple[float, float]] = {}

    @property
    def tried(self) -> int:
        return len(self._effects)

    def effect(self, rows: list[int] | None) -> tuple[float, float]:
        """(mean move of the attribute towards the other side, mean |move| of every other attribute),
        in natural stds; rows None = every row."""
        key = None if rows is None else tuple(rows)
        if key not in self._effects:
            index = np.arange(len(self.bench))
            scores = self.bench.push_across(self.direction, self.raw, self.sides, index, rows)
            moves = {m: (scores[m] - self.original[m]) / self.natural_std[m] for m in scores}
            others = [float(np.mean(np.abs(v))) for m, v in moves.items() if m != self.attribute]
            self._effects[key] = (float(np.mean(moves[self.attribute] * self.sides)),
                                  float(np.mean(others)) if others else 0.0)
        return self._effects[key]


def _decision_sides(values: np.ndarray) -> tuple[np.ndarray, int]:
    """The finite binary scores, and how many of them fall on the rarer side of the decision at 0."""
    valid = values[np.isfinite(values)]
    return valid, min(int((valid > 0).sum()), int((valid <= 0).sum()))


def _class_size(name: str, values: np.ndarray, kind: str, ratio: float) -> float:
    """The ratio for train_boundary; for a binary attribute a count capped at its rarer decision side."""
    if kind != "binary":
        return ratio
    valid, rarer = _decision_sides(values)
    if rarer < MIN_CLASS:
        raise ConfigError(f"interfacegan: binary attribute {name!r} is decided the same way for all but {rarer} "
                          "training samples; sample more seeds or leave it out with interfacegan.attributes")
    wanted = int(len(valid) * ratio) if ratio <= 1 else int(ratio)
    return float(min(wanted, rarer))


def _rows(text: str, num_ws: int) -> list[int]:
    """Layer-range rows clipped to this generator (a 16-row range on a 12-row model keeps 0-11)."""
    rows = []
    for part in str(text).split(","):
        first, _, last = part.partition("-")
        last = last or first
        rows += [r for r in range(int(first), int(last) + 1) if r < num_ws]
    return parse_layers(",".join(map(str, rows)), num_ws) if rows else []


def _flat_styles(G, wplus: np.ndarray, batch_size: int) -> np.ndarray:
    """Flattened S [N, sum of style sizes] of ws [N, num_ws, w_dim], computed batch by batch."""
    parts = []
    with torch.no_grad():
        for start in range(0, len(wplus), batch_size * 8):
            ws = torch.as_tensor(wplus[start:start + batch_size * 8], dtype=torch.float32, device=G.device)
            parts.append(torch.cat(list(G.styles(ws).values()), dim=1).cpu().numpy())
    return np.concatenate(parts).astype(np.float64)


def _rows_of(samples, name: str, rows: np.ndarray) -> np.ndarray:
    """Some rows of a sample array, read from the store alone when the samples have one."""
    store = getattr(samples, "store", None)
    if store is not None and hasattr(store, "read"):
        return np.asarray(store.read(name, rows), dtype=np.float32)
    return np.asarray(samples[name], dtype=np.float32)[rows]


def _reading(tables: dict[str, pd.DataFrame], strengths: np.ndarray) -> str:
    parts = []
    boundaries = tables.get("boundaries")
    if boundaries is not None and not boundaries.empty:
        w = boundaries[boundaries["space"] == "w"]
        for model, group in w.groupby("model", sort=False):
            worst = group.loc[group["validation_accuracy"].idxmin()]
            parts.append(f"In W of the {model} model the boundaries reach validation accuracy "
                         f"{group['validation_accuracy'].min():.2f} to {group['validation_accuracy'].max():.2f} "
                         f"(lowest: {worst['attribute']}).")
    edits = tables.get("edits")
    if edits is not None and not edits.empty:
        for space, how in (("w", "on every ws row"), ("w rows", "on each attribute's own rows")):
            for model, group in edits[edits["space"] == space].groupby("model", sort=False):
                side = group["worst_uncorrelated_change_rate"].dropna()
                side_text = (f"; the worst side effect on an uncorrelated attribute changes {side.max():.0%} of "
                             f"them, and {(side <= 0.1).sum()} of {len(side)} edits change none above 10 %"
                             if len(side) else "")
                parts.append(f"W edits {how} from {strengths[0]:+g} to {strengths[-1]:+g} sigma ({model}) succeed "
                             f"in {group['success_rate'].min():.0%} to {group['success_rate'].max():.0%} of held-out "
                             f"samples{side_text}.")
    reach = tables.get("reach")
    if reach is not None and not reach.empty:
        worst = reach.pivot_table(index=["space", "model"], columns="reach_sigma", sort=False,
                                  values="worst_uncorrelated_change_rate", aggfunc="max")
        parts.append(f"The worst uncorrelated change by reach ({' / '.join(f'+-{r:g}' for r in worst.columns)} "
                     "sigma): " + "; ".join(f"{space} {model} " + " / ".join(f"{v:.0%}" for v in values)
                                            for (space, model), values in worst.iterrows()) + ".")
    conditional = tables.get("conditional")
    if conditional is not None and not conditional.empty:
        halved = (conditional["side_effect_conditional"] <= conditional["side_effect_unconditional"] / 2).mean()
        parts.append(f"Conditional boundaries at least halve the side effect on their condition in {halved:.0%} of "
                     f"{len(conditional)} target/condition pairs.")
    layers = tables.get("layers")
    if layers is not None and not layers.empty:
        named = layers[~layers["layers"].str.fullmatch(r"\d+") & (layers["layers"] != "all")].dropna(
            subset=["relative_effect"])
        if not named.empty:
            best = named.loc[named.groupby("attribute")["relative_effect"].idxmax()]
            parts.append("The layer range that moves each attribute most: " + ", ".join(
                f"{r.attribute} {r.layers.split(' ')[0]}" for r in best.itertuples()) + ".")
    return " ".join(parts)
