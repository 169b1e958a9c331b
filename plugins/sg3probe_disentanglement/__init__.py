"""Built-in plugin: the `disentanglement` analyzer (DCI, MIG, SAP across Z, W, W+ and S)."""
import sg3probe


@sg3probe.hookimpl
def register_analyzers(register):
    from sg3probe_disentanglement.analyzer import Disentanglement

    register(Disentanglement)
