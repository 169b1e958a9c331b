"""Finding plugins, calling their hooks, and the registries of analyzers, scorers and models.

A broken plugin never takes the others down: its failure is recorded as one line naming it
(see :attr:`PluginManager.errors`), shown by ``sg3probe plugins``, and raised only when something
the user asked for depends on it.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping

import pluggy

from sg3probe import hookspecs
from sg3probe.analyzer import check_analyzer_class
from sg3probe.errors import ConfigError, PluginError
from sg3probe.hookspecs import ModelEntry
from sg3probe.scorer import check_scorer_class

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME


@dataclass(frozen=True)
class PluginInfo:
    """One line of ``sg3probe plugins``: a plugin, where it came from, and its state."""

    name: str
    version: str | None  # of the distribution that installed it; None for a plugins_dir file
    distribution: str | None
    source: str  # "entry point <value>", a file path, or the module name
    hooks: tuple[str, ...]
    errors: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Whether the plugin loaded and its hooks ran without error."""
        return not self.errors


@dataclass(frozen=True)
class _Kind:
    """A registry: which hook fills it, and how to tell a valid registration."""

    hook: str
    noun: str  # "analyzer", "scorer", "model"
    check: Callable[[Any], None]  # raises ValueError saying what is wrong


def _check_model(entry: Any) -> None:
    if not isinstance(entry, ModelEntry):
        raise ValueError(f"{entry!r} is not a sg3probe.hookspecs.ModelEntry")


_ANALYZERS = _Kind("register_analyzers", "analyzer", check_analyzer_class)
_SCORERS = _Kind("register_scorers", "scorer", check_scorer_class)
_MODELS = _Kind("register_models", "model", _check_model)


