"""Run folders: numbering, run.json through a run's life, the log and config.toml."""
from __future__ import annotations

import json
import os
import threading

import pytest

from sg3probe.config import load_toml
from sg3probe.runs import Run, RunFolderError, allocate_run_dir, read_run, safe_name


def test_numbering_continues_after_the_highest(tmp_path):
    first = allocate_run_dir(tmp_path, "disentanglement", "toyfaces")
    assert first.name == "00000-disentanglement-toyfaces" and first.is_dir()
    (tmp_path / "00007-other-model").mkdir()
    (tmp_path / "notes").mkdir()
    assert allocate_run_dir(tmp_path, "dci", "a/b.pkl").name == "00008-dci-a_b.pkl"


def test_concurrent_allocations_get_distinct_numbers(tmp_path):
    folders, barrier = [], threading.Barrier(8)

    def allocate(i: int) -> None:
        barrier.wait()
        folders.append(allocate_run_dir(tmp_path, f"analysis{i}", "model"))

    threads = [threading.Thread(target=allocate, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    numbers = [int(folder.name[:5]) for folder in folders]
    # Under contention a number may be skipped, never shared.
    assert len(set(numbers)) == 8
    assert sorted(os.listdir(tmp_path)) == sorted(folder.name for folder in folders)


@pytest.mark.parametrize("name, safe", [
    ("toyfaces", "toyfaces"), ("<script>alert(1)</script>", "script_alert_1_script"),
    ("../..", "_"), ("stylegan3-r-ffhq-1024x1024.pkl", "stylegan3-r-ffhq-1024x1024.pkl"),
])
def test_safe_name(name, safe):
    assert safe_name(name) == safe


def test_complete_run_records_provenance_timings_and_config(tmp_path):
    folder = tmp_path / "run"
    with Run(folder, argv=["sg3probe", "run", "x"], config={"seed": 3, "t": {"a": [1]}},
             device="cpu") as run:
        assert read_run(folder)["status"] == "running"
        with run.timing("sample"):
            run.log.info("sampling")
        run.update(seeds="0-9")
    record = read_run(folder)
    assert record["status"] == "complete" and record["ended"] and "error" not in record
    assert record["argv"] == ["sg3probe", "run", "x"] and record["seeds"] == "0-9"
    assert record["device"] == "cpu" and "sample" in record["timings"]
    assert {"python", "sg3probe", "torch", "numpy"} <= set(record["versions"])
    assert load_toml(folder / "config.toml") == {"seed": 3, "t": {"a": [1]}}
    assert "sampling" in (folder / "run.log").read_text()


def test_failed_run_records_the_error_and_reraises(tmp_path):
    folder = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with Run(folder, argv=[]):
            raise RuntimeError("out of memory\nwhile sampling")
    record = json.loads((folder / "run.json").read_text())
    assert record["status"] == "failed"
    assert record["error"] == "RuntimeError: out of memory while sampling"
    assert "run failed" in (folder / "run.log").read_text()


def test_interrupted_run_says_so_and_reraises(tmp_path):
    folder = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        with Run(folder, argv=[]):
            raise KeyboardInterrupt
    record = json.loads((folder / "run.json").read_text())
    assert record["status"] == "interrupted" and "run the same command again" in record["error"]


def test_read_run_of_a_plain_folder_is_a_clear_error(tmp_path):
    with pytest.raises(RunFolderError, match="not a run folder"):
        read_run(tmp_path)
