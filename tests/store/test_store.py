"""Tests of the sample store: round trip, resume, crashes, corruption, bad input, seeds, mmap."""
from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import sg3probe
from sg3probe.errors import ConfigError, Sg3probeError
from sg3probe.store import (
    ArraySpec,
    SampleStore,
    StoreError,
    fill,
    format_seeds,
    parse_seeds,
    run_shard,
)
from sg3probe.store.seeds import MAX_SEED

from ._store_synthetic import ARRAYS, METADATA, SEEDS, SHARD_SIZE, compute

TESTS_DIR = Path(__file__).parent
REPO_ROOT = Path(sg3probe.__file__).resolve().parents[1]
ALL_SEEDS = list(range(100)) + list(range(1000, 1050))


def new_store(path, **changes):
    settings = dict(arrays=ARRAYS, seeds=SEEDS, shard_size=SHARD_SIZE, metadata=METADATA)
    settings.update(changes)
    return SampleStore.create(path, **settings)


class Recorder:
    """compute() that remembers the first seed of every shard it was asked for."""

    def __init__(self):
        self.first_seeds = []

    def __call__(self, seeds):
        self.first_seeds.append(seeds[0])
        return compute(seeds)


def store_bytes(path: Path) -> dict[str, bytes]:
    """Every file that makes up the store's content, by relative path."""
    files = {"manifest.json": (path / "manifest.json").read_bytes()}
    for file in sorted((path / "shards").rglob("*.npy")):
        files[str(file.relative_to(path))] = file.read_bytes()
    return files


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A store filled in one uninterrupted run: what every other way of filling must equal."""
    path = tmp_path_factory.mktemp("reference") / "store"
    fill(new_store(path), compute, progress=False)
    return path


# ---- round trip and reading ------------------------------------------------------------------


def test_round_trip_values_dtypes_and_layout(reference):
    store = SampleStore.open(reference)
    expected = compute(ALL_SEEDS)
    assert len(store) == 150 and store.num_shards == 19 and store.is_complete
    np.testing.assert_array_equal(store.seeds, ALL_SEEDS)
    assert store.metadata == METADATA
    assert store.arrays == ARRAYS
    for name, spec in ARRAYS.items():
        data = store.read(name)
        assert data.dtype == spec.dtype and data.shape == (150, *spec.shape)
        np.testing.assert_array_equal(data, expected[name].astype(spec.dtype))
    # shard folders are named by first and last seed; one spans the gap between the ranges
    names = sorted(p.name for p in (reference / "shards").iterdir())
    assert "96-1003" in names and "1044-1049" in names and len(names) == 19


def test_read_rows_slices_and_batches(reference):
    store = SampleStore.open(reference)
    full = store.read("ws")
    rows = [149, 0, 7, 8, 96, 97, -1, 8]  # unsorted, across shards, repeated, negative
    np.testing.assert_array_equal(store.read("ws", rows), full[rows])
    view = store.array("ws")
    np.testing.assert_array_equal(view[5:140:3], full[5:140:3])
    np.testing.assert_array_equal(view[3:29], full[3:29])
    np.testing.assert_array_equal(view[12], full[12])
    np.testing.assert_array_equal(view[10:20, 1, 2:], full[10:20, 1, 2:])
    np.testing.assert_array_equal(np.asarray(view), full)
    mask = np.zeros(150, dtype=bool)
    mask[[3, 90, 120]] = True
    np.testing.assert_array_equal(store.read("ws", mask), full[mask])
    with pytest.raises(IndexError):
        view[150]

    batches = list(store.iter_batches(["ws", "label"], batch_size=11))
    assert [len(b) for b in batches] == [11] * 13 + [7]
    np.testing.assert_array_equal(np.concatenate([b["ws"] for b in batches]), full)
    np.testing.assert_array_equal(np.concatenate([b.seeds for b in batches]), ALL_SEEDS)
    assert batches[3].start == 33 and set(batches[0].arrays) == {"ws", "label"}


def test_reading_goes_through_memory_maps_and_keeps_few_open(reference):
    store = SampleStore.open(reference)
    view = store.array("ws")
    shard = view.shard(3)
    assert isinstance(shard, np.memmap) and shard.mode == "r" and not shard.flags.writeable
    assert shard.shape == (8, 3, 4)
    assert not isinstance(store.read("ws", [1, 2]), np.memmap)
    assert not store.seeds.flags.writeable
    maps = Path("/proc/self/maps")
    if maps.exists():
        for batch in store.iter_batches(batch_size=5):
            pass
        del view, shard, batch
        mapped = {line.split()[-1] for line in maps.read_text().splitlines() if str(reference) in line}
        assert 0 < len(mapped) <= 8, "all shards stay mapped: reading would not be flat in memory"


def test_read_single_row_and_tuple_of_rows(reference):
    store = SampleStore.open(reference)
    full = store.read("styles")
    np.testing.assert_array_equal(store.read("styles", 97), full[97])
    np.testing.assert_array_equal(store.read("styles", (3, 1)), full[[3, 1]])


def test_store_pickles_for_worker_processes(reference):
    store = SampleStore.open(reference)
    store.read("ws", [0, 100])  # opens memory maps, which must not travel
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone.read("styles"), store.read("styles"))


# ---- resuming and crashes ---------------------------------------------------------------------


def test_partial_fill_resumes_without_recomputing(tmp_path, reference):
    store = new_store(tmp_path / "store")
    first = fill(store, compute, shard_ids=[0, 5, 18], progress=False)
    assert first.shards_written == 3 and first.samples_written == 8 + 8 + 6
    assert len(store.missing_shards()) == 16
    with pytest.raises(StoreError, match="16 of 19 shards missing"):
        store.read("ws")

    resumed = new_store(tmp_path / "store")  # same settings: resumes
    recorder = Recorder()
    result = fill(resumed, recorder, progress=False)
    assert result.shards_written == 16 and result.shards_already_complete == 3
    assert {0, 40, 1044} & set(recorder.first_seeds) == set()  # first seeds of shards 0, 5, 18
    assert run_shard(resumed, 4, recorder) is False  # idempotent: a complete shard is left alone
    assert store_bytes(tmp_path / "store") == store_bytes(reference)


CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from _store_synthetic import ARRAYS, METADATA, SEEDS, SHARD_SIZE, compute
    from sg3probe.store import SampleStore, fill

    store = SampleStore.create(sys.argv[1], ARRAYS, SEEDS, SHARD_SIZE, METADATA)
    delay = float(sys.argv[3])

    def slow(seeds):
        print("computing", seeds[0], flush=True)
        time.sleep(delay)
        return compute(seeds)

    fill(store, slow, progress=False)
    print("finished", flush=True)
""")


