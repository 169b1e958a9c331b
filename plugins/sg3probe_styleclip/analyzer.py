"""The `styleclip` analyzer: text-driven edits by global directions in S and latent mappers in W+,
measured with the text-image model and the attribute scorer (spec: analyses.md section 4)."""
from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sg3probe.analyzer import AnalysisContext, Analyzer, Needs, RunPlan
from sg3probe.config import from_dict
from sg3probe.editing import parse_strengths
from sg3probe.errors import ConfigError
from sg3probe.figures import image_rows
from sg3probe.results import AnalysisResult, Section
from sg3probe.store.seeds import parse_seeds
from sg3probe.textimage import TextImageScorer, is_text_image_model
from sg3probe_styleclip import figures
from sg3probe_styleclip.evaluation import (HeldOut, decision_thresholds, side_effects, similarity_gain,
                                           target_rates)
from sg3probe_styleclip.global_directions import (ChannelDirections, ProbeSettings, channel_directions,
                                                  generator_identity, prompt_embedding, text_direction,
                                                  text_model_identity)
from sg3probe_styleclip.identity import IDENTITY_NAMES, identity_extractor
from sg3probe_styleclip.mapper import GROUPS, MapperSettings, identity_features, train_mapper
from sg3probe_styleclip.prompts import NEUTRAL, TOY_PROMPTS, TOY_TEMPLATES, Target, parse_target
from sg3probe_styleclip.strength import (DEFAULT_ALPHA_MAX, DEFAULT_ALPHA_STEP, DEFAULT_SIGMAS, calibrate_alpha,
                                         check_grid, s_edit)

METHODS = ("global", "mapper")
# the Config's mapper settings, which mapper_overrides may set per prompt
MAPPER_KEYS = ("mapper_steps", "mapper_batch", "mapper_learning_rate", "mapper_ema_decay", "lambda_clip", "lambda_l2",
               "lambda_id", "mapper_groups")


def load_text_model(name: str, device: str = "cpu", options: dict | None = None) -> TextImageScorer:
    """The text-image model registered as scorer `name`, built with `options` (its constructor's keyword
    arguments); a ConfigError if there is none or it is not one."""
    from sg3probe.plugin_manager import get_plugin_manager

    manager = get_plugin_manager()
    if not is_text_image_model(manager.get_scorer(name)):
        raise ConfigError(f"scorer {name!r} is not a text-image model (it cannot encode text); give one such as "
                          "'toyclip' (see `sg3probe scorers`)")
    return manager.build_scorer(name, device, options)


