"""The SKOL application built on the component: the YEDDA reader, data sets, the journal text
Pipeline, the by-volume and cross-journal comparison, and the CRF baselines."""
