"""Render a run folder into one self-contained report.html.

Everything comes from the folder (run.json, config.toml, results/*, samples/*.png); the page
has inline CSS, figures as PNG data URIs, no script and no external URL. Every name and text
that plugins contribute goes through jinja2's autoescape.
"""
from __future__ import annotations

import base64
import json
import math
import os
import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

import jinja2
from markupsafe import Markup

from sg3probe.results import PNG_SIGNATURE, Section, StoredResult, load_results
from sg3probe.runs import CONFIG_FILE, RunFolderError, read_run, safe_name

REPORT_FILE = "report.html"
MAX_TABLE_ROWS = 200  # larger tables stay complete in their CSV; the page shows the head


@dataclass(frozen=True)
class _Image:
    name: str
    caption: str
    data_uri: str
    width: int
    height: int


@dataclass(frozen=True)
class _Table:
    name: str
    caption: str
    html: Markup  # rendered by pandas with escape=True
    note: str


@dataclass(frozen=True)
class _Group:
    title: str
    text: str
    tables: list[_Table]
    figures: list[_Image]


@dataclass(frozen=True)
class _AnalyzerView:
    anchor: str
    title: str
    analyzer: str
    summary: str
    metrics: list[tuple[str, str]]
    groups: list[_Group]


def render_report(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Write run_dir/report.html (or `output`) from the run folder alone; return its path."""
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    stored = load_results(run_dir, order=run.get("analyzers"))
    config_path = run_dir / CONFIG_FILE
    config_text = (config_path.read_text(encoding="utf-8") if config_path.is_file()
                   else json.dumps(run.get("config", {}), indent=2))
    ids = _Ids()
    analyzers = [_analyzer_view(s, ids) for s in stored]
    html = _environment().get_template("report.html.j2").render(
        title=_title(run, stored),
        run=run,
        provenance=_provenance(run),
        config_text=config_text,
        analyzers=analyzers,
        samples=_sample_images(run_dir),
        css=_css(),
    )
    output = Path(output) if output is not None else run_dir / REPORT_FILE
    temporary = output.with_name(f".{output.name}.tmp")
    temporary.write_text(html, encoding="utf-8")
    os.replace(temporary, output)
    return output


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("sg3probe.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _css() -> Markup:
    css = resources.files("sg3probe.report").joinpath("style.css").read_text(encoding="utf-8")
    if "</" in css:  # would end the <style> element early
        raise ValueError("style.css must not contain '</'")
    return Markup(css)


class _Ids:
    """HTML ids from names: stable for the same run folder, unique within the page."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def __call__(self, *parts: str) -> str:
        base = "-".join(safe_name(p).lower() for p in parts)
        candidate, number = base, 1
        while candidate in self._taken:
            number += 1
            candidate = f"{base}-{number}"
        self._taken.add(candidate)
        return candidate


def _title(run: Mapping[str, Any], stored: list[StoredResult]) -> str:
    names = [s.analyzer for s in stored] or list(run.get("analyzers", []))
    model = run.get("model") or {}
    model_name = model.get("name") if isinstance(model, Mapping) else str(model)
    title = "sg3probe report"
    if names:
        title += ": " + ", ".join(names)
    if model_name:
        title += f" on {model_name}"
    return title


def _provenance(run: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = [("status", str(run.get("status", "unknown")))]
    if run.get("error"):
        rows.append(("error", str(run["error"])))
    rows.append(("command", " ".join(map(str, run.get("argv", [])))))
    for key in ("started", "ended", "seconds", "device", "seeds", "platform"):
        if run.get(key) is not None:
            rows.append((key, _text(run[key])))
    model = run.get("model")
    if isinstance(model, Mapping):
        rows.extend((f"model {k}", _text(v)) for k, v in model.items() if v is not None)
    elif model is not None:
        rows.append(("model", _text(model)))
    for package, version in (run.get("versions") or {}).items():
        rows.append((f"version of {package}", _text(version)))
    for plugin in run.get("plugins") or []:
        if isinstance(plugin, Mapping):
            rows.append((f"plugin {plugin.get('name')}", _text(plugin.get("version") or "-")))
    for step, seconds in (run.get("timings") or {}).items():
        rows.append((f"time of {step} (s)", _text(seconds)))
    known = {"status", "error", "argv", "started", "ended", "seconds", "device", "seeds",
             "platform", "model", "versions", "plugins", "timings", "config", "analyzers"}
    rows.extend((key, _text(value)) for key, value in run.items() if key not in known)
    return rows


def _text(value: Any) -> str:
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, (Mapping, list)):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 300 else text[:300] + " …"
    return str(value)


def _number(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, str]]:
    for key, value in metrics.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, name)
        else:
            yield name, _text(value)


def _analyzer_view(stored: StoredResult, ids: _Ids) -> _AnalyzerView:
    result = stored.result
    anchor = ids("analyzer", stored.analyzer)

    def table(name: str) -> _Table:
        frame = result.tables[name]
        note = ""
        if len(frame) > MAX_TABLE_ROWS:
            note = (f"the first {MAX_TABLE_ROWS} of {len(frame)} rows; the whole table is in "
                    f"results/{stored.folder.name}/tables/ of the run folder")
            frame = frame.head(MAX_TABLE_ROWS)
        html = frame.to_html(escape=True, table_id=ids("table", stored.analyzer, name),
                             classes="data", border=0, float_format=_number, na_rep="–")
        return _Table(name, result.captions.get(name, ""), Markup(html), note)

    def figure(name: str) -> _Image:
        return _image(name, result.captions.get(name, ""), result.figures[name])

    groups = []
    placed: set[str] = set()
    for section in result.sections:
        tables = [n for n in section.tables if n in result.tables]
        figures = [n for n in section.figures if n in result.figures]
        placed.update(tables, figures)
        groups.append(_Group(section.title, section.text,
                             [table(n) for n in tables], [figure(n) for n in figures]))
    rest = Section(title="Tables and figures" if result.sections else "",
                   tables=[n for n in result.tables if n not in placed],
                   figures=[n for n in result.figures if n not in placed])
    if rest.tables or rest.figures:
        groups.append(_Group(rest.title, "", [table(n) for n in rest.tables],
                             [figure(n) for n in rest.figures]))
    return _AnalyzerView(
        anchor=anchor,
        title=result.title or stored.analyzer,
        analyzer=stored.analyzer,
        summary=result.summary,
        metrics=list(_flatten(result.metrics)),
        groups=groups,
    )


def _image(name: str, caption: str, png: bytes) -> _Image:
    width, height = _png_size(png)
    data = base64.b64encode(png).decode("ascii")
    return _Image(name, caption, f"data:image/png;base64,{data}", width, height)


def _png_size(png: bytes) -> tuple[int, int]:
    # The IHDR chunk comes first: 8-byte signature, 4-byte length, b"IHDR", width, height.
    if not png.startswith(PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    return struct.unpack(">II", png[16:24])


def _sample_images(run_dir: Path) -> list[_Image]:
    """The PNGs directly in run_dir/samples/ (sample grids), by file name."""
    folder = run_dir / "samples"
    images = []
    for path in sorted(folder.glob("*.png")) if folder.is_dir() else []:
        try:
            images.append(_image(path.stem, "", path.read_bytes()))
        except ValueError:
            raise RunFolderError(f"{path} is not a PNG image; remove it or sample again") from None
    return images
