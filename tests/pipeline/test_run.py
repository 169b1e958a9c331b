"""`sg3probe run`: the whole pipeline on a conformance network, the outside plugin, and bad input."""
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sg3probe.cli.main import cli
from sg3probe.sampling.sampler import SamplingSpec, Sampler, StoreSampleSet, sample_to_store
from sg3probe.scorer import Attribute

SCORER_PLUGIN = '''
import numpy as np
import sg3probe
from sg3probe.scorer import Attribute, Scorer

class Halves(Scorer):
    name = "halves"
    attributes = (Attribute("bright", "binary"), Attribute("top_minus_bottom", "continuous"))
    def __init__(self, device="cpu"):
        pass
    def score(self, images):
        x = images.detach().float().cpu().numpy()
        return {"bright": x.mean(axis=(1, 2, 3)) * 20,
                "top_minus_bottom": x[:, :, :32].mean(axis=(1, 2, 3)) - x[:, :, 32:].mean(axis=(1, 2, 3))}

@sg3probe.hookimpl
def register_scorers(register):
    register(Halves)
'''


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def one_thread(monkeypatch):
    """SG3PROBE_THREADS=1 for the test, and torch's thread count as it was afterwards (a run sets it)."""
    import torch

    monkeypatch.setenv("SG3PROBE_THREADS", "1")
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_disentanglement_run_writes_results_and_report(tmp_path, t64, one_thread):
    from sg3probe.config import load_toml

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "halves_scorer.py").write_text(SCORER_PLUGIN)
    out = tmp_path / "run"
    command = ("run", "disentanglement", "--model", t64.pickle_path, "--scorer", "halves", "--seeds", "0-159",
               "--plugins-dir", plugins, "--out", out, "--set", "disentanglement.per_layer=false",
               "--set", "grid_size=4")
    result = _invoke(*command)
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["model"]["aligned"]["sha256"] == t64.meta["pickle"]["sha256"]
    # The thread count the run used, though it came from the environment: config.toml reproduces the run.
    assert run["threads"] == 1 and load_toml(out / "config.toml")["threads"] == 1
    assert "versions" in run and run["seeds"] == "0-159"
    spaces = (out / "results" / "disentanglement" / "tables").glob("spaces*.csv")
    table = next(spaces).read_text()
    for space in ("Z", "W", "W+", "S", "S+input"):
        assert f",{space}," in table
    html = (out / "report.html").read_text()
    assert "D, C, I by space" in html and "<script" not in html
    # The config written beside it reproduces the run.
    assert "seeds = \"0-159\"" in (out / "config.toml").read_text()
    # Reruns the folder refuses leave its record as it was: other seeds, another analyzer.
    record = {name: (out / name).read_bytes() for name in ("run.json", "config.toml")}
    for args, message in [(["disentanglement", "--seeds", "0-99"], "other settings"),
                          (["interfacegan", "--seeds", "0-159"], "holds a run of disentanglement")]:
        refused = _invoke("run", *args, "--model", t64.pickle_path, "--scorer", "halves", "--plugins-dir", plugins,
                          "--out", out)
        assert refused.exit_code != 0 and message in refused.output, refused.output
        assert {name: (out / name).read_bytes() for name in record} == record
    # The same run again takes each scored view from the work folder (as after an interrupt), with the same tables.
    tables = {path.name: path.read_bytes() for path in (out / "results" / "disentanglement" / "tables").iterdir()}
    again = _invoke(*command)
    assert again.exit_code == 0, again.output
    assert "disentanglement: aligned taken from" in (out / "run.log").read_text()
    assert {path.name: path.read_bytes() for path in (out / "results" / "disentanglement" / "tables").iterdir()} == tables


