"""A run folder with fixed results, as `sg3probe run` would leave it."""
from __future__ import annotations

from pathlib import Path

import pytest

from run_fixtures import HOSTILE, fixed_result, hostile_result, sample_grid_png
from sg3probe.results import ResultWriter
from sg3probe.runs import Run


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "00000-disentanglement-toyfaces"
    with Run(folder, argv=["sg3probe", "run", "disentanglement"],
             config={"model": "toyfaces", "seeds": "0-99", "disentanglement": {"n_train": 10}},
             analyzers=["disentanglement", HOSTILE], device="cpu",
             model={"name": "toyfaces", "path": "/models/toyfaces.pt", "sha256": "ab" * 32},
             plugins=[{"name": "sg3probe-disentanglement", "version": "0.1.0"}]) as run:
        with run.timing("analyze"):
            writer = ResultWriter(folder)
            writer.write("disentanglement", fixed_result())
            writer.write(HOSTILE, hostile_result())
        (folder / "samples").mkdir()
        (folder / "samples" / "grid-aligned.png").write_bytes(sample_grid_png())
    return folder