def run_child(path: Path, delay: float) -> subprocess.Popen:
    paths = [str(REPO_ROOT), os.environ.get("PYTHONPATH")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, paths)))
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(TESTS_DIR), str(delay)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX only")
def test_kill_9_partway_then_resume_is_byte_identical(tmp_path, reference):
    path = tmp_path / "store"
    child = run_child(path, delay=0.1)
    started = 0
    for line in child.stdout:
        started += line.startswith("computing")
        if started == 7:  # six shards written, the seventh being computed
            os.kill(child.pid, signal.SIGKILL)
            break
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL, child.stderr.read()

    store = SampleStore.open(path)
    missing = store.missing_shards()
    assert 0 < len(missing) < store.num_shards - 3
    recorder = Recorder()
    fill(new_store(path), recorder, progress=False)
    assert sorted(recorder.first_seeds) == sorted(int(store.shard_seeds(i)[0]) for i in missing)
    assert store_bytes(path) == store_bytes(reference)


def _fill_every_other_shard(path: str, rank: int) -> None:
    store = SampleStore.open(path)
    fill(store, compute, shard_ids=range(rank, store.num_shards, 2), progress=False)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork (fresh interpreters would import torch)")
def test_two_processes_filling_one_store_at_once(tmp_path, reference):
    # Two ranks write disjoint shards at once: the manifest lock must keep both ranks' completions.
    path = tmp_path / "store"
    new_store(path)
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_fill_every_other_shard, args=(str(path), rank)) for rank in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    store = SampleStore.open(path)
    assert store.missing_shards() == [] and store.verify().ok
    assert store_bytes(path) == store_bytes(reference)