def test_example_outside_plugin_is_installed_and_runs(tmp_path, t64):
    if importlib.util.find_spec("sg3probe_example") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install examples/sg3probe-example-plugin (make install does)")
        pytest.skip("the example plugin is not installed here; `make install` installs it")
    listing = _invoke("plugins")
    assert "example" in listing.output and "register_analyzers" in listing.output
    out = tmp_path / "run"
    result = _invoke("run", "w-spread", "--model", t64.pickle_path, "--seeds", "0-63", "--out", out)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "results" / "w-spread" / "metrics.json").read_text())
    assert metrics["samples"] == 64 and 1 < metrics["effective_dimensionality"] < 64
    # Rerun with other analyzer settings: the samples are reused and the user is told the results change.
    again = _invoke("run", "w-spread", "--model", t64.pickle_path, "--seeds", "0-63", "--out", out,
                    "--set", "w_spread.components=3")
    assert again.exit_code == 0 and "holds results made with other [w_spread] settings" in again.output
    assert len((out / "results" / "w-spread" / "tables" / "components.csv").read_text().splitlines()) == 4


@pytest.mark.parametrize("args,message", [
    (["run", "nope"], "unknown analyzer 'nope'"),
    (["run", "disentanglement", "--set", "bogus=1"], "unknown config key 'bogus'"),
    (["run", "disentanglement", "--model", "/no/such/model.pkl"], "neither a file nor a zoo name"),
    (["run", "disentanglement", "--model", Path(__file__)], "not a pickle"),
    (["run", "disentanglement", "--device", "bogus"], "not a torch device"),
    (["run", "disentanglement", "--seeds", "0-9", "--set", "sampling.seeds='0-4'"], "both give sampling.seeds"),
    (["sample", "--pseudo-align", "--out", "unused"], "--pseudo-align needs --scorer"),
    (["sample", "--scorer", "toyclip", "--out", "unused"], "scorer 'toyclip' gives no attributes"),
])
def test_bad_input_gives_one_line_and_non_zero_exit(args, message):
    result = _invoke(*args)
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output


@pytest.mark.parametrize("setting,message", [
    ("sampling.seeds='abc'", "seeds 'abc': 'abc' is not a seed"),
    ("sampling.transforms='bogus'", "config [sampling]: transforms must be 'identity' or 'random', got 'bogus'"),
    ("sampling.batch_size=0", "batch_size must be >= 1"),
    ("sampling.s_dtype='int8'", "s_dtype must be 'float16' or 'float32'"),
    ("sampling.max_angle=nan", "max_angle must be a finite number >= 0"),
])
def test_bad_sampling_settings_fail_before_a_run_folder_is_made(tmp_path, monkeypatch, setting, message):
    monkeypatch.chdir(tmp_path)
    result = _invoke("run", "disentanglement", "--set", setting)
    assert result.exit_code != 0 and message in result.output, result.output
    assert not (tmp_path / "reports").exists()


