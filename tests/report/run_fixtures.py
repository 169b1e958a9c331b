"""Fixed results and run folders for the report tests."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from sg3probe.results import AnalysisResult, Section

HOSTILE = "<script>alert(1)</script>"


def bar_figure(values=(0.9, 0.5, 0.7)) -> Figure:
    figure = Figure(figsize=(3, 2))
    axes = figure.add_subplot()
    axes.bar(["D", "C", "I"], values)
    return figure


def sample_grid_png() -> bytes:
    pixels = np.kron(np.eye(4, dtype=np.uint8) * 255, np.ones((8, 8), dtype=np.uint8))
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def fixed_result() -> AnalysisResult:
    per_attribute = pd.DataFrame(
        {"D": [0.91, 0.52], "C": [0.8, 0.4], "I": [0.95, 0.6]},
        index=pd.Index(["smiling", "angle"], name="attribute"))
    return AnalysisResult(
        metrics={"w": {"D": np.float32(0.9), "C": 0.5, "I": 0.7}, "n_samples": np.int64(1000),
                 "spaces": ["z", "w"]},
        tables={"per attribute": per_attribute,
                "plain": pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})},
        figures={"dci bars": bar_figure(), "importance": bar_figure((0.1, 0.2, 0.3))},
        arrays={"directions": np.arange(6, dtype=np.float32).reshape(2, 3)},
        summary="W is more disentangled than Z.",
        title="DCI disentanglement",
        sections=[Section("Per space", "D, C and I of each space.", tables=["per attribute"],
                          figures=["dci bars"])],
        captions={"dci bars": "D, C, I per space"},
    )


def hostile_result() -> AnalysisResult:
    return AnalysisResult(
        metrics={HOSTILE: HOSTILE},
        tables={HOSTILE: pd.DataFrame({HOSTILE: [HOSTILE]}, index=pd.Index([HOSTILE]))},
        figures={HOSTILE: bar_figure()},
        summary=HOSTILE,
        captions={HOSTILE: HOSTILE},
    )