def test_interrupted_rename_and_staging_leftovers_are_cleaned_and_recomputed(tmp_path, reference):
    path = tmp_path / "store"
    store = new_store(path)
    fill(store, compute, shard_ids=[0], progress=False)
    # a crash after the rename but before the manifest update: a folder nobody vouches for
    shutil.copytree(reference / "shards" / "8-15", path / "shards" / "8-15")
    (path / "shards" / "8-15" / "ws.npy").write_bytes(b"garbage")
    # a crash while staging: a folder in .tmp/ named after a process that no longer runs
    command = [sys.executable, "-c", "import os; print(os.getpid())"]
    dead = subprocess.run(command, capture_output=True, text=True, check=True)
    # (its pid is free now; were it reused within the test, the staging folder would stay)
    host = socket.gethostname().replace(".", "_")
    leftover = path / ".tmp" / f"16-23.{host}.{dead.stdout.strip()}.abcd1234"
    leftover.mkdir()
    (leftover / "ws.npy").write_bytes(b"half")

    recorder = Recorder()
    fill(store, recorder, progress=False)
    assert 8 in recorder.first_seeds and 0 not in recorder.first_seeds
    assert not leftover.exists() and list((path / ".tmp").iterdir()) == []
    assert store_bytes(path) == store_bytes(reference)


# ---- corruption --------------------------------------------------------------------------------


def flip_byte(file: Path) -> None:
    data = bytearray(file.read_bytes())
    data[-3] ^= 0xFF  # in the array data, after the header
    file.write_bytes(bytes(data))


def truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[:-10])


CORRUPTIONS = {
    "flipped byte": lambda folder: flip_byte(folder / "ws.npy"),
    "truncated file": lambda folder: truncate(folder / "styles.npy"),
    "deleted file": lambda folder: (folder / "label.npy").unlink(),
    "deleted folder": lambda folder: shutil.rmtree(folder),
    "wrong header": lambda folder: np.save(folder / "score.npy", np.zeros(8, dtype=np.int32)),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_shard_is_detected_by_verify_and_recomputed_by_fill(tmp_path, reference, corruption):
    path = tmp_path / "store"
    shutil.copytree(reference, path)
    CORRUPTIONS[corruption](path / "shards" / "16-23")
    store = SampleStore.open(path)

    report = store.verify()
    assert not report.ok and list(report.corrupt) == ["16-23"] and report.missing_shards == [2]
    assert store.missing_shards() == [2]  # marked missing on disk, not just in memory
    with pytest.raises(StoreError, match="1 of 19 shards missing"):
        store.array("ws")
    recorder = Recorder()
    fill(store, recorder, progress=False)
    assert recorder.first_seeds == [16]
    assert store_bytes(path) == store_bytes(reference)


def test_fill_alone_catches_damaged_files_and_checksums_on_request(tmp_path, reference):
    path = tmp_path / "store"
    shutil.copytree(reference, path)
    truncate(path / "shards" / "0-7" / "ws.npy")
    flip_byte(path / "shards" / "8-15" / "ws.npy")
    recorder = Recorder()
    result = fill(SampleStore.open(path), recorder, progress=False)
    assert recorder.first_seeds == [0] and list(result.corrupt) == ["0-7"]  # quick check: sizes, headers
    result = fill(SampleStore.open(path), recorder, progress=False, verify_checksums=True)
    assert recorder.first_seeds == [0, 8] and list(result.corrupt) == ["8-15"]
    assert store_bytes(path) == store_bytes(reference)


def test_reading_a_damaged_complete_store_is_a_clear_error(tmp_path, reference):
    path = tmp_path / "store"
    shutil.copytree(reference, path)
    (path / "shards" / "24-31" / "ws.npy").unlink()
    with pytest.raises(StoreError, match=r"shard 24-31: ws\.npy cannot be read.*verify"):
        SampleStore.open(path).read("ws")


# ---- opening: compatible, incompatible, foreign ------------------------------------------------


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"metadata": {**METADATA, "sampling": {"truncation_psi": 0.5}}},
         "metadata sampling.truncation_psi: 0.7 on disk vs 0.5 requested"),
        ({"metadata": {**METADATA, "extra": 1}}, "metadata extra: (absent) on disk vs 1 requested"),
        ({"shard_size": 16}, "shard size: 8 on disk vs 16 requested"),
        ({"seeds": "0-99"}, "seeds: 0-99,1000-1049 (150 seeds) on disk vs 0-99 (100 seeds) requested"),
        ({"arrays": {**ARRAYS, "styles": ArraySpec(5, "float32")}},
         "array 'styles': float16[5] on disk vs float32[5] requested"),
        ({"arrays": {"ws": ARRAYS["ws"]}}, "array 'label': uint8[] on disk vs (absent) requested"),
    ],
)
def test_incompatible_reopen_is_a_one_line_error(tmp_path, change, expected):
    fill(new_store(tmp_path / "store"), compute, shard_ids=[0], progress=False)
    with pytest.raises(StoreError) as error:
        new_store(tmp_path / "store", **change)
    message = str(error.value)
    assert expected in message and "delete this one" in message and "\n" not in message
    assert isinstance(error.value, Sg3probeError)


