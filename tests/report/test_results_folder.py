"""ResultWriter and load_result: the folder form of a result, read back whole."""
from __future__ import annotations

import json
import zlib

import numpy as np
import pandas as pd
import pytest

from run_fixtures import bar_figure, fixed_result
from sg3probe.errors import PluginError
from sg3probe.results import AnalysisResult, ResultWriter, figure_png, load_result, load_results
from sg3probe.runs import RunFolderError


def _chunk_types(png: bytes) -> list[bytes]:
    types, offset = [], 8
    while offset < len(png):
        length = int.from_bytes(png[offset:offset + 4], "big")
        types.append(png[offset + 4:offset + 8])
        offset += 12 + length
    return types


def test_round_trip(tmp_path):
    result = fixed_result()
    folder = ResultWriter(tmp_path).write("disentanglement", result)
    assert folder == tmp_path / "results" / "disentanglement"
    assert sorted(p.name for p in (folder / "tables").iterdir()) == ["per_attribute.csv", "plain.csv"]

    stored = load_result(folder)
    loaded = stored.result
    assert stored.analyzer == "disentanglement"
    assert loaded.metrics == {"w": {"D": pytest.approx(0.9), "C": 0.5, "I": 0.7},
                              "n_samples": 1000, "spaces": ["z", "w"]}
    for name, table in result.tables.items():
        pd.testing.assert_frame_equal(loaded.tables[name], table)
    assert list(loaded.figures) == ["dci bars", "importance"]
    assert loaded.figures["dci bars"] == figure_png(result.figures["dci bars"])
    np.testing.assert_array_equal(loaded.arrays["directions"], result.arrays["directions"])
    assert loaded.arrays["directions"].dtype == np.float32
    assert (loaded.summary, loaded.title, loaded.sections, loaded.captions) == (
        result.summary, result.title, result.sections, result.captions)
    assert json.loads((folder / "metrics.json").read_text())["n_samples"] == 1000


def test_a_result_folder_is_as_readable_as_a_folder_made_beside_it(tmp_path):
    folder = ResultWriter(tmp_path).write("disentanglement", fixed_result())
    (tmp_path / "beside").mkdir()
    assert folder.stat().st_mode & 0o777 == (tmp_path / "beside").stat().st_mode & 0o777  # not mkdtemp's 0700


def test_multiindex_columns_round_trip(tmp_path):
    columns = pd.MultiIndex.from_tuples([("w", "D"), ("w", "C"), ("s", "D")])
    table = pd.DataFrame(np.arange(6.0).reshape(2, 3), columns=columns,
                         index=pd.Index(["a", "b"], name="attribute"))
    folder = ResultWriter(tmp_path).write("x", AnalysisResult(tables={"t": table}))
    pd.testing.assert_frame_equal(load_result(folder).result.tables["t"], table)


def test_png_is_deterministic_and_has_no_text_or_time_chunks():
    first, second = figure_png(bar_figure()), figure_png(bar_figure())
    assert first == second
    chunks = _chunk_types(first)
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND"
    assert not {b"tEXt", b"iTXt", b"zTXt", b"tIME"} & set(chunks)
    zlib.crc32(first)  # bytes, not a Figure


def test_rewrite_replaces_the_previous_result_whole(tmp_path):
    writer = ResultWriter(tmp_path)
    writer.write("a", AnalysisResult(arrays={"old": np.zeros(2)}))
    folder = writer.write("a", AnalysisResult(arrays={"new": np.ones(2)}))
    assert [p.name for p in (folder / "arrays").iterdir()] == ["new.npy"]
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["a"]


def test_failed_write_leaves_previous_result_and_no_staging(tmp_path):
    writer = ResultWriter(tmp_path)
    writer.write("a", AnalysisResult(summary="first"))
    with pytest.raises(PluginError, match="holds Python objects"):
        writer.write("a", AnalysisResult(arrays={"bad": np.array([object()])}))
    assert load_result(tmp_path / "results" / "a").result.summary == "first"
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["a"]


@pytest.mark.parametrize("result, message", [
    (AnalysisResult(metrics={"a": {"b": object()}}), r"metrics\['a'\]\['b'\] is a object"),
    (AnalysisResult(metrics={1: 2}), "not a string"),
    (AnalysisResult(tables={"t": [1, 2]}), "not a pandas DataFrame"),
    (AnalysisResult(figures={"f": b"GIF89a"}), "not a PNG"),
])
def test_bad_results_name_the_analyzer_and_item(tmp_path, result, message):
    with pytest.raises(PluginError, match=message) as caught:
        ResultWriter(tmp_path).write("mine", result)
    assert "'mine'" in str(caught.value)


def test_names_that_make_the_same_file_name_stay_apart(tmp_path):
    result = AnalysisResult(arrays={"a/b": np.zeros(1), "a b": np.ones(1), "A_B": np.full(1, 2.0)})
    loaded = load_result(ResultWriter(tmp_path).write("x", result)).result
    assert {k: float(v[0]) for k, v in loaded.arrays.items()} == {"a/b": 0.0, "a b": 1.0, "A_B": 2.0}


def test_load_results_orders_by_run_order_then_name(tmp_path):
    writer = ResultWriter(tmp_path)
    for name in ("b", "c", "a"):
        writer.write(name, AnalysisResult())
    assert [s.analyzer for s in load_results(tmp_path, order=["c"])] == ["c", "a", "b"]


def test_damaged_result_is_a_run_folder_error(tmp_path):
    folder = ResultWriter(tmp_path).write("a", AnalysisResult(arrays={"x": np.zeros(2)}))
    (folder / "arrays" / "x.npy").unlink()
    with pytest.raises(RunFolderError, match="incomplete or damaged"):
        load_result(folder)
