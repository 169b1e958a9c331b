"""`python -m sg3probe` is the `sg3probe` command."""
from sg3probe.cli.main import cli

cli(prog_name="sg3probe")
