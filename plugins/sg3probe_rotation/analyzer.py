"""The `rotation` analyzer: which W+ codes move in-plane pose, and how to hold pose fixed.

For each model (aligned, unaligned): per W+ index k (and ranges) replace ws[k] by another sample's
row, by w_avg or by a fixed code, and measure how the (a) model-internal, (b) image-measured and
(c) pose-scorer geometry change against how the content changes; check pseudo-alignment
(ws[0] = w_avg) and the user transform (equivariance PSNR, as StyleGAN3's EQ-T / EQ-R).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from sg3probe.analyzer import AnalysisContext, Analyzer, Needs, RunPlan
from sg3probe.errors import ConfigError
from sg3probe.models.transforms import inverse_transform
from sg3probe.results import AnalysisResult
from sg3probe_rotation import report
from sg3probe_rotation.ablation import (MODES, Target, ablate, derangement, measure_change, observe, observe_many,
                                        parse_range, pose_within, render, score_scales, shares, summarise)
from sg3probe_rotation.figures import image_strips, share_bars
from sg3probe_rotation.geometry import internal_geometry, psnr, radial_hann, register, warp, wrap_degrees


class Rotation(Analyzer):
    name = "rotation"
    description = ("Rotation-layer ablation: which W+ codes move in-plane rotation/translation (model-internal, "
                   "image registration, pose scorer) versus content; pseudo-alignment; user-transform "
                   "equivariance (EQ-T/EQ-R PSNR).")
    needs = Needs(spaces={"wplus"}, images=True, models="both")

    @dataclass
    class Config:
        samples: int = 16  # samples per model in the per-index ablations
        modes: tuple[str, ...] = MODES  # resample (another sample's row), w_avg, fixed (one code)
        indices: tuple[int, ...] = ()  # the W+ indices ablated one at a time; [] = all
        ranges: tuple[str, ...] = ("0-1", "0-3", "1-15", "2-15")  # extra W+ ranges, inclusive
        alignment_samples: int = 48  # unaligned samples in the pseudo-alignment check
        angle_tolerance: float = 5.0  # degrees from upright
        shift_tolerance: float = 0.03  # fraction of the width from centred
        check_samples: int = 4  # samples per user-transform check
        check_angles: tuple[float, ...] = (-30.0, -10.0, 10.0, 30.0)
        check_translations: tuple[tuple[float, float], ...] = ((0.05, 0.0), (0.0, -0.05), (0.08, 0.06))
        strip_columns: int = 6
        batch_size: int = 16
        refine: int = 2  # registration refinement passes

        def __post_init__(self) -> None:
            unknown = [m for m in self.modes if m not in MODES]
            if unknown or not self.modes:
                raise ValueError(f"modes {list(self.modes)}: each must be one of {', '.join(MODES)}")
            if self.samples < 2 or self.alignment_samples < 1 or self.check_samples < 1:
                raise ValueError("samples must be >= 2, alignment_samples and check_samples >= 1")
            if self.angle_tolerance <= 0 or self.shift_tolerance <= 0:
                raise ValueError("angle_tolerance and shift_tolerance must be positive")
            if self.batch_size < 1 or self.refine < 0 or self.strip_columns < 1:
                raise ValueError("batch_size and strip_columns must be >= 1, refine >= 0")

    def prepare(self, cfg, plan: RunPlan) -> None:
        """The seed count, before sampling: a rerun with more seeds would meet a store of the old ones."""
        _check_count(len(plan.seeds))

    def analyze(self, samples, ctx: AnalysisContext, cfg) -> AnalysisResult:
        scorer = ctx.scorer
        ablation_rows, alignment_rows, check_rows = [], [], []
        figures, strips = {}, {}
        arrays = {}
        for stream, (role, role_samples) in enumerate(samples.items()):
            G = ctx.generator(role)
            ws_all = torch.from_numpy(np.asarray(role_samples["wplus"], dtype=np.float32))  # [N, num_ws, w_dim]
            transforms_all = torch.from_numpy(np.asarray(role_samples["transforms"], dtype=np.float32))  # [N, 3, 3]
            seeds = np.asarray(role_samples["seeds"])
            _check_count(len(ws_all))
            count = min(cfg.samples, len(ws_all) - 1)
            targets = self._targets(cfg, G.num_ws)
            rows = self._ablations(G, scorer, ws_all, transforms_all, count, targets, cfg, ctx, role, stream)
            for row in rows:
                row["fixed_seed"] = int(seeds[count])
            ablation_rows += rows
            check_rows += self._user_transform_checks(G, scorer, ws_all, transforms_all, cfg, role)
            alignment_rows += self._pseudo_alignment(G, scorer, ws_all, transforms_all, cfg, role, ctx)
            pose_rows = report.pose_rows(pd.DataFrame(rows), G.num_ws)
            strips[role] = self._strips(G, ws_all, transforms_all, cfg, role, pose_rows)
            arrays[f"internal_angle_{role}"] = internal_geometry(G, ws_all[:count])["angle_deg"]

        ablations = pd.DataFrame(ablation_rows)
        alignment = pd.DataFrame(alignment_rows)
        checks = pd.DataFrame(check_rows)
        equivariance = report.equivariance_table(checks)
        tables = {"per_index": ablations[ablations["kind"] == "index"].reset_index(drop=True),
                  "ranges": ablations[ablations["kind"] == "range"].reset_index(drop=True),
                  "pseudo_alignment": alignment, "user_transform": checks, "equivariance": equivariance}
        for mode in cfg.modes:
            figures[f"where pose lives ({mode})"] = share_bars(ablations, mode)
        figures.update({f"strips {role}": figure for role, figure in strips.items()})
        findings = report.findings(ablations, alignment, equivariance, cfg)
        return AnalysisResult(
            metrics=report.metrics(ablations, alignment, equivariance, findings),
            tables=tables, figures=figures, arrays=arrays, summary=findings.summary,
            title="Rotation-layer ablation: where pose lives",
            sections=report.sections(findings, cfg, list(figures)),
            captions=report.CAPTIONS,
        )

    # -- parts ----------------------------------------------------------------------------------

    @staticmethod
    def _targets(cfg, num_ws: int) -> list[Target]:
        bad = [k for k in cfg.indices if not 0 <= k < num_ws]
        if bad:
            raise ConfigError(f"rotation.indices {bad}: W+ indices of this model are 0..{num_ws - 1}")
        targets = [Target(k, k) for k in (cfg.indices or range(num_ws))]
        for text in cfg.ranges:
            try:
                targets.append(parse_range(text, num_ws))
            except ValueError as error:
                raise ConfigError(f"rotation.ranges: {error}") from None
        return targets

    def _ablations(self, G, scorer, ws_all, transforms_all, count, targets, cfg, ctx, role, stream) -> list[dict]:
        ws, transforms = ws_all[:count], transforms_all[:count]
        fixed = ws_all[count]  # a sample outside the analysed ones: the same truncation as they have
        width = G.img_resolution
        base = observe(G, scorer, ws, transforms, cfg.batch_size)
        scale = score_scales(base)
        donors = derangement(count, ctx.rng(100 + stream))
        rows = []
        jobs = [(mode, target) for mode in cfg.modes for target in targets]
        per_group = max(1, cfg.batch_size // count)  # ablations rendered together: full batches, bounded memory
        groups = [jobs[start:start + per_group] for start in range(0, len(jobs), per_group)]
        with ctx.progress(total=len(jobs), desc=f"rotation ablations {role}") as progress:
            for group in groups:
                changed = [ablate(ws, target, mode, donors=donors, w_avg=G.w_avg, fixed=fixed) for mode, target in group]
                observed = observe_many(G, scorer, changed, [transforms] * len(group), cfg.batch_size)
                for (mode, target), after in zip(group, observed):
                    change = measure_change(base, after, width, scale, refine=cfg.refine)
                    rows.append({"model": role, "mode": mode, "target": target.label,
                                 "kind": "index" if target.first == target.last else "range",
                                 "first": target.first, "last": target.last, "samples": count, **summarise(change)})
                progress.update(len(group))
        content_column = "score_change" if scale else "pixel_aligned"
        # The pose scorer, where there is one, knows the domain's pose; image registration is the
        # model-free measure (of the two, the one the shares headline).
        pose_measure = "pose" if rows and "pose_angle" in rows[0] else "image"
        for mode in cfg.modes:
            singles = [row for row in rows if row["mode"] == mode and row["kind"] == "index"]
            for column, share in (("image_angle", "image_rotation_share"), ("image_shift", "image_translation_share"),
                                  ("pose_angle", "pose_rotation_share"), ("pose_shift", "pose_translation_share"),
                                  ("internal_angle", "internal_rotation_share"), (content_column, "content_share")):
                if singles and all(column in row for row in singles):
                    for row, value in zip(singles, shares(singles, column)):
                        row[share] = value
            for row in singles:
                row["pose_measure"] = pose_measure
                row["rotation_share"] = row[f"{pose_measure}_rotation_share"]
                row["translation_share"] = row[f"{pose_measure}_translation_share"]
        return rows

    def _user_transform_checks(self, G, scorer, ws_all, transforms_all, cfg, role) -> list[dict]:
        count = min(cfg.check_samples, len(ws_all))
        ws, sample_transforms = ws_all[:count], transforms_all[:count]
        width = G.img_resolution
        checks = [("rotation", a, (0.0, 0.0)) for a in cfg.check_angles]
        checks += [("translation", 0.0, tuple(t)) for t in cfg.check_translations]
        if cfg.check_angles and cfg.check_translations:
            checks.append(("both", cfg.check_angles[-1], tuple(cfg.check_translations[0])))
        disc = radial_hann(width, width) > 0
        # The user transform acts after the sample's own one: inverse(U M) = inverse(M) inverse(U).
        transforms = [sample_transforms @ inverse_transform(translate=translate, angle=angle)
                      for _, angle, translate in checks]
        base, *observed = observe_many(G, scorer, [ws] * (len(checks) + 1), [sample_transforms] + transforms,
                                       cfg.batch_size)
        rows = []
        for (kind, angle, translate), moved in zip(checks, observed):
            shift_px = np.array(translate) * width
            expected, valid = warp(base.images.numpy(), angle, np.broadcast_to(shift_px, (count, 2)))
            mask = valid * disc if kind != "translation" else valid
            registration = register(base.images.numpy(), moved.images.numpy(), refine=cfg.refine)
            row = {"model": role, "kind": kind, "angle": angle, "tx": translate[0], "ty": translate[1],
                   "psnr_db": float(np.mean(psnr(moved.images.numpy(), expected, mask))),
                   "image_angle_error": float(np.mean(np.abs(wrap_degrees(registration.angle_deg - angle)))),
                   "image_shift_error_px": float(np.mean(np.hypot(*(registration.shift_px - shift_px).T))),
                   "confidence": float(np.mean(registration.confidence))}
            if base.pose is not None:
                row["pose_angle_error"] = float(np.mean(np.abs(wrap_degrees(
                    moved.pose["angle_deg"] - base.pose["angle_deg"] - angle))))
                row["pose_shift_error_pct"] = float(100 * np.mean(np.hypot(
                    moved.pose["tx"] - base.pose["tx"] - translate[0], moved.pose["ty"] - base.pose["ty"] - translate[1])))
            rows.append(row)
        return rows

    def _pseudo_alignment(self, G, scorer, ws_all, transforms_all, cfg, role, ctx) -> list[dict]:
        """Share of samples within the tolerances of upright/centred, as sampled and pseudo-aligned."""
        count = min(cfg.alignment_samples, len(ws_all))
        ws, transforms = ws_all[:count], transforms_all[:count]
        conditions = [("as sampled", None)]
        if role == "unaligned":
            conditions += [("ws[0] = w_avg", Target(0, 0)), ("ws[0..1] = w_avg", Target(0, 1)),
                           ("ws[0..3] = w_avg", Target(0, 3))]
        # The model's own average image (every row w_avg) is the image-based reference pose.
        average_ws = G.w_avg.reshape(1, 1, -1).expand(1, G.num_ws, -1).cpu()
        average = render(G, average_ws, torch.eye(3)[None], 1).numpy()
        average_pose = internal_geometry(G, average_ws)
        changed = [ws if target is None else ablate(ws, target, "w_avg", donors=np.zeros(0, int), w_avg=G.w_avg,
                                                    fixed=ws[0]) for _, target in conditions]
        observed = observe_many(G, scorer, changed, [transforms] * len(conditions), cfg.batch_size)
        rows = []
        for (label, _), seen in zip(conditions, observed):
            registration = register(np.repeat(average, count, axis=0), seen.images.numpy(), refine=cfg.refine)
            shift = registration.shift_px / G.img_resolution
            row = {"model": role, "condition": label, "samples": count,
                   "within_image": float(np.mean(pose_within(registration.angle_deg, shift[:, 0], shift[:, 1],
                                                             cfg.angle_tolerance, cfg.shift_tolerance))),
                   "image_abs_angle_median": float(np.median(np.abs(registration.angle_deg))),
                   "image_confidence": float(np.mean(registration.confidence)),
                   "within_internal": float(np.mean(pose_within(seen.internal["angle_deg"], seen.internal["tx"],
                                                                seen.internal["ty"], cfg.angle_tolerance,
                                                                cfg.shift_tolerance))),
                   "internal_abs_angle_median": float(np.median(np.abs(seen.internal["angle_deg"]))),
                   "w_avg_internal_angle": float(average_pose["angle_deg"][0])}
            if seen.pose is not None:
                row["within_pose_scorer"] = float(np.mean(pose_within(
                    seen.pose["angle_deg"], seen.pose["tx"], seen.pose["ty"], cfg.angle_tolerance, cfg.shift_tolerance)))
                row["within_pose_scorer_angle_only"] = float(np.mean(np.abs(seen.pose["angle_deg"]) <= cfg.angle_tolerance))
                row["pose_abs_angle_median"] = float(np.median(np.abs(seen.pose["angle_deg"])))
                row["pose_abs_shift_median_pct"] = float(100 * np.median(np.hypot(seen.pose["tx"], seen.pose["ty"])))
            rows.append(row)
        return rows

    def _strips(self, G, ws_all, transforms_all, cfg, role, pose_rows: Target):
        """Content changing with pose held, pose changing with content held, and the user transform."""
        columns = min(cfg.strip_columns, len(ws_all) - 1)
        anchor = ws_all[:1]  # [1, num_ws, w_dim]
        others = ws_all[1:1 + columns]
        transform = transforms_all[:1].expand(columns, 3, 3)
        content = others.clone()
        content[:, pose_rows.rows] = anchor[:, pose_rows.rows]
        pose = anchor.expand(columns, -1, -1).clone()
        pose[:, pose_rows.rows] = others[:, pose_rows.rows]
        angles = np.linspace(-45, 45, columns)
        user = transforms_all[:1] @ torch.stack([inverse_transform(angle=float(a)) for a in angles])
        label = f"ws[{pose_rows.label}]"
        batches = [(others, transforms_all[1:1 + columns]), (content, transform), (pose, transform),
                   (anchor.expand(columns, -1, -1), user)]
        images = render(G, torch.cat([ws for ws, _ in batches]), torch.cat([t for _, t in batches]), cfg.batch_size)
        images = images.split(columns)
        rows = [("samples", images[0]),
                (f"content changes, pose held: {label} of sample 0, the rest of each", images[1]),
                (f"pose changes, content held: {label} of each, the rest of sample 0", images[2]),
                (f"sample 0 under a user rotation of {angles[0]:g}..{angles[-1]:g} deg", images[3])]
        return image_strips(rows, f"{role} model: pose codes {label}")


def _check_count(seeds: int) -> None:
    """The ablations use up to `samples` seeds and one more as the fixed sample: at least 3 in all."""
    if seeds < 3:
        raise ConfigError(f"the rotation analyzer needs at least 3 sampled seeds per model, got {seeds}; "
                          "sample more (--seeds)")
