"""Built-in plugin: the `rotation` analyzer (which W+ codes move in-plane pose; pseudo-alignment;
user-transform equivariance) and its model-free geometry (`sg3probe_rotation.geometry`)."""
import sg3probe


@sg3probe.hookimpl
def register_analyzers(register):
    from sg3probe_rotation.analyzer import Rotation

    register(Rotation)
