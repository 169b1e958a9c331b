"""sg3probe: analyse and edit the latent spaces of StyleGAN3 generators.

Public API (see README.md):
    load_generator(source, device=None) -> Generator
    Generator: .mapping, .styles, .synthesis, .run_with_cache, .hooks
    make_transform(translate=(tx, ty), angle=degrees)
    hookimpl: the marker for plugin hook implementations
"""
__version__ = "0.1.0"