def test_compatible_reopen_resumes_and_overwrite_starts_again(tmp_path):
    path = tmp_path / "store"
    fill(new_store(path), compute, shard_ids=[0, 1], progress=False)
    fill(new_store(path / "crop", metadata={"crop": [0, 0, 64, 64]}), compute, shard_ids=[0], progress=False)
    # same settings written differently (tuple vs list, seed list vs text) are the same store
    assert new_store(path / "crop", metadata={"crop": (0, 0, 64, 64)}).missing_shards() == list(range(1, 19))
    assert new_store(path, seeds=ALL_SEEDS).missing_shards() == list(range(2, 19))
    fresh = new_store(path, shard_size=50, overwrite=True)
    assert fresh.num_shards == 3 and fresh.missing_shards() == [0, 1, 2]
    assert not (path / "shards" / "0-7").exists()


def test_foreign_folder_is_never_used_or_deleted(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"precious")
    for overwrite in (False, True):
        with pytest.raises(StoreError, match="not a sample store"):
            new_store(folder, overwrite=overwrite)
    assert (folder / "holiday.jpg").read_bytes() == b"precious"
    with pytest.raises(StoreError, match="no sample store"):
        SampleStore.open(tmp_path / "nowhere")


def test_a_store_replaced_while_open_is_not_written_into(tmp_path):
    stale = new_store(tmp_path / "store")
    new_store(tmp_path / "store", shard_size=50, overwrite=True)
    with pytest.raises(StoreError, match="replaced by one with other settings"):
        stale.write_shard(0, good_shard())


def test_progress_stays_off_when_stderr_is_not_a_terminal(tmp_path, capfd):
    fill(new_store(tmp_path / "store"), compute, shard_ids=[0, 1], progress=True)
    assert capfd.readouterr().err == ""


# ---- bad input when writing ----------------------------------------------------------------------


def good_shard():
    return compute(list(range(8)))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda a: a["ws"].__setitem__((0, 0, 0), np.nan), "'ws' has 1 non-finite values"),
        (lambda a: a["score"].__setitem__(3, np.inf), "'score' has 1 non-finite values"),
        (lambda a: a["styles"].__setitem__((1, 1), 1e5), "'styles': 1 values overflow float16"),
        (lambda a: a.__setitem__("ws", a["ws"][:, :2]), r"'ws' has shape \[8, 2, 4\], the store expects"),
        (lambda a: a.__setitem__("ws", a["ws"][:7]), r"expects \[8, 3, 4\]"),
        (lambda a: a.pop("label"), "missing label"),
        (lambda a: a.__setitem__("zs", a["ws"]), "unexpected zs"),
        (lambda a: a.__setitem__("label", a["score"]), "'label' has dtype float64; the store keeps uint8"),
        (lambda a: a["label"].__setitem__(0, 300), "outside what uint8 holds"),
    ],
)
def test_bad_arrays_are_refused_and_nothing_is_written(tmp_path, damage, message):
    store = new_store(tmp_path / "store")
    arrays = good_shard()
    damage(arrays)
    with pytest.raises(StoreError, match=message):
        store.write_shard(0, arrays)
    assert store.missing_shards() == list(range(19))
    assert list((tmp_path / "store" / "shards").iterdir()) == []


