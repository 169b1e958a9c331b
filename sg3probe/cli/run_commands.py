"""`sg3probe run` and `sg3probe sample`: the pipeline from the command line."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from sg3probe.cli.model_commands import DEFAULT_MODEL


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("analyzer")
@click.option("--model", default=None, help="Model for the aligned role (path or zoo name); default the toy world.")
@click.option("--unaligned-model", default=None, help="Model for the unaligned role ('' for none).")
@click.option("--scorer", default=None, help="Scorer plugin name (see `sg3probe scorers`).")
@click.option("--seeds", default=None, help="Seeds to sample, e.g. 0-1999.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A TOML file of settings (a run's config.toml reproduces it).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override one setting, e.g. sampling.truncation_psi=0.7.")
@click.option("--out", default=None, help="Run folder (default: reports/NNNNN-<analyzer>-<model>); reusing one resumes it.")
@click.option("--device", default=None, help="cpu, cuda or mps (default: best available).")
@click.option("--plugins-dir", type=click.Path(exists=True, file_okay=False), default=None)
def run(analyzer, model, unaligned_model, scorer, seeds, config_file, sets, out, device, plugins_dir):
    """Run ANALYZER (see `sg3probe analyzers`) and write a run folder with report.html.

    Every setting of the run, with its default: `sg3probe analyzers ANALYZER`."""
    from sg3probe.errors import ConfigError
    from sg3probe.pipeline import run_analysis

    # The options are shortcuts for --set keys; a key given both ways would leave one of them unused.
    shortcuts = {"models.aligned": ("--model", model), "models.unaligned": ("--unaligned-model", unaligned_model),
                 "scorer": ("--scorer", scorer), "sampling.seeds": ("--seeds", seeds), "device": ("--device", device)}
    set_keys = {item.partition("=")[0].strip() for item in sets}
    overrides = list(sets)
    for key, (option, value) in shortcuts.items():
        if value is None:
            continue
        if key in set_keys:
            raise ConfigError(f"{option} and --set {key}=... both give {key}; give one of them")
        overrides.append(f"{key}={_toml_string(value)}")
    if unaligned_model:
        from sg3probe.plugin_manager import get_plugin_manager

        if "unaligned" not in get_plugin_manager(plugins_dir).get_analyzer(analyzer).needs.roles:
            raise ConfigError(f"analyzer {analyzer!r} uses the aligned model only, so --unaligned-model would not be "
                              "used; leave it out")
    if model is not None and unaligned_model is None and "models.unaligned" not in set_keys:
        overrides.append('models.unaligned=""')  # a user's own model: do not pair it with the toy world's
    folder = run_analysis(analyzer, config_file=config_file, sets=tuple(overrides), out=out,
                          plugins_dir=plugins_dir, argv=["sg3probe"] + sys.argv[1:])
    click.echo(f"report: {folder / 'report.html'}")


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@click.command()
@click.option("--model", "model_source", default=DEFAULT_MODEL, show_default=True)
@click.option("--seeds", default="0-999", show_default=True)
@click.option("--spaces", default="w,s", show_default=True, help="Comma list of z, w, wplus, s.")
@click.option("--trunc", "truncation_psi", type=float, default=1.0, show_default=True)
@click.option("--trunc-cutoff", "truncation_cutoff", type=int, default=None)
@click.option("--transforms", type=click.Choice(["identity", "random"]), default="identity", show_default=True)
@click.option("--scorer", default=None, help="Also store this scorer's attribute scores.")
@click.option("--scorer-option", "scorer_options", multiple=True, metavar="KEY=VALUE",
              help="An option of the scorer's constructor, e.g. checkpoint=my.pt (repeatable).")
@click.option("--pseudo-align", is_flag=True, help="Score images rendered with ws[0] = w_avg.")
@click.option("--shard-size", type=int, default=1000, show_default=True)
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--device", default=None)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--rank", type=int, default=None,
              help="This process's part of a store filled by several (with --world-size); default from "
                   "torchrun's RANK or SLURM's SLURM_PROCID, else 0.")
@click.option("--world-size", type=int, default=None,
              help="How many processes fill the store together; default WORLD_SIZE or SLURM_NTASKS, else 1.")
def sample(model_source, seeds, spaces, truncation_psi, truncation_cutoff, transforms, scorer, scorer_options,
           pseudo_align, shard_size, batch_size, device, out, rank, world_size):
    """Sample latents (and scores) into a resumable, sharded store at OUT.

    Several processes (a SLURM array, torchrun, or a shell loop with --rank and --world-size) may fill
    one store together: each computes every world-size-th shard from its rank.
    """
    from sg3probe.checkpoints import load_model
    from sg3probe.config import parse_options
    from sg3probe.errors import ConfigError
    from sg3probe.plugin_manager import get_plugin_manager
    from sg3probe.sampling.sampler import SamplingSpec, sample_to_store

    space_list = tuple(s.strip() for s in spaces.split(",") if s.strip())
    if not space_list:
        raise ConfigError(f"--spaces {spaces!r}: give one or more of z, w, wplus, s")
    try:  # before the model loads: a bad setting fails at once
        spec = SamplingSpec(seeds=seeds, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                            spaces=space_list, transforms=transforms, pseudo_align=pseudo_align,
                            batch_size=batch_size, shard_size=shard_size)
    except ValueError as error:
        raise ConfigError(f"sg3probe sample: {error}") from None
    options = parse_options(scorer_options, "--scorer-option")
    if options and not scorer:
        raise ConfigError("--scorer-option needs --scorer")
    if pseudo_align and not scorer:
        raise ConfigError("--pseudo-align needs --scorer: it changes only how the scorer sees the images")
    share = _share(rank, world_size)
    model = load_model(model_source, device)
    scorer_obj = (get_plugin_manager().build_scorer(scorer, str(model.generator.device), options)
                  if scorer else None)
    if scorer_obj is not None and not scorer_obj.attributes:
        raise ConfigError(f"scorer {scorer!r} gives no attributes to store (a text-image model?); give an "
                          "attribute scorer (see `sg3probe scorers`)")
    store = sample_to_store(out, model.generator, spec, scorer_obj, model_sha256=model.sha256,
                            scorer_options=options, share=share)
    missing = len(store.missing_shards())
    if missing:
        click.echo(f"{out}: rank {share[0]} of {share[1]} has filled its shards; {missing} of {store.num_shards} "
                   "shards are still missing, for the other ranks (rerun any rank to resume it)")
    else:
        click.echo(f"{out}: {len(store)} samples, arrays {', '.join(store.arrays)}")


def _share(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """(rank, world size) from the options, or from the launcher's environment when neither is given."""
    from sg3probe.errors import ConfigError
    from sg3probe.store import rank_and_world
    from sg3probe.store.fill import check_share

    try:
        if rank is None and world_size is None:
            return rank_and_world()
        if rank is None or world_size is None:
            raise ValueError("give --rank and --world-size together")
        check_share(rank, world_size)
    except ValueError as error:
        raise ConfigError(f"sg3probe sample: {error}") from None
    return rank, world_size


COMMANDS = [run, sample]
