"""Datasets that span many files: one table, one schema, one global entry numbering.

Two kinds are derived from the catalog after every indexing run (no data file is opened:
each member's schema, entries and boundaries come from its single-file dataset):

* **declared** datasets, from an optional ``arrowroot.toml`` in the served directory::

      folder_datasets = true                # default; false turns the folder rule off

      [[dataset]]
      name = "l200/dsp"                     # what clients ask for
      files = "lh5/**/*-tier_dsp.lh5"       # glob over paths relative to the served directory
      object = "ch{ch}/dsp"                 # object in each file; {ch} = one table per channel
      keys = "{exp}-{period}-{run}-{type}-{timestamp}-tier_{tier}.lh5"   # optional
      channel_column = "channel"            # optional, the column holding the channel id
      [dataset.types]                       # optional: key types (int, float, str, timestamp)
      run = "int"

* **folder** datasets: two or more files directly in one folder, with the same extension
  and format, holding an object of the same path and kind, are offered together as
  ``<folder>/*<ext>:<object>`` (``*.root:events`` at the top level), besides the
  per-file datasets. Members are in natural path order (``f2`` before ``f10``).

Declared members are ordered by their file keys (in template order), then path, then
channel. Columns are the union over members; a column missing from some members or whose
type differs is *schema drift*: it is recorded in the dataset's ``schema_drift``
attribute and the indexer report. Integer/float types are widened (int32+int64 → int64,
int+float → float64, float32+float64 → float64, likewise inside lists); other
differences make the column unreadable with the reason.

At read time (``select``): ``ReadRequest.files`` filters members by key, ``channels``
picks per-channel tables, and ``entry_start``/``entry_stop`` count entries of that
selection (the table the request describes). The ``entry`` column of
``with_entry_numbers`` is the dataset-wide global entry number. Requesting a column that
some selected member lacks fails (naming the column and a file) unless ``allow_missing``,
which fills it with nulls.
"""
