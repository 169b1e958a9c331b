"""`sg3probe plugins | analyzers | scorers | report`: what is installed, and rebuilding reports."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from sg3probe.plugin_manager import PluginManager, build_plugin_manager, scorer_options
from sg3probe.scorer import CAPABILITIES

plugins_dir_option = click.option(
    "--plugins-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Also load every *.py file of this folder as a plugin.",
)


def _manager(plugins_dir: Path | None) -> PluginManager:
    return build_plugin_manager(plugins_dir)


def _description(cls) -> str:
    """A plugin class's `description`, or else its own docstring (never a base class's)."""
    return (cls.description or cls.__dict__.get("__doc__") or "").strip()


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


@click.command("plugins")
@plugins_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(plugins_dir: Path | None, as_json: bool) -> None:
    """List installed plugins: version, hooks, and the error of each broken one."""
    infos = _manager(plugins_dir).plugin_info()
    if as_json:
        rows = [dict(dataclasses.asdict(info), ok=info.ok) for info in infos]
        click.echo(json.dumps(rows, indent=2))
        return
    if not infos:
        click.echo("No plugins installed.")
        return
    for info in infos:
        version = info.version or "-"
        if info.ok:
            click.echo(f"{info.name}  {version}  hooks: {', '.join(info.hooks) or 'none'}")
        else:
            click.echo(f"{info.name}  {version}  BROKEN")
            for error in info.errors:
                click.echo(f"    {error}")


@click.command("analyzers")
@click.argument("name", required=False)
@plugins_dir_option
def analyzers(name: str | None, plugins_dir: Path | None) -> None:
    """List the analyzers that `sg3probe run NAME` accepts, with what each needs; with NAME, its
    whole description and every setting of `sg3probe run NAME` with its default."""
    manager = _manager(plugins_dir)
    found = manager.get_analyzers()
    if name is not None:
        _describe_analyzer(manager.get_analyzer(name))
        return
    for listed, analyzer in sorted(found.items()):
        click.echo(f"{listed}  {_first_line(_description(analyzer))}")
        click.echo(f"    {_needs(analyzer)}")
    if not found:
        click.echo("No analyzers installed.")
    else:
        click.echo("Settings and their defaults: sg3probe analyzers NAME")
    _warn_broken(manager)


def _needs(analyzer) -> str:
    needs = analyzer.needs
    spaces = ",".join(sorted(needs.spaces)) or "-"
    return f"spaces: {spaces}; scores: {needs.scores}; images: {needs.images}; models: {needs.models}"


def _describe_analyzer(analyzer) -> None:
    """The analyzer's description, then its run's settings: all of it TOML that --config reads."""
    import textwrap

    from sg3probe.config import defaults_toml
    from sg3probe.pipeline import config_section, run_schema

    section = config_section(analyzer.name)
    text = f"{analyzer.name}: {_description(analyzer)}"
    for line in textwrap.wrap(text, 96) + [_needs(analyzer)]:
        click.echo(f"# {line}")
    click.echo(f"#\n# The settings of `sg3probe run {analyzer.name}` and their defaults, as `--config FILE` reads"
               f"\n# them; one at a time, --set {section}.KEY=VALUE with a TOML value"
               f" (--set sampling.seeds='\"0-999\"').\n")
    click.echo(defaults_toml(run_schema(analyzer)), nl=False)


@click.command("scorers")
@plugins_dir_option
def scorers(plugins_dir: Path | None) -> None:
    """List the scorers, the attributes each gives, and its optional capabilities."""
    manager = _manager(plugins_dir)
    found = manager.get_scorers()
    for name, scorer in sorted(found.items()):
        click.echo(f"{name}  {_first_line(_description(scorer))}")
        attributes = ", ".join(f"{a.name} ({a.kind})" for a in scorer.attributes) or "none"
        click.echo(f"    attributes: {attributes}")
        capabilities = [c for c in CAPABILITIES if scorer.supports(c)] if hasattr(scorer, "supports") else []
        if capabilities:
            click.echo(f"    capabilities: {', '.join(capabilities)}")
        options = _scorer_options(scorer)
        if options:
            click.echo(f"    options: {options}")
    if not found:
        click.echo("No scorers installed.")
    _warn_broken(manager)


def _scorer_options(scorer) -> str:
    """What `[scorer_options]` takes (`plugin_manager.scorer_options`), with the defaults."""
    try:
        parameters = scorer_options(scorer).values()
    except (TypeError, ValueError):  # a constructor inspect cannot read: list the scorer without them
        return ""
    return ", ".join(f"{p.name}={p.default!r}" if p.default is not p.empty else p.name for p in parameters)


@click.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def report(run_dir: Path) -> None:
    """Rebuild RUN_DIR/report.html from the run folder's results."""
    from sg3probe.report.render import render_report  # jinja2 and pandas only when asked

    click.echo(render_report(run_dir))


def _warn_broken(manager: PluginManager) -> None:
    for lines in manager.errors.values():
        for line in lines:
            click.echo(f"warning: {line}", err=True)


COMMANDS = [plugins, analyzers, scorers, report]