def scorer_options(scorer_class: type) -> dict[str, inspect.Parameter]:
    """The options a scorer takes: its constructor's named keyword arguments besides `device`."""
    parameters = inspect.signature(scorer_class.__init__).parameters
    return {name: p for name, p in parameters.items() if name not in ("self", "device")
            and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class PluginManager(pluggy.PluginManager):
    """pluggy's manager with sg3probe's hooks, fault-tolerant loading and name registries."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self._load_errors: dict[str, list[str]] = {}  # plugin name -> one-line messages
        self._hook_errors: dict[str, dict[str, list[str]]] = {}  # hook -> plugin -> messages
        self._sources: dict[str, str] = {}
        self._distributions: dict[str, importlib.metadata.Distribution] = {}
        self._registries: dict[str, dict[str, Any]] = {}  # hook -> registered name -> object
        self._clashes: dict[str, dict[str, str]] = {}  # hook -> clashing name -> message

    @property
    def errors(self) -> dict[str, list[str]]:
        """One-line messages by plugin name, for every failure seen so far."""
        merged: dict[str, list[str]] = {}
        for errors in (self._load_errors, *self._hook_errors.values()):
            for plugin, lines in errors.items():
                merged.setdefault(plugin, []).extend(lines)
        return merged

    # -- loading -------------------------------------------------------------------------------

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        """Register a plugin module or object; a plugin that fails validation is recorded as broken."""
        self._forget_registries()
        plugin_name = name or self.get_canonical_name(plugin)
        try:
            registered = super().register(plugin, name=plugin_name)
        except (ValueError, pluggy.PluginValidationError) as error:
            self._record(plugin_name, f"cannot be registered: {_one_line(error)}")
            return None
        unknown = sorted(c.name for c in self.get_hookcallers(plugin) or () if not c.has_spec())
        if unknown:
            super().unregister(plugin)
            known = ", ".join(sorted(self._hook_names()))
            self._record(plugin_name, f"implements unknown hook(s) {', '.join(unknown)}; "
                                      f"the hooks are: {known}")
            return None
        self._sources.setdefault(plugin_name, getattr(plugin, "__name__", repr(plugin)))
        return registered

    def unregister(self, plugin: Any = None, name: str | None = None) -> Any:
        """Unregister a plugin (by object or name) and forget what it registered."""
        self._forget_registries()
        plugin_name = name or self.get_name(plugin)
        removed = super().unregister(plugin, name=name)
        self._load_errors.pop(plugin_name, None)
        return removed

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Load the plugins installed under an entry-point group, recording the broken ones."""
        for entry_point in importlib.metadata.entry_points(group=group):
            if self.has_plugin(entry_point.name) or self.is_blocked(entry_point.name):
                continue
            source = f"entry point {entry_point.value}"
            self._sources[entry_point.name] = source
            if entry_point.dist is not None:
                self._distributions[entry_point.name] = entry_point.dist
            try:
                module = entry_point.load()
            except Exception as error:  # any failure of a third-party import is that plugin's
                self._record(entry_point.name, f"failed to load ({source}): {_one_line(error)}")
                continue
            self.register(module, name=entry_point.name)

    def load_plugins_dir(self, directory: str | Path) -> None:
        """Load every ``*.py`` file of a folder as a single-file plugin named after the file."""
        directory = Path(directory)
        if not directory.is_dir():
            raise ConfigError(f"plugins dir {str(directory)!r} is not a folder; "
                              "give a folder of single-file plugins (*.py)")
        for path in sorted(directory.glob("*.py")):
            if path.name.startswith("_"):
                continue
            name = path.stem
            if self.has_plugin(name) and self._sources.get(name) == str(path):
                continue  # this very file is loaded already
            self._sources[name] = str(path)
            try:
                module = _import_file(path, f"sg3probe_plugins_dir.{name}")
            except Exception as error:
                self._record(name, f"failed to load ({path}): {_one_line(error)}")
                continue
            self.register(module, name=name)

    # -- registries ----------------------------------------------------------------------------

    def get_analyzers(self) -> dict[str, Any]:
        """Analyzer classes by name, from every healthy plugin."""
        return dict(self._registry(_ANALYZERS))

    def get_scorers(self) -> dict[str, Any]:
        """Scorer classes by name, from every healthy plugin."""
        return dict(self._registry(_SCORERS))

    def get_models(self) -> dict[str, ModelEntry]:
        """Zoo model entries by name, from every healthy plugin."""
        return dict(self._registry(_MODELS))

    def get_analyzer(self, name: str) -> Any:
        """The analyzer class called `name`, or a one-line error saying why it is not available."""
        return self._lookup(_ANALYZERS, name)

    def get_scorer(self, name: str) -> Any:
        """The scorer class called `name`, or a one-line error saying why it is not available."""
        return self._lookup(_SCORERS, name)

    def build_scorer(self, name: str, device: str = "cpu", options: Mapping[str, Any] | None = None) -> Any:
        """The scorer called `name`, built on `device` with `options` as keyword arguments of its
        constructor (a run's `[scorer_options]`); an option the constructor does not take is a
        one-line error naming the ones it does."""
        scorer_class = self.get_scorer(name)
        options = dict(options or {})
        parameters = inspect.signature(scorer_class.__init__).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            accepted = sorted(scorer_options(scorer_class))
            unknown = sorted(set(options) - set(accepted))
            if unknown:
                raise ConfigError(f"scorer {name!r} takes no option {', '.join(map(repr, unknown))}; "
                                  f"its options are: {', '.join(accepted) or 'none'}")
        return scorer_class(device=device, **options)

    def get_model(self, name: str) -> ModelEntry:
        """The zoo entry called `name`, or a one-line error saying why it is not available."""
        return self._lookup(_MODELS, name)

    def add_commands(self, cli: Any) -> None:
        """Let every plugin add its commands to the root click group; failures are recorded."""
        for impl in self.hook.register_commands.get_hookimpls():
            try:
                impl.function(**{arg: cli for arg in impl.argnames})
            except Exception as error:
                self._record(impl.plugin_name, f"raised in register_commands: {_one_line(error)}")

    def plugin_info(self) -> list[PluginInfo]:
        """Every plugin, healthy or broken, with version, hooks and errors, sorted by name."""
        for kind in (_ANALYZERS, _SCORERS, _MODELS):
            self._registry(kind)  # calling the hooks is how a raising hook shows up as broken
        infos = []
        names = {name for name, _ in self.list_name_plugin()} | set(self.errors)
        for name in sorted(names):
            plugin = self.get_plugin(name)
            hooks = tuple(sorted(c.name for c in self.get_hookcallers(plugin) or ())) if plugin else ()
            dist = self._distributions.get(name)
            infos.append(PluginInfo(
                name=name,
                version=dist.version if dist is not None else None,
                distribution=dist.metadata["Name"] if dist is not None else None,
                source=self._sources.get(name, name),
                hooks=hooks,
                errors=tuple(self.errors.get(name, ())),
            ))
        return infos

    # -- internals -----------------------------------------------------------------------------

    def _forget_registries(self) -> None:
        self._registries.clear()
        self._hook_errors.clear()
        self._clashes.clear()

    def _hook_names(self) -> list[str]:
        return [name for name, caller in vars(self.hook).items() if caller.has_spec()]

    def _record(self, plugin_name: str, message: str, hook: str | None = None) -> None:
        # Errors from calling registry hooks are recomputed with the registries; load errors stay.
        errors = self._hook_errors.setdefault(hook, {}) if hook else self._load_errors
        lines = errors.setdefault(plugin_name, [])
        line = f"plugin {plugin_name!r} {message}"
        if line not in lines:
            lines.append(line)

    def _registry(self, kind: _Kind) -> dict[str, Any]:
        if kind.hook in self._registries:
            return self._registries[kind.hook]
        self._hook_errors.pop(kind.hook, None)
        by_name: dict[str, list[tuple[str, Any]]] = {}  # registered name -> (plugin, object)
        for impl in getattr(self.hook, kind.hook).get_hookimpls():  # in registration order
            collected: list[Any] = []
            try:
                impl.function(**{arg: collected.append for arg in impl.argnames})
            except Exception as error:  # whatever a plugin raises is that plugin's failure
                self._record(impl.plugin_name, f"raised in {kind.hook}: {_one_line(error)}",
                             hook=kind.hook)
                continue
            try:
                for obj in collected:
                    kind.check(obj)
            except ValueError as error:
                # All or nothing per plugin: half of a plugin's registrations would mislead.
                self._record(impl.plugin_name, f"registered an invalid {kind.noun}: {error}",
                             hook=kind.hook)
                continue
            for obj in collected:
                by_name.setdefault(obj.name, []).append((impl.plugin_name, obj))
        found: dict[str, Any] = {}
        clashes: dict[str, str] = {}
        for name, owners in by_name.items():
            if len(owners) == 1:
                found[name] = owners[0][1]
                continue
            # Neither wins: picking one silently would make results depend on install order.
            plugins = ", ".join(repr(plugin) for plugin, _ in owners)
            clashes[name] = (f"{kind.noun} name {name!r} is registered by more than one plugin "
                             f"({plugins}); uninstall or rename all but one")
            for plugin, _ in owners:
                self._record(plugin, f"clashes: {clashes[name]}", hook=kind.hook)
        self._registries[kind.hook] = found
        self._clashes[kind.hook] = clashes
        return found

    def _lookup(self, kind: _Kind, name: str) -> Any:
        registry = self._registry(kind)
        if name in registry:
            return registry[name]
        if name in self._clashes[kind.hook]:
            raise PluginError(self._clashes[kind.hook][name])
        available = ", ".join(sorted(registry)) or "none"
        broken = "; ".join(line for lines in self.errors.values() for line in lines)
        hint = f" (broken plugins: {broken})" if broken else ""
        raise ConfigError(f"unknown {kind.noun} {name!r}: the available ones are {available}{hint}; "
                          f"see `sg3probe {kind.noun}s`")


def _import_file(path: Path, module_name: str) -> ModuleType:
    """Import a single file as a module; it must be in sys.modules while it runs (dataclasses)."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


# A folder of single-file plugins loaded for every command, as --plugins-dir is for one.
PLUGINS_DIR_ENV = "SG3PROBE_PLUGINS_DIR"


def build_plugin_manager(plugins_dir: str | Path | None = None, *,
                         entry_points: bool = True) -> PluginManager:
    """A new manager with the installed plugins and those of `plugins_dir`. The installed ones are the
    entry points and the single-file plugins of $SG3PROBE_PLUGINS_DIR (for every command, so that its
    zoo models and commands work everywhere); `entry_points=False` leaves both out."""
    manager = PluginManager()
    if entry_points:
        manager.load_entry_points()
        variable = os.environ.get(PLUGINS_DIR_ENV, "")
        if variable:
            try:
                manager.load_plugins_dir(variable)
            except ConfigError as error:  # reported like a broken plugin: the other commands keep working
                manager._record(PLUGINS_DIR_ENV, f"cannot be loaded: {error}")
    if plugins_dir is not None:
        manager.load_plugins_dir(plugins_dir)
    return manager


_process_manager: PluginManager | None = None


def get_plugin_manager(plugins_dir: str | Path | None = None) -> PluginManager:
    """The process-wide manager (installed plugins), built on first use; `plugins_dir` adds to it.

    For code that has no manager handed to it (the zoo, the CLI). Tests build their own with
    PluginManager() or build_plugin_manager() instead, so nothing leaks between them.
    """
    global _process_manager
    if _process_manager is None:
        _process_manager = build_plugin_manager()
    if plugins_dir is not None:
        _process_manager.load_plugins_dir(plugins_dir)  # already-loaded names are skipped
    return _process_manager
