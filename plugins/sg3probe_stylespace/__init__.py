"""Built-in plugin: the `stylespace` analyzer (Wu et al. 2021): locally-active and attribute-specific
style channels, single-channel edits and their locality.

`gradients` computes gradient maps of style channels (batched Jacobian products, chunked, resumable);
`localization` holds the pure numpy rules (overlap score, frequency, localization, relevance).
"""
import sg3probe


@sg3probe.hookimpl
def register_analyzers(register):
    from sg3probe_stylespace.analyzer import StyleSpace

    register(StyleSpace)
