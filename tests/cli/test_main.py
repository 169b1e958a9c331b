"""The `sg3probe` group: click's usage errors, Ctrl-C and file-system errors as one line with a fitting exit."""
import pytest
from click.testing import CliRunner

from sg3probe.cli.main import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated, cli


def _lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


@pytest.mark.parametrize("args,message", [
    (["edit"], "error: Missing option '--outdir'; see `sg3probe edit -h`"),
    (["--bogus"], "error: No such option '--bogus'; see `sg3probe -h`"),
    (["generate", "--batch", "0", "--outdir", "o"], "'--batch': 0 is not in the range x>=1; see `sg3probe generate -h`"),
    (["report", "/no/such/run"], "Directory '/no/such/run' does not exist; see `sg3probe report -h`"),
    (["toy", "--nope"], "No such option '--nope'; see `sg3probe toy -h`"),
])
def test_usage_errors_are_one_line_with_where_to_look(args, message):
    result = CliRunner().invoke(cli, args, prog_name="sg3probe")
    assert result.exit_code == 2
    assert len(_lines(result)) == 1 and message in _lines(result)[0], result.output


def test_bare_command_shows_the_help():
    result = CliRunner().invoke(cli, [], prog_name="sg3probe")
    assert "Usage: sg3probe" in result.output and "Commands:" in result.output


@pytest.mark.parametrize("signal_error,exit_code,message", [
    (KeyboardInterrupt, EXIT_INTERRUPTED, "error: interrupted;"),  # Ctrl-C: 130
    (Terminated, EXIT_TERMINATED, "error: terminated (SIGTERM);"),  # SIGTERM stops the same way: 143
])
def test_a_stopped_command_exits_with_its_signal_code_and_one_line(monkeypatch, signal_error, exit_code, message):
    import sg3probe.pipeline

    def stopped(*args, **kwargs):
        raise signal_error
    monkeypatch.setattr(sg3probe.pipeline, "run_analysis", stopped)
    result = CliRunner().invoke(cli, ["run", "disentanglement"])
    assert result.exit_code == exit_code and (EXIT_INTERRUPTED, EXIT_TERMINATED) == (130, 143)
    assert len(_lines(result)) == 1 and message in _lines(result)[0], result.output


def test_a_real_sigterm_leaves_a_store_that_resumes(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "store"
    command = [sys.executable, "-m", "sg3probe", "sample", "--seeds", "0-199999", "--spaces", "w",
               "--shard-size", "500", "--out", str(out)]
    from sg3probe.store import SampleStore

    def missing() -> int:
        try:
            return len(SampleStore.open(out).missing_shards())
        except Exception:  # not created yet
            return 400

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while missing() == 400 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)  # until the first shard is complete
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == EXIT_TERMINATED, stderr
    assert "terminated (SIGTERM)" in stderr and "Traceback" not in stderr
    assert 0 < missing() < 400  # the written shards stay; the rest resumes


def test_a_path_that_cannot_be_written_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(cli, ["generate", "--seeds", "0", "--outdir", str(blocker / "images")])
    assert result.exit_code == 1
    assert len(_lines(result)) == 1 and f"{blocker / 'images'}: " in _lines(result)[0], result.output
    assert "check the path" in _lines(result)[0]


def test_sample_with_a_rank_fills_its_share_and_says_what_is_left(tmp_path):
    out = tmp_path / "store"
    common = ["sample", "--seeds", "0-23", "--spaces", "w", "--shard-size", "8", "--out", str(out)]
    first = CliRunner().invoke(cli, common + ["--rank", "1", "--world-size", "2"])
    assert first.exit_code == 0, first.output
    assert "rank 1 of 2 has filled its shards; 2 of 3 shards are still missing" in first.output
    second = CliRunner().invoke(cli, common + ["--rank", "0", "--world-size", "2"])
    assert second.exit_code == 0 and "24 samples" in second.output
    wrong = CliRunner().invoke(cli, common + ["--rank", "1"])
    assert wrong.exit_code == 2 and "give --rank and --world-size together" in wrong.output
