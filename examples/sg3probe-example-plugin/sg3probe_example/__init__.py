"""An example sg3probe plugin, packaged as an outside author would: one analyzer, one scorer."""
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import sg3probe
from sg3probe.analyzer import Analyzer, Needs
from sg3probe.results import AnalysisResult
from sg3probe.scorer import Attribute, Scorer


class WSpread(Analyzer):
    """How many principal directions of W carry its variance (a GANSpace-style first look)."""

    name = "w-spread"
    description = "Principal components of W: explained variance and the effective dimensionality."
    needs = Needs(spaces={"w"})

    @dataclass
    class Config:
        components: int = 20  # leading components shown in the table and the figure

        def __post_init__(self):  # a ValueError here is the user's one-line config error
            if self.components < 1:
                raise ValueError(f"components must be >= 1, got {self.components}")

    def analyze(self, samples, ctx, cfg):
        w = np.asarray(samples["aligned"]["w"], dtype=np.float64)  # [N, w_dim]
        centred = w - w.mean(axis=0)
        singular = np.linalg.svd(centred, compute_uv=False)
        variance = singular ** 2 / (singular ** 2).sum()
        k = min(cfg.components, len(variance))
        effective = float(np.exp(-(variance * np.log(variance + 1e-12)).sum()))
        figure = Figure(figsize=(5, 3), layout="constrained")
        ax = figure.subplots()
        ax.bar(range(k), variance[:k])
        ax.set_xlabel("component")
        ax.set_ylabel("explained variance")
        table = pd.DataFrame({"component": range(k), "explained_variance": variance[:k],
                              "cumulative": np.cumsum(variance)[:k]})
        return AnalysisResult(
            metrics={"effective_dimensionality": effective, "samples": len(w)},
            tables={"components": table}, figures={"explained variance": figure},
            summary=f"W of {len(w)} samples has an effective dimensionality of {effective:.1f}; "
                    f"the first {k} components explain {np.cumsum(variance)[k - 1]:.0%} of its variance.")


class ImageStatistics(Scorer):
    """A scorer that needs no training: brightness (binary logit) and redness (continuous)."""

    name = "imagestats"
    attributes = (Attribute("bright", "binary"), Attribute("red", "continuous"))

    def __init__(self, device="cpu"):
        self.device = device

    def score(self, images):
        x = images.detach().float().cpu().numpy()  # [B, C, H, W] in about [-1, 1]
        return {"bright": x.mean(axis=(1, 2, 3)) * 20.0, "red": x[:, 0].mean(axis=(1, 2))}


@sg3probe.hookimpl
def register_analyzers(register):
    register(WSpread)


@sg3probe.hookimpl
def register_scorers(register):
    register(ImageStatistics)
