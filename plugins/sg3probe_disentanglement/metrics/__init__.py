"""Disentanglement metrics of a latent space: DCI, MIG and SAP, and the StyleSpace protocol.

Pure numpy / scikit-learn; the formulas and constants are those of section 3 of
shared/specs/analyses.md (canonical form: disentanglement_lib). One module per metric (`dci`,
`mig`, `sap`), the StyleSpace protocol in `protocol`, result types and input checks in `inputs`.
Shapes:

    codes    [samples, codes]       a latent space flattened (Z, W, W+ as 16*512, S)
    factors  [samples, factors]     discrete labels (binary in the StyleSpace protocol)
    scores   [samples, attributes]  attribute logits or continuous values, before selection

Two ways to feed the metrics:

- Shared samples: `dci`, `mig`, `sap` learn every factor from the same samples.
- Per-attribute subsets (the StyleSpace protocol): `select_attribute_subsets` picks each
  attribute's own extreme samples and train/test split from the scores alone; then
  `dci_per_attribute_subsets`, `mig_per_attribute_subsets` and `sap_per_attribute_subsets`
  learn factor j from attribute j's samples only. Because the selection does not look at the
  codes, one selection serves every space, and Z, W, W+ and S are scored on the same samples.
"""
from sg3probe_disentanglement.metrics.dci import dci, disentanglement_completeness
from sg3probe_disentanglement.metrics.inputs import (AttributeSubsets, DCIResult, DisentanglementCompleteness,
                                                     MetricInputError, MIGResult, SAPResult)
from sg3probe_disentanglement.metrics.mig import mig
from sg3probe_disentanglement.metrics.protocol import (dci_per_attribute_subsets, mig_per_attribute_subsets,
                                                       sap_per_attribute_subsets, select_attribute_subsets)
from sg3probe_disentanglement.metrics.sap import sap

__all__ = [
    "MetricInputError",
    "DisentanglementCompleteness",
    "DCIResult",
    "MIGResult",
    "SAPResult",
    "AttributeSubsets",
    "disentanglement_completeness",
    "dci",
    "mig",
    "sap",
    "select_attribute_subsets",
    "dci_per_attribute_subsets",
    "mig_per_attribute_subsets",
    "sap_per_attribute_subsets",
]