class StyleCLIP(Analyzer):
    name = "styleclip"
    description = ("StyleCLIP (Patashnik, Wu et al.): text-driven edits by global directions in S (channel "
                   "relevance to a text direction, beta threshold, alpha strength calibrated by the text model) "
                   "and by latent mappers in W+; target achieved and side effects by the attribute scorer, "
                   "similarity gain by the text-image model; aligned and unaligned models, and a beta x alpha sweep.")
    needs = Needs(spaces={"wplus"}, scores=True, images=True, models="both")

    @dataclass
    class Config:
        prompts: dict[str, str] = field(default_factory=lambda: dict(TOY_PROMPTS))  # prompt -> target
        neutral: str = NEUTRAL
        templates: list[str] = field(default_factory=lambda: list(TOY_TEMPLATES))  # '{}' = the prompt
        text_model: str = "toyclip"  # a text-image scorer (`sg3probe scorers`)
        text_model_options: dict[str, Any] = field(default_factory=dict)  # e.g. checkpoint, arch for openclip
        methods: list[str] = field(default_factory=lambda: list(METHODS))
        beta: float | None = None  # None: the text model's global_beta (toyclip 0.45; CLIP models 0.13)
        # alpha None: calibrated per prompt and model (strength.py): the smallest alpha on the grid
        # alpha_step..alpha_max at which the similarity to the prompt of calibration_samples training
        # latents rises by alpha_sigmas natural stds
        alpha: float | None = None
        alpha_sigmas: float = DEFAULT_SIGMAS
        alpha_step: float = DEFAULT_ALPHA_STEP
        alpha_max: float = DEFAULT_ALPHA_MAX
        calibration_samples: int = 64
        # global-direction preprocessing (cached; see global_directions.ProbeSettings)
        probe_seeds: str = ProbeSettings.probe_seeds  # images probed per channel (the paper: 100-300)
        probe_psi: float = ProbeSettings.probe_psi
        stats_seeds: str = ProbeSettings.stats_seeds
        stats_psi: float = ProbeSettings.stats_psi
        stats_cutoff: int | None = ProbeSettings.stats_cutoff
        k: float = ProbeSettings.k  # s_c = mu_c +- k sigma_c
        include_input: bool = ProbeSettings.include_input  # also probe 'input' (rotation and translation)
        channels_per_chunk: int = ProbeSettings.channels_per_chunk
        cache_dir: str = ""  # "" = the user cache ($SG3PROBE_CACHE_DIR or ~/.cache/sg3probe)
        # latent mapper
        mapper_roles: list[str] = field(default_factory=lambda: ["aligned"])
        mapper_prompts: list[str] = field(default_factory=list)  # [] = every prompt
        # the defaults of MapperSettings: 2400 steps take about 5 min a mapper on 2 CPU cores, and
        # 300 (40 s) is a quick look (docs/styleclip.md)
        mapper_steps: int = MapperSettings.steps
        mapper_batch: int = MapperSettings.batch_size
        mapper_learning_rate: float = MapperSettings.learning_rate
        mapper_ema_decay: float = MapperSettings.ema_decay  # > 0: edits use the weights' moving average
        lambda_clip: float = MapperSettings.lambda_clip
        lambda_l2: float = MapperSettings.lambda_l2
        lambda_id: float = MapperSettings.lambda_id
        mapper_groups: list[str] = field(default_factory=lambda: list(GROUPS))
        # prompt -> {mapper setting above: value}, e.g. {"a face with blond hair": {"mapper_groups": ["fine"]}}:
        # that prompt's mapper trains with these settings instead (StyleCLIP tunes each edit's recipe)
        mapper_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
        mapper_latents: int = 256  # training latents (run samples outside the held-out ones)
        identity: str = "toyfaces"  # identity features: toyfaces, pixels or none
        # evaluation
        eval_samples: int = 64  # held-out samples (the last seeds of the run, never probed or trained on)
        change_std: float = 1.0  # the side-effect table's move_rate counts moves of this many natural stds
        correlation_threshold: float = 0.2  # |r| from which another attribute counts as correlated
        grid_samples: int = 3
        sweep_betas: str = "0.13,0.3,0.45,0.6"  # StyleCLIP's beta for CLIP, and up to toyclip's and beyond
        sweep_alphas: str = "1,2,3,4"
        sweep_samples: int = 24
        sweep_roles: list[str] = field(default_factory=lambda: ["aligned"])
        batch_size: int = 32

        def __post_init__(self) -> None:
            unknown = sorted(set(self.methods) - set(METHODS))
            if unknown or not self.methods:
                raise ValueError(f"methods {self.methods}: choose one or more of {', '.join(METHODS)}")
            if not self.prompts:
                raise ValueError("prompts is empty: give at least one prompt (prompt = \"attribute+\")")
            unknown = sorted(set(self.mapper_prompts) - set(self.prompts))
            if unknown:
                raise ValueError(f"mapper_prompts {unknown} are not among the prompts")
            for prompt, values in self.mapper_overrides.items():
                if prompt not in self.prompts:
                    raise ValueError(f"mapper_overrides names {prompt!r}, which is not among the prompts")
                unknown = sorted(set(values) - set(MAPPER_KEYS))
                if unknown:
                    raise ValueError(f"mapper_overrides[{prompt!r}]: {', '.join(unknown)}: not a mapper setting; "
                                     f"give any of {', '.join(MAPPER_KEYS)}")
                # the values' types, checked as the Config's own fields
                from_dict(type(self), {**values, "mapper_overrides": {}}, where=f"styleclip.mapper_overrides.{prompt}")
            if self.identity not in IDENTITY_NAMES:
                raise ValueError(f"identity must be one of {', '.join(IDENTITY_NAMES)}, got {self.identity!r}")
            if not self.templates or any("{}" not in t for t in self.templates):
                raise ValueError("templates must be texts with '{}' where the prompt goes, e.g. [\"{}\"]")
            if self.eval_samples < 2 or self.grid_samples < 0 or self.sweep_samples < 1:
                raise ValueError("eval_samples must be >= 2, grid_samples >= 0 and sweep_samples >= 1")
            if self.beta is not None and self.beta < 0:
                raise ValueError(f"beta must be >= 0, got {self.beta}")
            if self.calibration_samples < 2:
                raise ValueError(f"calibration_samples must be >= 2, got {self.calibration_samples}")
            check_grid(self.alpha_sigmas, self.alpha_step, self.alpha_max)
            parse_strengths(self.sweep_betas, "sweep_betas")
            parse_strengths(self.sweep_alphas, "sweep_alphas")

        def probe_settings(self) -> ProbeSettings:
            return ProbeSettings(probe_seeds=self.probe_seeds, probe_psi=self.probe_psi, stats_seeds=self.stats_seeds,
                                 stats_psi=self.stats_psi, stats_cutoff=self.stats_cutoff, k=self.k,
                                 include_input=self.include_input, channels_per_chunk=self.channels_per_chunk)

        def mapper_settings(self, prompt: str | None = None) -> MapperSettings:
            """The recipe of `prompt`'s mapper: the mapper settings, with its mapper_overrides."""
            cfg = dataclasses.replace(self, **self.mapper_overrides[prompt]) if prompt in self.mapper_overrides else self
            return MapperSettings(steps=cfg.mapper_steps, batch_size=cfg.mapper_batch,
                                  learning_rate=cfg.mapper_learning_rate, ema_decay=cfg.mapper_ema_decay,
                                  lambda_clip=cfg.lambda_clip, lambda_l2=cfg.lambda_l2, lambda_id=cfg.lambda_id,
                                  groups=tuple(cfg.mapper_groups))

    def __init__(self, text_model: TextImageScorer | None = None) -> None:
        self.text_model = text_model  # None: load cfg.text_model by name

    def prepare(self, cfg, plan: RunPlan) -> None:
        """Check the settings, the prompts' targets and the seed count, and load the text-image model,
        before sampling: a missing open_clip checkpoint fails at once, not after the samples are drawn."""
        if plan.scorer is None:
            raise ConfigError("the styleclip analyzer needs an attribute scorer to measure edits (--scorer)")
        attributes = {a.name: a for a in plan.scorer.attributes}
        for text, target in cfg.prompts.items():
            try:
                parse_target(target, attributes)
            except ConfigError as error:
                raise ConfigError(f"styleclip.prompts[{text!r}]: {error}") from None
        cfg.probe_settings().check()
        for prompt in [None, *cfg.mapper_overrides]:
            cfg.mapper_settings(prompt).check()
        _split_counts(len(plan.seeds) - len(np.intersect1d(plan.seeds, parse_seeds(cfg.probe_seeds))), cfg)
        if self.text_model is None:
            self.text_model = load_text_model(cfg.text_model, plan.device, cfg.text_model_options)

    def analyze(self, samples, ctx: AnalysisContext, cfg) -> AnalysisResult:
        self.prepare(cfg, RunPlan.of(samples, ctx))  # the pipeline's call already loaded the text model
        study = _Study(ctx, cfg, self.text_model)
        for role, role_samples in samples.items():
            study.run_role(role, role_samples)
        return study.result()


