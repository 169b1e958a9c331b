"""Built-in plugin: closed-form edit directions, found without any labels, and what each one edits.

- `sefa` (Shen & Zhou, "Closed-Form Factorization of Latent Semantics in GANs"): the eigenvectors of the
  style affines' weights, A A^T with A = [W_l^T ...], for the synthesis layers and, apart, for the input
  affine (which carries the geometry).
- `ganspace` (Haerkoenen et al., "GANSpace"): the principal components of W over many mapped samples.

`directions` holds the pure numpy / scikit-learn part; both analyzers measure what each direction
changes with the run's scorer and save it as a direction file that `sg3probe edit` applies.
"""
import sg3probe


@sg3probe.hookimpl
def register_analyzers(register):
    from sg3probe_closedform.analyzer import GANSpace, SeFa

    register(SeFa)
    register(GANSpace)
