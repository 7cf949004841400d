-- The arrowroot catalog. One DuckDB file per served directory; store.py owns the connection.
-- Ids come from sequences; uniqueness (paths, names) is kept by store.py inside transactions,
-- without index constraints, which DuckDB checks too eagerly on delete+insert in one transaction.

CREATE SEQUENCE IF NOT EXISTS file_ids START 1;
CREATE SEQUENCE IF NOT EXISTS dataset_ids START 1;

CREATE TABLE IF NOT EXISTS meta (
    key   VARCHAR,
    value VARCHAR
);

-- One row per file seen under the served root.
CREATE TABLE IF NOT EXISTS files (
    file_id     BIGINT,
    path        VARCHAR,      -- relative to the served root, with '/'
    format      VARCHAR,      -- 'root' | 'hdf5' | ... ; NULL when not recognised
    size        BIGINT,
    mtime       DOUBLE,       -- seconds since the epoch
    status      VARCHAR,      -- 'ok' | 'error'
    error       VARCHAR,      -- why the file could not be indexed
    indexed_at  TIMESTAMP,
    keys        JSON          -- file keys parsed from the name (multi-file datasets)
);

-- One row per dataset a client can name.
CREATE TABLE IF NOT EXISTS datasets (
    dataset_id  BIGINT,
    name        VARCHAR,      -- '<path>:<object path>'
    kind        VARCHAR,      -- 'ttree' | 'rntuple' | 'hdf5.dataset' | 'hdf5.table' | 'hdf5.compound' | ...
    format      VARCHAR,
    entries     BIGINT,
    schema      BLOB,         -- serialised Arrow schema of the readable columns
    attributes  JSON,
    origin      VARCHAR       -- 'file' (one object in one file) | 'folder' | 'declared'
);

-- Where a dataset's entries live: one part per file (one for single-file datasets).
-- Levels (several tiers) also hold "links": the other tiers' parts, each with the tier's name and
-- the part_index of the row part it is aligned with.
CREATE TABLE IF NOT EXISTS dataset_parts (
    dataset_id   BIGINT,
    part_index   INTEGER,     -- parts in global entry order (links: the row part's index)
    file_id      BIGINT,
    object_path  VARCHAR,
    entry_offset BIGINT,      -- global entry number of the part's first entry
    entries      BIGINT,
    boundaries   BIGINT[],    -- local first entries of clusters/chunks
    channel      VARCHAR,     -- per-channel tables: the channel id
    tier         VARCHAR      -- levels: NULL for row parts, the tier's name for links
);
-- catalogs written before levels existed gain the column
ALTER TABLE dataset_parts ADD COLUMN IF NOT EXISTS tier VARCHAR;

-- Every column of every dataset, readable or not.
CREATE TABLE IF NOT EXISTS columns (
    dataset_id         BIGINT,
    position           INTEGER,
    name               VARCHAR,
    arrow_type         VARCHAR,
    source_type        VARCHAR,
    shape              BIGINT[],
    compressed_bytes   BIGINT,
    uncompressed_bytes BIGINT,
    readable           BOOLEAN,
    reason             VARCHAR
);

-- Zone maps: per column, per zone (cluster, chunk, row block) of one object in one file, what the
-- values are bounded by (flight_server/core/zones.py). Cut planning skips zones no entry of which can
-- pass; SQL answers count/min/max from them. Rows go with their file (file_id changes on re-index).
CREATE TABLE IF NOT EXISTS zone_maps (
    file_id      BIGINT,
    object_path  VARCHAR,
    column_name  VARCHAR,
    starts       BIGINT[],    -- local entries [starts[i], stops[i]) of zone i
    stops        BIGINT[],
    mins         DOUBLE[],    -- over non-null, non-NaN values (lists: elements); NULL: none
    maxs         DOUBLE[],
    nulls        BIGINT[],    -- null entries (lists: null lists)
    nans         BIGINT[],
    value_nulls  BIGINT[],    -- lists: null elements
    min_lens     BIGINT[],    -- lists: shortest / longest non-null list
    max_lens     BIGINT[],
    exact        BOOLEAN[]    -- mins/maxs are the values (not integers rounded outward to a float)
);
