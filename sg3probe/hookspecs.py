"""The hooks a plugin may implement, and the markers that declare them.

A plugin is a module (installed under the entry-point group ``sg3probe``, or a single file in a
``--plugins-dir``) with functions marked ``@sg3probe.hookimpl``::

    import sg3probe

    @sg3probe.hookimpl
    def register_analyzers(register):
        register(MyAnalyzer)

Hooks *register* named things; the core decides what to run and when.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pluggy

PROJECT_NAME = "sg3probe"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@dataclass(frozen=True)
class ModelEntry:
    """A model of the zoo: a name users type, and where and how to load it."""

    name: str
    kind: str  # e.g. "stylegan3-t", "stylegan3-r": what the loader builds
    resolution: int
    path: Path  # the weights file on this machine
    sha256: str  # of the file at `path`, checked before loading ('' = not checked)
    description: str = ""
    # Called as loader(entry, device) -> Generator (after the sha256 check); None means the core's
    # checkpoint readers (NVIDIA .pkl or sg3probe checkpoint).
    loader: Callable[["ModelEntry", Any], Any] | None = None


@hookspec
def register_analyzers(register):
    """Register analyzers: call ``register(AnalyzerClass)`` once for each.

    ``AnalyzerClass`` is a subclass of :class:`sg3probe.analyzer.Analyzer` (or has the same
    attributes: ``name``, ``description``, ``needs``, ``Config`` and ``analyze``). Its ``name`` is
    what users type in ``sg3probe run NAME``; it must be unique among installed plugins.
    """


@hookspec
def register_scorers(register):
    """Register scorers: call ``register(ScorerClass)`` once for each.

    ``ScorerClass`` is a subclass of :class:`sg3probe.scorer.Scorer`. Registration must stay
    cheap: the core instantiates it as ``ScorerClass(device=...)`` only when a run needs it, so
    load weights in ``__init__``, not at import time.
    """


@hookspec
def register_models(register):
    """Register zoo models: call ``register(ModelEntry(...))`` once for each.

    The entry's ``name`` can then be given wherever a model path is accepted (``--model NAME``).
    """


@hookspec
def register_commands(cli):
    """Add commands to the ``sg3probe`` command line: ``cli`` is the root ``click.Group``.

    Use ``@cli.command()`` or ``cli.add_command(...)``; name commands so they do not clash with
    the built-in ones.
    """
