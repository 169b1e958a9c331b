"""Structured analysis results, and their folder form: JSON, CSV, PNG, NPY and Markdown.

results/<analyzer>/
    result.json      name, title, summary, ordering, captions and the file of every item
    metrics.json     the nested metrics dict
    summary.md       the one-paragraph reading
    tables/*.csv     pandas tables
    figures/*.png    figures, deterministic (no date or version metadata)
    arrays/*.npy     arrays such as directions

`load_result` reads a folder back (figures as PNG bytes), so a report can be rebuilt from it.
"""
from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sg3probe.errors import PluginError
from sg3probe.runs import RunFolderError, safe_name

RESULT_FORMAT = 1
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURE_DPI = 100


@dataclass
class Section:
    """A titled group of a result's tables and figures, shown in this order in the report."""

    title: str
    text: str = ""
    tables: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)


@dataclass
class AnalysisResult:
    """What an analyzer returns. Items keep insertion order; `sections` may group them.

    Tables and figures that no section names are shown after the sections, in insertion order.
    Figures are matplotlib Figures built with ``matplotlib.figure.Figure()`` (never pyplot), or
    PNG bytes (what `load_result` gives back).
    """

    metrics: dict[str, Any] = field(default_factory=dict)  # nested, JSON-able
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Figure | bytes] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    summary: str = ""  # a paragraph: what the numbers say
    title: str = ""  # the report heading; the analyzer name when empty
    sections: list[Section] = field(default_factory=list)
    captions: dict[str, str] = field(default_factory=dict)  # table or figure name -> caption


@dataclass(frozen=True)
class StoredResult:
    """A result read back from its folder."""

    analyzer: str
    folder: Path
    result: AnalysisResult


def figure_png(figure: Figure | bytes, dpi: int = FIGURE_DPI) -> bytes:
    """PNG bytes of a figure; the same figure always gives the same bytes (no dates, no version)."""
    if isinstance(figure, bytes):
        if not figure.startswith(PNG_SIGNATURE):
            raise ValueError("figure bytes are not a PNG image")
        return figure
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def jsonable(value: Any, where: str = "metrics") -> Any:
    """`value` with numpy scalars and arrays turned into Python ones; TypeError if not JSON-able."""
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a key {key!r} that is not a string")
            out[key] = jsonable(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist(), where)
    if isinstance(value, np.generic):
        return jsonable(value.item(), where)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{where} is a {type(value).__name__}, which JSON cannot hold; "
                    "use numbers, strings, lists or dicts")