def _split_counts(usable: int, cfg) -> None:
    """A ConfigError unless `usable` samples (those outside the probe seeds) cover the held-out ones
    and, to calibrate alpha, at least two more."""
    if usable < cfg.eval_samples + 1:
        raise ConfigError(f"styleclip: {usable} samples outside the probe seeds, but eval_samples = "
                          f"{cfg.eval_samples}; sample more seeds or lower styleclip.eval_samples")
    if "global" in cfg.methods and cfg.alpha is None and usable - cfg.eval_samples < 2:
        raise ConfigError(f"styleclip: {usable - cfg.eval_samples} samples outside the probe seeds and the held-out "
                          "ones, too few to calibrate alpha; sample more seeds, lower styleclip.eval_samples or give "
                          "styleclip.alpha")


@dataclass
class _Prompt:
    text: str
    target: Target | None
    embedding: np.ndarray  # [D] template-averaged, unit
    direction: np.ndarray  # [D] delta_t


class _Study:
    """The state of one analysis: rows grow model by model, then become the result."""

    def __init__(self, ctx: AnalysisContext, cfg, text_model: TextImageScorer) -> None:
        self.ctx, self.cfg, self.text_model = ctx, cfg, text_model
        self.text_identity = text_model_identity(text_model)
        self.beta = cfg.beta if cfg.beta is not None else float(text_model.global_beta)
        self.attributes = {a.name: a for a in ctx.scorer.attributes}
        self.prompts = []
        for text, target_text in cfg.prompts.items():
            self.prompts.append(_Prompt(text, parse_target(target_text, self.attributes),
                                        prompt_embedding(text_model, text, cfg.templates),
                                        text_direction(text_model, text, cfg.neutral, cfg.templates)))
        self.rows: dict[str, list[dict]] = {k: [] for k in ("edits", "side effects", "alpha calibration", "sweep",
                                                             "channels", "mapper", "timings")}
        self.grids: dict[str, dict[str, np.ndarray]] = {}  # prompt -> row label -> uint8 [k, H, W, C]
        self.losses: dict[str, np.ndarray] = {}
        self.arrays: dict[str, np.ndarray] = {}
        self.metrics: dict = {"beta": self.beta, "alpha": "calibrated" if cfg.alpha is None else cfg.alpha,
                              "text_model": cfg.text_model, "neutral": cfg.neutral}

    def _timing(self, role: str, step: str, started: float, renders: int = 0) -> None:
        self.rows["timings"].append({"model": role, "step": step, "seconds": round(time.perf_counter() - started, 2),
                                     "renders": renders})

    # ----- one model -----------------------------------------------------------------------------
    def run_role(self, role: str, samples) -> None:
        cfg, ctx = self.cfg, self.ctx
        G = ctx.generator(role).eval().requires_grad_(False)
        seeds = np.asarray(samples["seeds"])
        probed = set(parse_seeds(cfg.probe_seeds))
        usable = np.flatnonzero([int(s) not in probed for s in seeds])
        _split_counts(len(usable), cfg)
        held, outside = usable[-cfg.eval_samples:], usable[:-cfg.eval_samples]
        train = outside[:cfg.mapper_latents]
        wplus = samples["wplus"]
        calibration = torch.as_tensor(np.asarray(wplus[outside[:cfg.calibration_samples]], np.float32))
        scores = {name: np.asarray(samples["scores"][name], dtype=np.float64) for name in self.attributes}
        self.natural_std = {name: float(np.nanstd(values[train])) or 1.0 for name, values in scores.items()}
        self.thresholds = decision_thresholds(self.attributes.values(), {n: v[train] for n, v in scores.items()})
        corr = pd.DataFrame({n: v[train] for n, v in scores.items()}).corr()
        bench = HeldOut(G, ctx.scorer, self.text_model, torch.as_tensor(np.asarray(wplus[held], np.float32)),
                        batch_size=cfg.batch_size, keep=cfg.grid_samples)
        started = time.perf_counter()
        original = bench.original()
        self._timing(role, "originals", started, len(held))
        self.arrays[f"held_out_seeds_{role}"] = seeds[held]

        directions = None
        if "global" in cfg.methods:
            started = time.perf_counter()
            directions = channel_directions(G, self.text_model, cfg.probe_settings(),
                                            cache_dir=cfg.cache_dir or None, model_sha256=_model_sha256(samples),
                                            batch_size=cfg.batch_size, progress=ctx.progress)
            self._timing(role, f"channel directions ({directions.computed_chunks} chunks computed, "
                               f"cache {directions.folder})", started)
            self.metrics.setdefault("cache", {})[role] = str(directions.folder)
        mappers = "mapper" in cfg.methods and role in cfg.mapper_roles
        identity = identity_extractor(cfg.identity, ctx.scorer) if mappers else None
        train_ws = references = None
        if mappers:
            train_ws = torch.as_tensor(np.asarray(wplus[np.sort(train)], np.float32), device=G.device)
            if identity is not None and cfg.lambda_id:
                started = time.perf_counter()
                references = identity_features(G, identity, train_ws, cfg.batch_size)
                self._timing(role, "mapper identity features", started, len(train_ws))

        for prompt in ctx.progress(self.prompts, desc=f"styleclip prompts ({role})"):
            grid = self.grids.setdefault(prompt.text, {})
            grid[f"{role}: original"] = original.pictures
            measured = {}
            if directions is not None:
                started, renders = time.perf_counter(), bench.renders
                direction = directions.style_direction(prompt.direction, self.beta)
                alpha = self._alpha(role, prompt, G, direction.vector, calibration)
                step = torch.as_tensor(direction.vector, dtype=torch.float32)
                edited = bench.measure(s_edit(G, step, alpha))
                measured["global (S)"] = (edited, alpha)
                grid[f"{role}: global α={alpha:g}"] = edited.pictures
                self._channels(role, prompt, directions)
                self._timing(role, f"global: {prompt.text}", started, bench.renders - renders)
                self.arrays[f"direction_{role}_{_slug(prompt.text)}"] = direction.vector
                if role in cfg.sweep_roles and prompt.target is not None:
                    started, renders = time.perf_counter(), bench.renders
                    self._sweep(role, prompt, directions, bench, original)
                    self._timing(role, f"beta x alpha sweep: {prompt.text}", started, bench.renders - renders)
            if mappers and (not cfg.mapper_prompts or prompt.text in cfg.mapper_prompts):
                started = time.perf_counter()
                trained = train_mapper(G, self.text_model, prompt.embedding, train_ws, cfg.mapper_settings(prompt.text),
                                       Path(ctx.work_dir) / role / "mappers" / _slug(prompt.text), identity=identity,
                                       references=references, progress=ctx.progress,
                                       meta={"prompt": prompt.text, "templates": cfg.templates,
                                             "identity": cfg.identity, "text_model": self.text_identity,
                                             "model": generator_identity(G, _model_sha256(samples))})
                self._timing(role, f"mapper training: {prompt.text}", started)
                self.losses[f"{role}: {prompt.text}"] = trained.losses
                started, renders = time.perf_counter(), bench.renders
                mapper = trained.mapper
                edited = bench.measure(lambda ws: G.synthesis(mapper.edit(ws)))
                measured["mapper (W+)"] = (edited, None)
                grid[f"{role}: mapper"] = edited.pictures
                self._timing(role, f"mapper edits: {prompt.text}", started, bench.renders - renders)
                self.rows["mapper"].append({"model": role, "prompt": prompt.text, "steps": len(trained.losses),
                                            "resumed_from": trained.resumed_from,
                                            "train_seconds": round(trained.seconds, 1),
                                            "loss_first": float(trained.losses[:10, 0].mean()),
                                            "loss_last": float(trained.losses[-10:, 0].mean())})
            for method, (edited, alpha) in measured.items():
                self._record(role, prompt, method, original, edited, corr, alpha)

    def _alpha(self, role, prompt: _Prompt, G, delta_s: np.ndarray, calibration: torch.Tensor) -> float:
        """cfg.alpha, or the alpha calibrated for this prompt and model (a row of the calibration table)."""
        cfg = self.cfg
        if cfg.alpha is not None:
            return float(cfg.alpha)
        if not np.any(delta_s):  # no channel passes beta: the edit does nothing at any alpha
            self.rows["alpha calibration"].append({"model": role, "prompt": prompt.text, "alpha": 0.0,
                                                   "reached": False, "note": f"no channel passes beta {self.beta:g}"})
            return 0.0
        started = time.perf_counter()
        found = calibrate_alpha(G, self.text_model, delta_s, prompt.embedding, calibration, sigmas=cfg.alpha_sigmas,
                                alpha_step=cfg.alpha_step, alpha_max=cfg.alpha_max, batch_size=cfg.batch_size)
        self._timing(role, f"alpha calibration: {prompt.text}", started, len(calibration) * (len(found.alphas) + 1))
        self.rows["alpha calibration"].append({
            "model": role, "prompt": prompt.text, "alpha": found.alpha, "reached": found.reached,
            "gain_sigmas": found.gain, "natural_std": found.natural_std,
            "alphas_tried": len(found.alphas), "note": ""})
        return found.alpha

    def _record(self, role, prompt: _Prompt, method, original, edited, corr, alpha: float | None) -> None:
        cfg = self.cfg
        row = {"model": role, "prompt": prompt.text, "method": method,
               "target": prompt.target.text if prompt.target else "",
               "alpha": float("nan") if alpha is None else alpha,
               "similarity_gain": similarity_gain(original.embeddings, edited.embeddings, prompt.embedding)}
        target_name = prompt.target.attribute if prompt.target else ""
        if prompt.target is not None:
            row.update(target_rates(prompt.target, original.scores[target_name], edited.scores[target_name]))
        found = side_effects(target_name, original.scores, edited.scores, self.thresholds, self.natural_std,
                             cfg.change_std)
        effects = {name: effect.flip_rate for name, effect in found.items()}
        uncorrelated = {n: r for n, r in effects.items()
                        if not target_name or abs(corr.loc[target_name, n]) < cfg.correlation_threshold}
        worst = max(effects, key=effects.get) if effects else ""
        worst_free = max(uncorrelated, key=uncorrelated.get) if uncorrelated else ""
        row.update({"worst_side_effect": worst, "worst_side_effect_rate": effects.get(worst, float("nan")),
                    "worst_uncorrelated": worst_free,
                    "worst_uncorrelated_rate": uncorrelated.get(worst_free, float("nan")),
                    "mean_side_effect_rate": float(np.mean(list(effects.values()))) if effects else float("nan")})
        self.rows["edits"].append(row)
        for name, effect in found.items():
            self.rows["side effects"].append({"model": role, "prompt": prompt.text, "method": method,
                                              "attribute": name, "flip_rate": effect.flip_rate,
                                              "move_rate": effect.move_rate,
                                              "correlation": float(corr.loc[target_name, name]) if target_name
                                              else float("nan")})
        self.metrics.setdefault("edits", {}).setdefault(role, {}).setdefault(prompt.text, {})[method] = {
            k: row[k] for k in ("alpha", "similarity_gain", "target_rate", "at_target", "worst_side_effect",
                                "worst_side_effect_rate", "worst_uncorrelated_rate") if k in row}

    def _channels(self, role, prompt: _Prompt, directions: ChannelDirections) -> None:
        relevance = directions.relevance(prompt.direction)
        names = directions.layout.channel_names()
        kept = np.abs(relevance) >= self.beta
        order = np.argsort(-np.abs(np.nan_to_num(relevance)), kind="stable")[:5]
        self.rows["channels"].append({
            "model": role, "prompt": prompt.text, "max_abs_relevance": float(np.nanmax(np.abs(relevance))),
            "channels_kept": int(kept.sum()), "channels": len(relevance),
            "top_channels": ", ".join(f"{names[c]} ({relevance[c]:+.2f})" for c in order)})

    def _sweep(self, role, prompt: _Prompt, directions: ChannelDirections, bench: HeldOut, original) -> None:
        """Target rate and side effects over the beta x alpha grid on the first sweep_samples held-out latents."""
        cfg = self.cfg
        count = min(cfg.sweep_samples, len(bench))
        before = {name: values[:count] for name, values in original.scores.items()}
        G = bench.G
        for beta in parse_strengths(cfg.sweep_betas):
            direction = directions.style_direction(prompt.direction, float(beta))
            step = torch.as_tensor(direction.vector, dtype=torch.float32)
            channels = int(np.count_nonzero(direction.vector))
            for alpha in parse_strengths(cfg.sweep_alphas):
                edited = bench.measure(s_edit(G, step, float(alpha)), count) if channels else None
                after = edited.scores if edited is not None else before
                rates = target_rates(prompt.target, before[prompt.target.attribute], after[prompt.target.attribute])
                effects = side_effects(prompt.target.attribute, before, after, self.thresholds, self.natural_std,
                                       cfg.change_std)
                self.rows["sweep"].append({"model": role, "prompt": prompt.text, "beta": float(beta),
                                           "alpha": float(alpha), "channels": channels,
                                           "target_rate": rates["target_rate"],
                                           "worst_side_effect_rate": max((e.flip_rate for e in effects.values()),
                                                                         default=0.0)})

    # ----- the result ----------------------------------------------------------------------------
    def result(self) -> AnalysisResult:
        cfg = self.cfg
        tables = {name: pd.DataFrame(rows) for name, rows in self.rows.items() if rows}
        figs = {}
        for prompt, rows in self.grids.items():
            if len(rows) > 1 and cfg.grid_samples > 0:  # grid_samples = 0: no edit grids
                figs[f"edits: {prompt}"] = image_rows(rows, f'"{prompt}"')
        if "side effects" in tables:
            figs["side effects"] = figures.side_effect_heatmaps(tables["side effects"])
        if "edits" in tables and "target_rate" in tables["edits"]:
            figs["target vs side effects"] = figures.method_comparison(tables["edits"])
        if "sweep" in tables:
            figs["beta x alpha"] = figures.sweep_heatmaps(tables["sweep"])
        if self.losses:
            figs["mapper losses"] = figures.loss_curves(self.losses)
        alpha = (f"alpha {cfg.alpha:g}" if cfg.alpha is not None else
                 f"alpha calibrated per prompt and model: the smallest multiple of {cfg.alpha_step:g} up to "
                 f"{cfg.alpha_max:g} at which the mean similarity to the prompt of {cfg.calibration_samples} training "
                 f"samples rises by {cfg.alpha_sigmas:g} natural std (the alpha column; the calibration table)")
        sections = [
            Section("Edits", f"Each prompt edited at the default settings (global: beta {self.beta:g}, {alpha}; "
                    f"mapper: {cfg.mapper_steps} steps) on {cfg.eval_samples} held-out samples per "
                    "model. target_rate: share of the samples not at the target decision before the edit that "
                    "reach it; side effects: share in which another attribute's decision flips (a continuous "
                    "attribute's decision: above the middle of its range); the side-effect table's move_rate: share "
                    f"in which it moves by {cfg.change_std:g} natural std; similarity_gain: mean change of the cosine "
                    f"to the prompt ({cfg.text_model}). global (S) edits S, the mapper edits W+. The shaded box of "
                    "the scatter plot: target reached in >= 70 % with the worst side effect <= 15 %.",
                    tables=[t for t in ("edits", "side effects", "alpha calibration") if t in tables],
                    figures=[f for f in ("target vs side effects", "side effects") if f in figs]),
            Section("Edit grids", "Rows: held-out samples of each model, unedited and edited by each method.",
                    figures=[f for f in figs if f.startswith("edits: ")]),
            Section("Beta x alpha", "Target rate and the worst side effect of the global direction over the "
                    f"sweep, on the first {cfg.sweep_samples} held-out samples.",
                    tables=["sweep"] if "sweep" in tables else [],
                    figures=["beta x alpha"] if "sweep" in tables else []),
            Section("Channels and mappers", "The most relevant S channels per prompt (relevance R_c = delta_i_c . "
                    "delta_t) and the mapper training. Each mapper is kept in the run folder, "
                    "work/styleclip/<model>/mappers/<prompt>/mapper.pt: `sg3probe edit --mapper PATH --seeds ...` "
                    "applies it to other latents.",
                    tables=[t for t in ("channels", "mapper") if t in tables],
                    figures=["mapper losses"] if self.losses else []),
            Section("Timings", tables=["timings"]),
        ]
        return AnalysisResult(metrics=self.metrics, tables=tables, figures=figs, arrays=self.arrays,
                              summary=_reading(tables.get("edits"), tables.get("alpha calibration")),
                              title="StyleCLIP: text-driven edits",
                              sections=sections)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "prompt"


