"""The built-in `disentanglement` analyzer: DCI (Eastwood & Williams), MIG and SAP of
StyleGAN3 latent spaces, with the attribute filter and percentile protocol of StyleSpace.

The metrics themselves, pure numpy/scikit-learn, are in `sg3probe_disentanglement.metrics`.
"""
