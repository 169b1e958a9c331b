"""Named hook points: read and edit activations without forking the network.

Each HookPoint is an identity module placed where a value of interest flows (a layer's style,
a layer's output). `Generator.run_with_cache` records values by name; `Generator.hooks` installs
functions that may replace them, and always removes them again.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator, Mapping

import torch

# fn(value, name) -> replacement value, or None to leave the value as it is.
HookFn = Callable[[torch.Tensor, str], "torch.Tensor | None"]


class HookPoint(torch.nn.Module):
    """Identity module; its forward hooks see (and may replace) the value passing through."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def resolve_names(available: Mapping[str, HookPoint], names: Iterable[str] | None) -> list[str]:
    """The requested hook names (all when None), validated against what the network has."""
    if names is None:
        return list(available)
    names = list(names)
    unknown = [name for name in names if name not in available]
    if unknown:
        raise KeyError(f"unknown hook point(s) {unknown}; accepted: {', '.join(available)}")
    return names


@contextlib.contextmanager
def installed_hooks(available: Mapping[str, HookPoint],
                    hooks: Mapping[str, HookFn] | Iterable[tuple[str, HookFn]]) -> Iterator[None]:
    """Attach fn(value, name) to each named hook point for the duration of the block."""
    pairs = list(hooks.items()) if isinstance(hooks, Mapping) else list(hooks)
    names = resolve_names(available, [name for name, _ in pairs])
    handles = []
    try:
        for name, (_, fn) in zip(names, pairs):
            def forward_hook(module, inputs, output, _fn=fn, _name=name):
                return _fn(output, _name)
            handles.append(available[name].register_forward_hook(forward_hook))
        yield
    finally:
        for handle in handles:
            handle.remove()