class ResultWriter:
    """Writes analyzers' results into a run folder's results/ (one folder per analyzer)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.results_dir = Path(run_dir) / "results"

    def folder(self, analyzer: str) -> Path:
        """Where the result of `analyzer` goes (its name made safe as a file name)."""
        return self.results_dir / safe_name(analyzer)

    def write(self, analyzer: str, result: AnalysisResult) -> Path:
        """Write `result` atomically: a new folder replaces any previous one only when complete."""
        target = self.folder(analyzer)
        try:
            metrics = jsonable(result.metrics)
        except TypeError as error:
            raise PluginError(f"analyzer {analyzer!r} returned metrics that cannot be saved: "
                              f"{error}") from None
        self.results_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=self.results_dir))
        staging.chmod(_folder_mode())  # mkdtemp makes it private (0700); results are as readable as the run folder
        try:
            manifest = self._write_items(staging, analyzer, result)
            manifest["metrics"] = "metrics.json"
            _write_json(staging / "metrics.json", metrics)
            (staging / "summary.md").write_text(result.summary.strip() + "\n", encoding="utf-8")
            _write_json(staging / "result.json", manifest)
            if target.exists():
                old = target.with_name(f".{target.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(target, old)
                os.replace(staging, target)
                shutil.rmtree(old)
            else:
                os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def _write_items(self, folder: Path, analyzer: str, result: AnalysisResult) -> dict[str, Any]:
        files = _unique_files(result)
        for kind in ("tables", "figures", "arrays"):
            (folder / kind).mkdir()
        tables = []
        for name, frame in result.tables.items():
            if not isinstance(frame, pd.DataFrame):
                raise PluginError(f"analyzer {analyzer!r}: table {name!r} is a "
                                  f"{type(frame).__name__}, not a pandas DataFrame")
            plain_index = isinstance(frame.index, pd.RangeIndex) and frame.index.name is None
            frame.to_csv(folder / files["tables", name], index=not plain_index)
            tables.append({"name": name, "file": files["tables", name],
                           "index_columns": 0 if plain_index else frame.index.nlevels,
                           "header_rows": frame.columns.nlevels})
        figures = []
        for name, figure in result.figures.items():
            try:
                png = figure_png(figure)
            except (ValueError, AttributeError) as error:
                raise PluginError(f"analyzer {analyzer!r}: figure {name!r} cannot be saved as "
                                  f"PNG: {error}") from None
            (folder / files["figures", name]).write_bytes(png)
            figures.append({"name": name, "file": files["figures", name]})
        arrays = []
        for name, array in result.arrays.items():
            array = np.asarray(array)
            if array.dtype == object:
                raise PluginError(f"analyzer {analyzer!r}: array {name!r} holds Python objects; "
                                  "arrays must be numeric")
            np.save(folder / files["arrays", name], array, allow_pickle=False)
            arrays.append({"name": name, "file": files["arrays", name]})
        return {
            "format": RESULT_FORMAT,
            "analyzer": analyzer,
            "title": result.title,
            "summary": "summary.md",
            "tables": tables,
            "figures": figures,
            "arrays": arrays,
            "sections": [asdict(section) for section in result.sections],
            "captions": dict(result.captions),
        }


def _unique_files(result: AnalysisResult) -> dict[tuple[str, str], str]:
    """A file name for every item: safe, and distinct even where two names make the same one."""
    files = {}
    for kind, items, suffix in (("tables", result.tables, ".csv"),
                                ("figures", result.figures, ".png"),
                                ("arrays", result.arrays, ".npy")):
        taken: set[str] = set()
        for name in items:
            stem = safe_name(name)
            candidate, number = stem, 1
            while candidate.lower() in taken:  # case-insensitive file systems
                number += 1
                candidate = f"{stem}-{number}"
            taken.add(candidate.lower())
            files[kind, name] = f"{kind}/{candidate}{suffix}"
    return files


def _folder_mode() -> int:
    """The mode os.mkdir gives a new folder under the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_result(folder: str | Path) -> StoredResult:
    """Read a result folder written by ResultWriter; figures come back as PNG bytes."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / "result.json").read_text(encoding="utf-8"))
        metrics = json.loads((folder / manifest["metrics"]).read_text(encoding="utf-8"))
        summary = (folder / manifest["summary"]).read_text(encoding="utf-8").strip()
        tables = {t["name"]: _read_table(folder / t["file"], t) for t in manifest["tables"]}
        figures = {f["name"]: (folder / f["file"]).read_bytes() for f in manifest["figures"]}
        arrays = {a["name"]: np.load(folder / a["file"], allow_pickle=False)
                  for a in manifest["arrays"]}
    except (OSError, KeyError, ValueError) as error:
        raise RunFolderError(f"result folder {str(folder)!r} is incomplete or damaged "
                             f"({type(error).__name__}: {error}); run the analysis again") from None
    result = AnalysisResult(
        metrics=metrics, tables=tables, figures=figures, arrays=arrays, summary=summary,
        title=manifest.get("title", ""),
        sections=[Section(**section) for section in manifest.get("sections", [])],
        captions=manifest.get("captions", {}),
    )
    return StoredResult(analyzer=manifest["analyzer"], folder=folder, result=result)


def _read_table(path: Path, entry: Mapping[str, Any]) -> pd.DataFrame:
    index_columns = entry.get("index_columns", 0)
    header_rows = entry.get("header_rows", 1)
    return pd.read_csv(
        path,
        index_col=list(range(index_columns)) if index_columns else None,
        header=list(range(header_rows)) if header_rows > 1 else 0,
    )


def load_results(run_dir: str | Path, order: list[str] | None = None) -> list[StoredResult]:
    """Every result of a run folder: those named in `order` first, in that order, then by name."""
    results_dir = Path(run_dir) / "results"
    if not results_dir.is_dir():
        return []
    stored = [load_result(folder) for folder in sorted(results_dir.iterdir())
              if folder.is_dir() and not folder.name.startswith(".")]
    rank = {name: i for i, name in enumerate(order or [])}
    return sorted(stored, key=lambda s: (rank.get(s.analyzer, math.inf), s.analyzer))