def test_out_must_be_new_empty_or_a_run_folder(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.html").write_text("<p>my notes</p>")
    result = _invoke("run", "disentanglement", "--out", mine)
    assert result.exit_code != 0 and "is not empty and holds no run.json" in result.output, result.output
    assert (mine / "report.html").read_text() == "<p>my notes</p>" and len(list(mine.iterdir())) == 1
    afile = tmp_path / "afile"
    afile.write_text("")
    result = _invoke("run", "disentanglement", "--out", afile)
    assert result.exit_code != 0 and "is a file, not a folder" in result.output, result.output


def test_an_unaligned_model_for_an_aligned_only_analyzer_is_refused(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "aligned_only.py").write_text(
        "import sg3probe\nfrom sg3probe.analyzer import Analyzer, Needs\n\n"
        "class AlignedOnly(Analyzer):\n    name = 'aligned-only'\n    needs = Needs(spaces={'w'})\n\n"
        "@sg3probe.hookimpl\ndef register_analyzers(register):\n    register(AlignedOnly)\n")
    result = _invoke("run", "aligned-only", "--unaligned-model", "elsewhere.pkl", "--plugins-dir", plugins)
    assert result.exit_code != 0 and "--unaligned-model would not be used" in result.output, result.output


def test_sampler_rows_do_not_depend_on_batching_or_sharding(tmp_path, t64):
    G = t64.generator_from_weights()
    a = sample_to_store(tmp_path / "a", G, SamplingSpec(seeds="0-9", batch_size=3, shard_size=4,
                                                        transforms="random"), progress=False)
    b = sample_to_store(tmp_path / "b", G, SamplingSpec(seeds="0-9", batch_size=10, shard_size=10,
                                                        transforms="random"), progress=False)
    for name in ("z", "w", "transform"):
        np.testing.assert_allclose(a.read(name), b.read(name), rtol=1e-5, atol=1e-5)  # GEMM blocking differs by batch
    np.testing.assert_allclose(a.read("s").astype(np.float32), b.read("s").astype(np.float32), atol=1e-2)
    samples = StoreSampleSet(a)
    assert list(samples["s"]) == ["input"] + G.synthesis.layer_names
    assert samples["s"]["L0_36_32"].shape == (10, 32)
    assert not np.allclose(samples["transforms"][0], np.eye(3))


class _MeanColour:
    """A scorer of the mean of each colour channel (enough to see which images were scored)."""

    name = "meancolour"
    attributes = (Attribute("red", "continuous"), Attribute("blue", "continuous"))

    def score(self, images):
        x = images.detach().float().cpu().numpy()
        return {"red": x[:, 0].mean(axis=(1, 2)), "blue": x[:, 2].mean(axis=(1, 2))}


def test_pseudo_aligned_sampling_keeps_the_scores_as_generated_too(tmp_path, t64):
    import torch

    G = t64.generator_from_weights()
    scorer = _MeanColour()
    store = sample_to_store(tmp_path / "s", G, SamplingSpec(seeds="0-5", spaces=("w",), pseudo_align=True),
                            scorer, progress=False)
    samples = StoreSampleSet(store)
    assert {"scores", "scores_as_generated"} <= set(samples.keys())
    with torch.no_grad():
        ws = G.mapping(torch.as_tensor(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in range(6)]),
                                       dtype=torch.float32))
        plain = scorer.score(G.synthesis(ws))
        aligned_ws = ws.clone()
        aligned_ws[:, 0] = G.w_avg
        pseudo = scorer.score(G.synthesis(aligned_ws))
    for name in ("red", "blue"):
        np.testing.assert_allclose(samples["scores_as_generated"][name], plain[name], atol=1e-5)
        np.testing.assert_allclose(samples["scores"][name], pseudo[name], atol=1e-5)
    assert not np.allclose(samples["scores"]["red"], samples["scores_as_generated"]["red"])
    # Without pseudo-alignment there is only one set of scores.
    plain_store = sample_to_store(tmp_path / "p", G, SamplingSpec(seeds="0-5", spaces=("w",)), scorer, progress=False)
    assert "scores_as_generated" not in StoreSampleSet(plain_store).keys()


def test_a_store_scored_with_other_scorer_options_is_refused(tmp_path, t64):
    from sg3probe.sampling.sampler import open_sample_store
    from sg3probe.store import StoreError

    G, scorer, spec = t64.generator_from_weights(), _MeanColour(), SamplingSpec(seeds="0-3", spaces=("w",))
    open_sample_store(tmp_path / "s", G, spec, scorer, scorer_options={"weights": "a.pt"})
    open_sample_store(tmp_path / "s", G, spec, scorer, scorer_options={"weights": "a.pt"})  # the same: resumes
    with pytest.raises(StoreError, match="other settings"):  # its scores would be another classifier's
        open_sample_store(tmp_path / "s", G, spec, scorer, scorer_options={"weights": "b.pt"})
    open_sample_store(tmp_path / "t", G, spec, scorer)
    assert "scorer_options" not in open_sample_store(tmp_path / "t", G, spec, scorer, scorer_options={})[0].metadata
