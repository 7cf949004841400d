"""Workspaces: datasets users write under ``home/<user>/`` (uploads, derived columns, skims).

``names`` says what a workspace name is and who owns it, ``store`` writes the bytes
(temp file + rename, quotas) and registers them in the catalog, ``overlay`` reads derived
columns and skims together with their parent's files. Nothing here knows Flight.
"""
