"""`sg3probe run NAME`: resolve config, load models and scorer, sample, analyse, write, report.

Everything a run produces goes into its run folder; running again with the same `--out`
resumes the sample stores instead of recomputing them.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sg3probe.analyzer import AnalysisContext, RunPlan
from sg3probe.checkpoints.loading import LoadedModel, load_model, resolve_device
from sg3probe.config import resolve_config, with_sections
from sg3probe.errors import ConfigError
from sg3probe.imaging import image_grid
from sg3probe.results import ResultWriter
from sg3probe.runs import RUN_FILE, Run, allocate_run_dir, read_run
from sg3probe.runtime import apply_threads
from sg3probe.sampling.latents import z_from_seeds
from sg3probe.sampling.sampler import SamplingSpec, StoreSampleSet, open_sample_store
from sg3probe.store import fill
from sg3probe.store.seeds import as_seed_array


@dataclass
class ModelsConfig:
    """Which generators play which role ('' = none)."""

    aligned: str = "toyfaces-aligned"
    unaligned: str = "toyfaces-unaligned"


@dataclass
class SamplingConfig:
    """How samples are drawn (see sg3probe.sampling.sampler.SamplingSpec)."""

    seeds: str = "0-1999"
    truncation_psi: float = 1.0
    truncation_cutoff: int | None = None
    transforms: str = "identity"
    max_angle: float = 30.0
    max_translate: float = 0.12
    pseudo_align_unaligned: bool = True  # score the unaligned model's images with ws[0] = w_avg
    batch_size: int = 32
    shard_size: int = 500
    s_dtype: str = "float16"

    def __post_init__(self) -> None:
        self.spec("aligned", (), scored=False)  # bad settings fail as the config is read, before any folder is made

    def spec(self, role: str, spaces, scored: bool) -> SamplingSpec:
        """The SamplingSpec of the store of one model role (`scored`: the sampler scores the images)."""
        pseudo_align = scored and role == "unaligned" and self.pseudo_align_unaligned
        return SamplingSpec(seeds=self.seeds, truncation_psi=self.truncation_psi,
                            truncation_cutoff=self.truncation_cutoff, spaces=tuple(sorted(spaces)),
                            transforms=self.transforms, max_angle=self.max_angle, max_translate=self.max_translate,
                            pseudo_align=pseudo_align, s_dtype=self.s_dtype, batch_size=self.batch_size,
                            shard_size=self.shard_size)


@dataclass
class CoreConfig:
    """Settings every run has; each analyzer adds its own table named after it."""

    models: ModelsConfig = field(default_factory=ModelsConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    scorer: str = "toyfaces"
    # Keyword arguments of the scorer's constructor, e.g. [scorer_options] checkpoint = "my.pt".
    scorer_options: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = one per core (sg3probe.runtime.choose_threads)
    grid_size: int = 16  # sample-grid images per model in the report


def config_section(analyzer_name: str) -> str:
    """The config table of an analyzer: its name with '-' as '_' (e.g. [w_spread] for w-spread)."""
    return analyzer_name.replace("-", "_")


def run_schema(analyzer_cls) -> type:
    """The config schema of `sg3probe run NAME`: the core settings plus the analyzer's table."""
    return with_sections(CoreConfig, {config_section(analyzer_cls.name): analyzer_cls.Config})


