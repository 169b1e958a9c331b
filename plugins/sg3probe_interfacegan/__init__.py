"""Built-in plugin: the `interfacegan` analyzer (attribute boundaries, edits, side effects, layer ranges).

`boundary` holds the pure numpy/scikit-learn part (train_boundary, conditional_boundary,
Boundary); `sg3probe edit` applies the boundary files it writes.
"""
import sg3probe


@sg3probe.hookimpl
def register_analyzers(register):
    from sg3probe_interfacegan.analyzer import InterFaceGAN

    register(InterFaceGAN)
