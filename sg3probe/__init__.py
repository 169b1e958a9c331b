"""sg3probe: analyse and edit the latent spaces of StyleGAN3 generators.

Public API:
    load_generator(source, device=None) -> Generator   (NVIDIA .pkl, sg3probe checkpoint, zoo name)
    Generator: .mapping(z, c, truncation_psi, truncation_cutoff) -> ws [B, num_ws, w_dim]
               .styles(ws) -> S (ordered dict), .synthesis(ws | styles=S, transform=...) -> images
               .run_with_cache(ws, names) and .hooks({...}) for named hook points
    make_transform(translate=(tx, ty), angle=degrees) and inverse_transform(...) for transform=
    z_from_seeds(seeds, z_dim): NVIDIA's per-seed z
    hookimpl: the marker for plugin hook implementations
"""
from sg3probe.hookspecs import hookimpl

# The rest of the public API is imported on first use (PEP 562), so that `import sg3probe` and
# `sg3probe --help` stay fast: they need neither torch nor the generator code.
_LAZY = {
    "Generator": "sg3probe.models.generator",
    "GeneratorConfig": "sg3probe.models.architecture",
    "inverse_transform": "sg3probe.models.transforms",
    "load_generator": "sg3probe.checkpoints",
    "load_model": "sg3probe.checkpoints",
    "make_transform": "sg3probe.models.transforms",
    "save_generator": "sg3probe.checkpoints",
    "stylegan3_config": "sg3probe.models.architecture",
    "z_from_seeds": "sg3probe.sampling.latents",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sg3probe' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "Generator", "GeneratorConfig", "hookimpl", "inverse_transform", "load_generator", "load_model",
    "make_transform", "save_generator", "stylegan3_config", "z_from_seeds",
]