def test_write_shard_casts_any_memory_layout_to_the_same_bytes(tmp_path, reference):
    store = new_store(tmp_path / "store")
    arrays = good_shard()
    arrays["ws"] = np.asfortranarray(arrays["ws"])
    store.write_shard(0, arrays)
    written = (tmp_path / "store" / "shards" / "0-7" / "ws.npy").read_bytes()
    assert written == (reference / "shards" / "0-7" / "ws.npy").read_bytes()


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"shard_size": 0}, "shard_size must be a positive integer"),
        ({"seeds": [3, 1]}, "seed 1 comes after 3"),
        ({"seeds": "5-3"}, "goes downwards"),
        ({"metadata": {"path": Path("x")}}, "metadata must be JSON"),
        ({"metadata": {"psi": float("nan")}}, "metadata must be JSON"),
        ({"arrays": {"a/b": ARRAYS["ws"]}}, "cannot be a file name"),
        ({"arrays": {"x": ArraySpec((4,), "float32"), "y": ((0,), "float32")}}, "positive integers"),
        ({"arrays": {}}, "at least one array"),
    ],
)
def test_bad_settings_are_clear_errors(tmp_path, settings, message):
    with pytest.raises(Sg3probeError, match=message):
        new_store(tmp_path / "store", **settings)


def test_array_spec_refuses_object_dtypes_and_bad_shard_ids(tmp_path):
    with pytest.raises(StoreError, match="not object"):
        ArraySpec((2,), object)
    with pytest.raises(StoreError, match=r"shard id must be an integer in 0\.\.18"):
        new_store(tmp_path / "store").write_shard(19, good_shard())


# ---- seeds --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seeds",
    [
        ("0-4", [0, 1, 2, 3, 4]),
        ("1,5,7-9", [1, 5, 7, 8, 9]),
        (" 7 - 9 , 1 ", [1, 7, 8, 9]),
        ("42", [42]),
        (f"{MAX_SEED}", [MAX_SEED]),
    ],
)
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no seeds given"),
        ("   ", "no seeds given"),
        ("5-3", "the range 5-3 goes downwards; write it as 3-5"),
        ("a", "'a' is not a seed or a range"),
        ("1,,2", "an empty item is not a seed"),
        ("1-", "'1-' is not a seed or a range"),
        ("-5", "'-5' is not a seed or a range of non-negative integers"),
        ("1.5", "'1.5' is not a seed"),
        ("1-5,3", "seed 3 is given twice"),
        (f"0-{MAX_SEED + 1}", f"seed {MAX_SEED + 1} is too large"),
    ],
)
def test_parse_seeds_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_seeds(text)


def test_format_seeds_round_trips():
    assert format_seeds([1, 5, 7, 8, 9]) == "1,5,7-9"
    assert parse_seeds(format_seeds(ALL_SEEDS)) == ALL_SEEDS
    assert format_seeds(list(range(0, 20, 2)), limit=3) == "0,2,...,18"


def test_manifest_is_readable_json(reference):
    manifest = json.loads((reference / "manifest.json").read_text())
    assert manifest["seeds"] == [[0, 99], [1000, 1049]]
    assert manifest["arrays"]["styles"] == {"shape": [5], "dtype": "float16"}
    shard = manifest["shards"][12]
    assert (shard["name"], shard["start"], shard["stop"], shard["complete"]) == ("96-1003", 96, 104, True)
    assert set(shard["files"]) == set(ARRAYS) and len(shard["files"]["ws"]["sha256"]) == 64