def _check_out_folder(folder: Path, name: str) -> dict:
    """The record (run.json) of the run in `folder`, {} if none; a ConfigError unless `folder` is new, empty, or a
    run of the same analyzer (which a rerun resumes): never overwrite another analyzer's run or a user's files."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {folder} is a file, not a folder; give a new or empty folder")
    if not folder.is_dir() or {entry.name for entry in folder.iterdir()} <= {"samples"}:
        return {}  # new, empty, or stopped after its stores were opened and before run.json was written
    if not (folder / RUN_FILE).exists():
        raise ConfigError(f"--out {folder} is not empty and holds no {RUN_FILE}: it is not a run folder, and a run "
                          "would overwrite its files; give a new or empty folder")
    record = read_run(folder)
    earlier = record.get("analyzers", [])
    if earlier and earlier != [name]:
        raise ConfigError(f"{folder} holds a run of {', '.join(earlier)}, not {name}: give another --out "
                          "(rerunning the same analyzer there resumes it)")
    return record


def _write_grid(G, path: Path, count: int, psi: float) -> None:
    with torch.no_grad():
        z = z_from_seeds(range(count), G.z_dim, G.device)
        image_grid(G(z, truncation_psi=psi), columns=min(count, 8)).save(path)


def run_analysis(name: str, *, config_file: str | None = None, sets: tuple[str, ...] = (),
                 out: str | None = None, root: str = "reports", plugins_dir: str | None = None,
                 argv: list[str] | None = None, progress: bool = True) -> Path:
    """Run analyzer `name` end to end; returns the run folder (with report.html)."""
    from sg3probe.plugin_manager import get_plugin_manager
    from sg3probe.report.render import render_report

    manager = get_plugin_manager(plugins_dir)
    analyzer_cls = manager.get_analyzer(name)
    section = config_section(analyzer_cls.name)
    schema = run_schema(analyzer_cls)
    resolved = resolve_config(schema, config_file=config_file, sets=sets)
    config = resolved.config
    analyzer_cfg = getattr(config, section)
    needs = analyzer_cls.needs
    threads = apply_threads(config.threads)
    device = resolve_device(None if config.device == "auto" else config.device)

    roles = [role for role in needs.roles if getattr(config.models, role)]
    if "aligned" in needs.roles and not config.models.aligned:
        raise ConfigError(f"analyzer {name!r} needs a model: give --model (or models.aligned)")
    if not roles:
        raise ConfigError(f"analyzer {name!r} needs the {needs.roles[0]} model: set models.{needs.roles[0]}")
    models: dict[str, LoadedModel] = {role: load_model(getattr(config.models, role), device) for role in roles}
    scorer = None
    if needs.scores and not config.scorer:
        raise ConfigError(f"analyzer {name!r} needs attribute scores: give --scorer NAME (see `sg3probe scorers`)")
    # An analyzer that renders its own images may score them: it gets the scorer when one is set,
    # but only `needs.scores` makes the sampler score every sample.
    if config.scorer and (needs.scores or needs.images):
        scorer = manager.build_scorer(config.scorer, str(device), config.scorer_options)

    analyzer = analyzer_cls()
    analyzer.prepare(analyzer_cfg, RunPlan(device=str(device), seeds=as_seed_array(config.sampling.seeds),
                                           roles=tuple(roles), scorer=scorer))

    folder = Path(out) if out else allocate_run_dir(root, name, Path(models[roles[0]].source).stem)
    earlier_config = _check_out_folder(folder, name).get("config", {})
    # Open (or resume) every store before run.json is written: a store of other settings is refused
    # while the folder still records the run that made it.
    stores = {role: open_sample_store(folder / "samples" / role, model.generator,
                                      config.sampling.spec(role, needs.spaces, bool(needs.scores)),
                                      scorer if needs.scores else None, model_sha256=model.sha256,
                                      scorer_options=config.scorer_options)
              for role, model in models.items()}
    plugins = [{"name": info.name, "version": info.version} for info in manager.plugin_info()]
    record = dict(analyzers=[name], device=str(device), threads=threads, seeds=config.sampling.seeds, plugins=plugins,
                  model={role: {"name": m.source, "path": str(m.path), "sha256": m.sha256} for role, m in models.items()},
                  scorer=config.scorer if scorer else None)
    settings = resolved.to_dict()
    if earlier_config.get(section) not in (None, settings.get(section)):
        print(f"note: {folder} holds results made with other [{section}] settings; this run reuses its samples and "
              "replaces those results when it finishes", file=sys.stderr)
    # The thread count the run used, not 0 ("one per core") or an environment variable: results follow it,
    # and config.toml must reproduce the run on another machine.
    recorded = {**settings, "threads": threads}
    with Run(folder, argv=argv if argv is not None else sys.argv, config=recorded, **record) as run:
        samples = {}
        for role, model in models.items():
            G = model.generator
            store, sampler = stores[role]
            with run.timing(f"sample {role}"):
                fill(store, sampler.compute, progress=progress)
                samples[role] = StoreSampleSet(store)
            _write_grid(G, folder / "samples" / f"{role}.png", config.grid_size, config.sampling.truncation_psi)
        ctx = AnalysisContext(generators={r: m.generator for r, m in models.items()},
                              work_dir=folder / "work" / analyzer_cls.name, scorer=scorer, device=str(device),
                              seed=config.seed, progress=_progress_factory(progress), log=run.log.getChild(name),
                              run_dir=folder)
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
        with run.timing(f"analyze {name}"):
            result = analyzer.analyze(samples, ctx, analyzer_cfg)
        ResultWriter(folder).write(analyzer_cls.name, result)
    render_report(folder)  # after the run is marked complete, so the report says so
    return folder


def _progress_factory(enabled: bool):
    from tqdm.auto import tqdm

    def progress(iterable=None, **kwargs):
        return tqdm(iterable, file=sys.stderr, disable=not enabled or not sys.stderr.isatty(), **kwargs)
    return progress
