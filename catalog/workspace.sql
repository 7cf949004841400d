-- Workspace datasets (flight_server/workspace): one row per dataset a user wrote under
-- home/<user>/, next to its files/datasets rows. store.py loads this file when it opens a
-- catalog (IF NOT EXISTS, so older catalogs gain it) and writes it in the same transaction
-- as the dataset, so a dataset row never exists without its provenance, nor the reverse.
CREATE TABLE IF NOT EXISTS workspace (
    name            VARCHAR,
    owner           VARCHAR,
    kind            VARCHAR,      -- 'upload' | 'derived' | 'skim' | 'materialized'
    path            VARCHAR,      -- the Parquet file, relative to the served root
    bytes           BIGINT,
    parent          VARCHAR,
    parent_version  VARCHAR,
    base            VARCHAR,
    cut             VARCHAR,
    columns         VARCHAR[],
    created_at      DOUBLE,
    version         VARCHAR,
    metadata        JSON,
    id              VARCHAR,      -- stays with the dataset through renames and replaces
    parent_id       VARCHAR       -- the parent's id when the parent is a workspace dataset
);
-- catalogs written before ids: the rows gain them (NULL: lineage falls back to names)
ALTER TABLE workspace ADD COLUMN IF NOT EXISTS id VARCHAR;
ALTER TABLE workspace ADD COLUMN IF NOT EXISTS parent_id VARCHAR;

-- What was deleted, and when: lineage says "deleted on DATE" for a parent that is gone.
CREATE TABLE IF NOT EXISTS workspace_removed (
    id          VARCHAR,
    name        VARCHAR,      -- its name when it was deleted
    kind        VARCHAR,
    owner       VARCHAR,
    removed_at  DOUBLE
);
