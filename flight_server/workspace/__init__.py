"""Workspaces: datasets users write under ``home/<user>/`` (uploads, derived columns, skims).

``names`` says what a workspace name is and who owns it; ``upload`` writes one file (temp file +
rename); ``store`` checks quotas and names and registers files in the catalog; ``overlays`` says
what a derived-column or skim file records about its base; ``lineage`` follows provenance;
``types`` says what Parquet can hold. ``sources/overlay.py`` reads overlays with their parent's
files. Nothing here knows Flight.
"""
