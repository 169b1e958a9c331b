"""The rotation analyzer's reading: metrics, the findings in words, sections and captions."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sg3probe.results import Section
from sg3probe_rotation.ablation import Target

CAPTIONS = {
    "per_index": ("One row per model, ablation mode and W+ index k (ws[k] replaced). Angles in degrees "
                  "(image_angle: median over samples of the image-registered rotation; internal_*: from "
                  "S['input']; pose_*: the scorer's pose), shifts in % of the width, pixel distances RMS on "
                  "the [-1, 1] scale (pixel_aligned after undoing the measured rotation and shift), "
                  "score_change in units of each attribute's spread. *_share: the index's part of the "
                  "total over all single indices of that mode."),
    "ranges": "The same measures for ranges of W+ rows replaced together (inclusive).",
    "pseudo_alignment": ("Share of samples within the angle and shift tolerances of upright/centred: by the pose "
                         "scorer (absolute), by image registration against the model's average image "
                         "(every row w_avg), and by the model-internal geometry."),
    "user_transform": ("Outputs under an explicit user transform compared with the untransformed output moved "
                       "by the same rotation/translation: PSNR in dB (dynamic range 2, inside the valid disc), and "
                       "how far the image registration and the pose scorer are from the requested geometry."),
    "equivariance": ("Mean PSNR of the translation checks (EQ-T) and rotation checks (EQ-R), per model; the "
                     "registration errors are medians over the checks registered with confidence >= "
                     "0.5 (confident_checks of checks): a failed registration says nothing of the generator."),
}
MIN_CONFIDENCE = 0.5  # below this an image registration is not trusted (the caution in the reading)


@dataclass
class Findings:
    """The reading of a run: one paragraph, and a text per section."""

    summary: str
    texts: dict[str, str] = field(default_factory=dict)
    numbers: dict[str, dict] = field(default_factory=dict)


def pose_rows(rows: pd.DataFrame, num_ws: int, standout: float = 3.0) -> Target:
    """The rows to hold for pose in the strips: ws[0..k], where k is the last index in the first
    half of ws whose rotation share stands out (>= `standout` x the median share), and at least 1
    (the paper's ws[0..1]).

    A cumulative share would not do: every index's share has a floor from the measurement's noise,
    and content codes at the end move the pose scorer a little, so covering most of the total
    would hold nearly every code and leave no content to change.
    """
    singles = _singles(rows)
    fallback = Target(0, min(1, num_ws - 1))
    if singles.empty or singles["rotation_share"].isna().all():
        return fallback
    share = singles.set_index("first")["rotation_share"].fillna(0.0)
    floor = float(share.median())
    early = share[share.index < max(num_ws // 2, 2)]
    standing_out = early[early >= standout * floor] if floor > 0 else early[early > 0]
    last = int(standing_out.index.max()) if len(standing_out) else 1
    return Target(0, min(max(last, 1), num_ws - 1))


def _singles(rows: pd.DataFrame) -> pd.DataFrame:
    """Single-index rows of the preferred mode (resample if run, else the first mode)."""
    if rows.empty:
        return rows
    index_rows = rows[rows["kind"] == "index"]
    modes = list(dict.fromkeys(index_rows["mode"]))
    mode = "resample" if "resample" in modes else modes[0]
    return index_rows[index_rows["mode"] == mode]


def equivariance_table(checks: pd.DataFrame) -> pd.DataFrame:
    """EQ-T (translations) and EQ-R (rotations) PSNR per model, with the registration errors."""
    rows = []
    for model, group in checks.groupby("model", sort=False):
        rotation, translation = group[group["kind"] == "rotation"], group[group["kind"] == "translation"]
        confident = group[group["confidence"] >= MIN_CONFIDENCE]
        rows.append({"model": model,
                     "EQ-T_psnr_db": float(translation["psnr_db"].mean()) if len(translation) else math.nan,
                     "EQ-R_psnr_db": float(rotation["psnr_db"].mean()) if len(rotation) else math.nan,
                     "image_angle_error_deg": float(confident["image_angle_error"].median()) if len(confident)
                     else math.nan,
                     "image_shift_error_px": float(confident["image_shift_error_px"].median()) if len(confident)
                     else math.nan,
                     "confident_checks": len(confident), "checks": len(group),
                     **({"pose_angle_error_deg": float(group["pose_angle_error"].mean())}
                        if "pose_angle_error" in group else {})})
    return pd.DataFrame(rows)


def findings(ablations: pd.DataFrame, alignment: pd.DataFrame, equivariance: pd.DataFrame, cfg) -> Findings:
    """The results in words with their numbers, and where they differ from the paper's expectation."""
    texts, numbers, summary = {}, {}, []
    where = []
    for model, rows in ablations.groupby("model", sort=False):
        singles = _singles(rows)
        mode = singles["mode"].iloc[0]
        measure = singles["pose_measure"].iloc[0]
        angle_column = "pose_angle" if measure == "pose" else "image_angle"
        measure_words = ("the pose scorer (mean |change|)" if measure == "pose"
                         else "image registration (median |change|)")
        ranked = singles.sort_values("rotation_share", ascending=False)
        top, second = ranked.iloc[0], ranked.iloc[min(1, len(ranked) - 1)]
        image_top = singles.loc[singles["image_rotation_share"].idxmax()]
        largest = singles.loc[singles[angle_column].idxmax()]
        numbers[model] = {"mode": mode, "pose_measure": measure,
                          "top_rotation_index": int(top["first"]), "top_rotation_share": float(top["rotation_share"]),
                          "top_rotation_angle_deg": float(top[angle_column]),
                          "second_rotation_index": int(second["first"]),
                          "second_rotation_share": float(second["rotation_share"]),
                          "image_top_rotation_index": int(image_top["first"]),
                          "image_top_rotation_share": float(image_top["image_rotation_share"]),
                          "max_index_angle_deg": float(largest[angle_column]), "max_index": int(largest["first"])}
        sentence = (f"For the {model} model (ws[k] {_mode_words(mode)}, {int(top['samples'])} samples), the in-plane "
                    f"rotation measured by {measure_words} changes most with ws[{int(top['first'])}] "
                    f"({top['rotation_share']:.0%} of the total over single indices, {top[angle_column]:.1f} deg), "
                    f"then ws[{int(second['first'])}] ({second['rotation_share']:.0%}, {second[angle_column]:.1f} deg).")
        if measure == "pose":
            sentence += (f" Model-free image registration ranks ws[{int(image_top['first'])}] first "
                         f"({image_top['image_rotation_share']:.0%}, median {image_top['image_angle']:.1f} deg, "
                         f"mean confidence {image_top['confidence']:.2f}).")
        confidence = float(singles["confidence"].mean())
        numbers[model]["image_confidence"] = confidence
        if confidence < MIN_CONFIDENCE:
            sentence += (f" Caution: the image registrations have a low mean confidence ({confidence:.2f}; a moved copy "
                         "of an image scores about 0.8-1, unrelated images 0.1-0.3), so the image-measured angles of "
                         "this model are unreliable (outputs with little structure, or content that changes with the "
                         "code).")
        if (singles["first"] == 0).any():
            ws0 = singles[singles["first"] == 0].iloc[0]
            numbers[model]["ws0_internal_angle_deg"] = float(ws0["internal_angle"])
            sentence += (f" Replacing ws[0] changes the model-internal angle by {ws0['internal_angle']:.1f} deg and the "
                         f"translation by {ws0['internal_shift']:.1f} % of the width on average.")
        if "content_share" in singles and singles["content_share"].notna().any():
            content_top = singles.loc[singles["content_share"].idxmax()]
            sentence += (f" Content changes most with ws[{int(content_top['first'])}] "
                         f"({content_top['content_share']:.0%} of the content change).")
        ranges = rows[(rows["kind"] == "range") & (rows["mode"] == mode)]
        if len(ranges):
            sentence += " Replacing ranges together: " + ", ".join(
                f"ws[{r.target}] {getattr(r, angle_column):.1f} deg" for r in ranges.itertuples()) + "."
        if model == "aligned":
            sentence += (f" No single index turns the aligned model's images by more than {largest[angle_column]:.1f} deg "
                         f"(at ws[{int(largest['first'])}])"
                         + (", as expected of an aligned model." if largest[angle_column] <= 3 else
                            ", more than the few degrees expected of an aligned model."))
        where.append(sentence)
    texts["where"] = " ".join(where)
    summary += where

    if not alignment.empty and (alignment["model"] == "unaligned").any():
        rows = alignment[alignment["model"] == "unaligned"].set_index("condition")
        column = "within_pose_scorer" if "within_pose_scorer" in rows else "within_image"
        how = "by the pose scorer" if column == "within_pose_scorer" else "by image registration against the average image"
        sampled, ws0 = rows.loc["as sampled", column], rows.loc["ws[0] = w_avg", column]
        ws01 = rows.loc["ws[0..1] = w_avg", column]
        numbers["pseudo_alignment"] = {"measure": column, "as_sampled": float(sampled), "ws0": float(ws0),
                                       "ws0_1": float(ws01)}
        text = (f"Pseudo-alignment of the unaligned model ({int(rows['samples'].iloc[0])} samples, within "
                f"{cfg.angle_tolerance:g} deg and {cfg.shift_tolerance:.0%} of the width of upright/centred, {how}): "
                f"{sampled:.0%} as sampled, {ws0:.0%} with ws[0] = w_avg, {ws01:.0%} with ws[0..1] = w_avg"
                f" ({rows.loc['ws[0..3] = w_avg', column]:.0%} with ws[0..3]).")
        if column == "within_pose_scorer":
            text += (f" By angle alone: {rows.loc['as sampled', 'within_pose_scorer_angle_only']:.0%} as sampled, "
                     f"{rows.loc['ws[0] = w_avg', 'within_pose_scorer_angle_only']:.0%} with ws[0] = w_avg; median "
                     f"|angle| {rows.loc['as sampled', 'pose_abs_angle_median']:.1f} -> "
                     f"{rows.loc['ws[0] = w_avg', 'pose_abs_angle_median']:.1f} deg.")
        text += (f" w_avg's own internal angle is {rows['w_avg_internal_angle'].iloc[0]:.1f} deg. "
                 + ("As the paper expects, ws[0] = w_avg brings most samples upright."
                    if ws0 >= 0.5 else
                    "Unlike the paper's expectation, ws[0] = w_avg does not bring most samples upright and centred.")
                 + (f" Also setting ws[1] helps ({ws01:.0%})." if ws01 > ws0 + 0.05 else ""))
        texts["alignment"] = text
        summary.append(text)
    if not equivariance.empty:
        parts = [f"{r['model']}: EQ-T {r['EQ-T_psnr_db']:.1f} dB, EQ-R {r['EQ-R_psnr_db']:.1f} dB, registration error "
                 f"{r['image_angle_error_deg']:.2f} deg / {r['image_shift_error_px']:.2f} px (median of the "
                 f"{r['confident_checks']} of {r['checks']} checks registered with confidence >= {MIN_CONFIDENCE:g})"
                 for _, r in equivariance.iterrows()]
        texts["equivariance"] = ("User transform through the input layer (PSNR of the transformed output against the "
                                 "moved output; higher is more equivariant): " + "; ".join(parts) + ".")
        summary.append(texts["equivariance"])
    texts["paper"] = _paper_comparison(numbers)
    summary.append(texts["paper"])
    return Findings(" ".join(summary), texts, numbers)


def _mode_words(mode: str) -> str:
    return {"resample": "taken from another sample", "w_avg": "set to w_avg", "fixed": "set to a fixed code"}[mode]


def _paper_comparison(numbers: dict) -> str:
    """Where the measured models agree or differ with the paper (ws[0], then ws[1], carry rotation)."""
    parts = []
    unaligned = numbers.get("unaligned")
    if unaligned:
        first, second = unaligned["top_rotation_index"], unaligned["second_rotation_index"]
        if first in (0, 1):
            parts.append(f"As in the paper, the unaligned model's rotation is carried by the first codes: ws[{first}] "
                         f"({unaligned['top_rotation_share']:.0%} of the rotation change).")
            if second != 1 - first:
                parts.append(f"Unlike the paper, the other of ws[0], ws[1] is not next (ws[{second}] is, with "
                             f"{unaligned['second_rotation_share']:.0%}).")
        else:
            parts.append(f"Unlike the paper, where ws[0] and ws[1] carry rotation, the unaligned model's rotation "
                         f"changes most with ws[{first}].")
    aligned = numbers.get("aligned")
    if aligned:
        parts.append(f"The aligned model's largest per-index rotation change is {aligned['max_index_angle_deg']:.1f} deg "
                     f"(ws[{aligned['max_index']}])"
                     + ("; the paper expects no rotation there, as found." if aligned["max_index_angle_deg"] <= 3
                        else "; the paper expects none."))
    alignment = numbers.get("pseudo_alignment")
    if alignment:
        if alignment["ws0"] >= 0.5:
            parts.append(f"Pseudo-alignment works as the paper reports: {alignment['ws0']:.0%} of the samples "
                         "within tolerance with ws[0] = w_avg.")
        else:
            parts.append(f"Pseudo-alignment works less well than the paper reports ({alignment['ws0']:.0%} within "
                         "tolerance with ws[0] = w_avg).")
    return " ".join(parts) if parts else "No model comparison was possible."


def metrics(ablations: pd.DataFrame, alignment: pd.DataFrame, equivariance: pd.DataFrame, found: Findings) -> dict:
    """The headline numbers as nested JSON-able metrics."""
    out: dict = {"findings": found.numbers}
    for _, row in equivariance.iterrows():
        out.setdefault(row["model"], {}).update({k: _plain(v) for k, v in row.items() if k != "model"})
    for _, row in alignment.iterrows():
        out.setdefault(row["model"], {})[f"pseudo_alignment/{row['condition']}"] = {
            k: _plain(v) for k, v in row.items() if k not in ("model", "condition")}
    return out


def _plain(value):
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def sections(found: Findings, cfg, figures: list[str]) -> list[Section]:
    return [
        Section("Where pose lives", found.texts.get("where", ""), tables=["per_index", "ranges"],
                figures=[f for f in figures if f.startswith("where pose lives")]),
        Section("Pseudo-alignment", found.texts.get("alignment", "Needs an unaligned model."),
                tables=["pseudo_alignment"]),
        Section("User transform and equivariance", found.texts.get("equivariance", ""),
                tables=["equivariance", "user_transform"]),
        Section("Content and pose separated", "Rows: samples; content changing with the pose codes of sample 0 "
                "held; pose changing with the content codes of sample 0 held; sample 0 under an explicit user "
                "rotation.", figures=[f for f in figures if f.startswith("strips")]),
        Section("Compared with the paper", found.texts.get("paper", "")),
    ]
