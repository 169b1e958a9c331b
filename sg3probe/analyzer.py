"""What an analyzer plugin writes against: its declared needs, config, inputs and context.

    class Spread(Analyzer):
        name = "spread"
        description = "Per-dimension spread of W."
        needs = Needs(spaces={"w"})

        @dataclass
        class Config:
            top_k: int = 10

        def analyze(self, samples, ctx, cfg):
            ws = samples["aligned"]["w"]          # [N, w_dim]
            ...
            return AnalysisResult(metrics={...}, summary="...")

The core reads `needs`, samples exactly that, validates the config and calls `analyze`.
Analyzers never write HTML: they return an AnalysisResult and the reporter renders it.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping, Protocol, runtime_checkable

import numpy as np

from sg3probe.config import from_dict
from sg3probe.errors import ConfigError
from sg3probe.results import AnalysisResult
from sg3probe.scorer import Scorer
from sg3probe.steps import SavedSteps, samples_identity

SPACES = ("z", "w", "wplus", "s")
MODEL_ROLES = ("aligned", "unaligned")
_MODELS_CHOICES = {"aligned": ("aligned",), "unaligned": ("unaligned",), "both": MODEL_ROLES}


@dataclass(frozen=True)
class Needs:
    """What an analyzer needs sampled; the core computes exactly this and nothing more."""

    spaces: frozenset[str] = frozenset({"w"})  # subset of SPACES
    scores: bool | tuple[str, ...] = False  # True: every attribute of the scorer; or these names
    images: bool = False  # the analyzer renders images itself (through ctx's generators)
    hook_points: tuple[str, ...] = ()  # generator hook point names whose activations it reads
    models: str = "aligned"  # "aligned", "unaligned" or "both"

    def __post_init__(self) -> None:
        # Accept lists and sets from plugin authors but store immutable values: a Needs is a
        # class attribute shared by every instance.
        object.__setattr__(self, "spaces", frozenset(self.spaces))
        if not isinstance(self.scores, bool):
            object.__setattr__(self, "scores", tuple(self.scores))
        object.__setattr__(self, "hook_points", tuple(self.hook_points))
        unknown = sorted(self.spaces - set(SPACES))
        if unknown:
            raise ValueError(f"Needs.spaces: unknown space(s) {', '.join(unknown)}; "
                             f"the spaces are {', '.join(SPACES)}")
        if self.models not in _MODELS_CHOICES:
            raise ValueError(f"Needs.models must be one of {', '.join(_MODELS_CHOICES)}, "
                             f"got {self.models!r}")

    @property
    def roles(self) -> tuple[str, ...]:
        """The model roles to sample, e.g. ("aligned", "unaligned") for models="both"."""
        return _MODELS_CHOICES[self.models]


@runtime_checkable
class SampleSet(Protocol):
    """The samples of one model, by array name; what the sampler or the store hands analyzers.

    Names: "seeds" [N] int64; "z" [N, z_dim]; "w" [N, w_dim]; "wplus" [N, num_ws, w_dim];
    "s" a mapping layer name -> [N, channels] (ordered as the generator's styles);
    "scores" a mapping attribute -> [N]; "transforms" [N, 3, 3]. When the scores were taken with
    pseudo-alignment (the unaligned model by default: ws[0] = w_avg), "scores_as_generated" holds
    the scores of the images as generated (ws[0] kept). Only what `needs` asked for
    is guaranteed to be present; arrays may be memory-mapped (read-only).
    """

    def __getitem__(self, name: str) -> Any: ...

    def __contains__(self, name: object) -> bool: ...

    def keys(self) -> Iterable[str]: ...


# The argument `samples` of Analyzer.analyze: one SampleSet per model role ("aligned", ...).
Samples = Mapping[str, SampleSet]


def model_sha256(samples: SampleSet) -> str:
    """The sha256 of the model that drew these samples, from their store's metadata ("" when unknown), for the
    files an analyzer writes (a direction file's sidecar: `sg3probe edit` warns when it meets another model)."""
    store = getattr(samples, "store", None)
    return (getattr(store, "metadata", None) or {}).get("model_sha256", "")


@dataclass
class InMemorySampleSet:
    """A SampleSet over a dict of arrays: for tests and for analyzers called from Python."""

    arrays: dict[str, Any]

    def __getitem__(self, name: str) -> Any:
        try:
            return self.arrays[name]
        except KeyError:
            raise KeyError(f"no {name!r} in these samples; they hold {', '.join(self.arrays)}; "
                           "declare it in the analyzer's `needs`") from None

    def __contains__(self, name: object) -> bool:
        return name in self.arrays

    def keys(self) -> Iterable[str]:
        return self.arrays.keys()

    def __len__(self) -> int:
        return len(self.arrays["seeds"]) if "seeds" in self.arrays else 0


class SilentProgress:
    """A tqdm-compatible progress bar that shows nothing: the default of AnalysisContext."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None,
                 desc: str | None = None, **_: Any) -> None:
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.n = 0

    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            self.n += 1
            yield item

    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        pass

    def __enter__(self) -> "SilentProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class AnalysisContext:
    """Everything an analyzer may use besides its samples and config."""

    generators: Mapping[str, Any]  # model role -> Generator (the models sampled)
    work_dir: Path  # this analyzer's folder for intermediate files it may resume from
    scorer: Scorer | None = None
    device: str = "cpu"
    seed: int = 0  # for the analyzer's own randomness (splits, bootstraps)
    progress: Callable[..., Any] = SilentProgress  # tqdm-like: progress(iterable, total=, desc=)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("sg3probe.analyzer"))
    run_dir: Path | None = None  # the run folder, when the analysis runs in one

    def shown_path(self, path: str | Path) -> str:
        """`path` as results should name it: relative to the run folder when inside it, so a moved or copied
        run folder still names its own files; otherwise as given."""
        if self.run_dir is not None:
            try:
                return Path(path).resolve().relative_to(Path(self.run_dir).resolve()).as_posix()
            except ValueError:
                pass
        return str(path)

    def generator(self, role: str = "aligned") -> Any:
        """The generator of a model role; a ConfigError if this run has none for it."""
        if role not in self.generators:
            raise ConfigError(f"this run has no {role!r} model (it has "
                              f"{', '.join(self.generators) or 'none'}); set Needs.models")
        return self.generators[role]

    def saved_steps(self, cfg: Any, samples: SampleSet, **extra: Any) -> SavedSteps:
        """The finished steps of this analysis saved in work_dir (see sg3probe.steps), so that a rerun after an
        interrupt takes them instead of computing them again. They are valid for this config, these samples,
        the run seed, the scorer, the sg3probe version and `extra` (JSON-able values), and for nothing else."""
        from sg3probe import __version__

        key = {"config": dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else cfg,
               "samples": samples_identity(samples), "seed": self.seed,
               "scorer": getattr(self.scorer, "name", None), "sg3probe": __version__, **extra}
        return SavedSteps(Path(self.work_dir) / "steps", key)

    def rng(self, stream: int = 0) -> np.random.Generator:
        """A numpy Generator seeded from the run seed (and a stream number for independence)."""
        return np.random.default_rng([self.seed, stream])


@dataclass(frozen=True)
class RunPlan:
    """What a run is about to sample, known before sampling starts: the argument of Analyzer.prepare."""

    device: str = "cpu"
    seeds: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [N] sorted, per model
    roles: tuple[str, ...] = ("aligned",)  # the models sampled
    scorer: Scorer | None = None  # the run's scorer, when the analyzer gets one

    @classmethod
    def of(cls, samples: Samples, ctx: AnalysisContext) -> "RunPlan":
        """The plan of samples already drawn: for an analyzer called from Python, not by `sg3probe run`."""
        first = next(iter(samples.values()), None)
        seeds = np.asarray(first["seeds"], np.int64) if first is not None else np.zeros(0, np.int64)
        return cls(device=ctx.device, seeds=seeds, roles=tuple(samples), scorer=ctx.scorer)


class Analyzer:
    """Base class of analyzers: subclass it, set the class attributes, implement `analyze`."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    needs: ClassVar[Needs] = Needs()

    @dataclass
    class Config:
        """No options. Subclasses define their own dataclass named Config, with defaults."""

    def prepare(self, cfg: Any, plan: RunPlan) -> None:
        """Load or check what the analysis needs before any sampling starts (model files, attribute
        names against plan.scorer, enough of plan.seeds), so that a mistake fails at once rather
        than after minutes of work. Raise a `sg3probe.errors` error with a one-line message. The
        default does nothing."""

    def analyze(self, samples: Samples, ctx: AnalysisContext, cfg: Any) -> AnalysisResult:
        """Analyse the samples (one SampleSet per model role) and return structured results."""
        raise NotImplementedError(f"{type(self).__name__}.analyze")

    @classmethod
    def make_config(cls, values: Mapping[str, Any] | None = None) -> Any:
        """Validate a dict (from TOML / --set) into this analyzer's Config, with clear errors."""
        return from_dict(cls.Config, values or {}, where=cls.name)


def check_analyzer_class(analyzer: type) -> None:
    """Raise ValueError saying what is wrong with an analyzer class, for plugin authors' tests."""
    name = getattr(analyzer, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{analyzer!r} has no string `name`")
    if not isinstance(getattr(analyzer, "needs", None), Needs):
        raise ValueError(f"analyzer {name!r}: `needs` must be a sg3probe.analyzer.Needs")
    config = getattr(analyzer, "Config", None)
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        raise ValueError(f"analyzer {name!r}: `Config` must be a dataclass type")
    missing = [f.name for f in dataclasses.fields(config)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"analyzer {name!r}: Config fields need defaults: {', '.join(missing)}")
    if not callable(getattr(analyzer, "analyze", None)):
        raise ValueError(f"analyzer {name!r} has no `analyze` method")