def _model_sha256(samples) -> str:
    store = getattr(samples, "store", None)
    return (getattr(store, "metadata", None) or {}).get("model_sha256", "")


def _span(rates: pd.Series) -> str:
    """'6%' or '6% to 22%': the range of some rates as the summary says it."""
    low, high = f"{rates.min():.0%}", f"{rates.max():.0%}"
    return low if low == high else f"{low} to {high}"


def _reading(edits: pd.DataFrame | None, calibration: pd.DataFrame | None = None) -> str:
    if edits is None or edits.empty or "target_rate" not in edits:
        return "No prompt had a target attribute to measure."
    parts = []
    for (model, method), group in edits.groupby(["model", "method"], sort=False):
        rated = group.dropna(subset=["target_rate"])
        if rated.empty:
            continue
        parts.append(f"{method} on the {model} model: the target decision is reached in "
                     f"{_span(rated['target_rate'])} of held-out samples (median {rated['target_rate'].median():.0%}); "
                     "per prompt, the other attribute that changes most flips its decision (a continuous one: "
                     f"across the middle of its range) in {_span(rated['worst_side_effect_rate'])} of them.")
    if calibration is not None and not calibration["reached"].all():
        short = calibration[~calibration["reached"].astype(bool)]
        parts.append("The alpha calibration did not reach its level for " + "; ".join(
            f"{row.prompt} ({row.model})" for row in short.itertuples()) + ": those edits use the alpha of the "
            "largest similarity gain.")
    return " ".join(parts)
