"""Exports: record batches → the files users' other tools read (Arrow, Parquet, CSV, HDF5,
ROOT, TIFF). One place for the encoders, shared by the HTTP download and ``arrowroot get``."""
