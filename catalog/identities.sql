-- Identities and grants, kept in the same DuckDB catalog as the datasets (identities.py writes
-- them; store.py loads this file when it opens a catalog). Uniqueness (user, group, key id, grant)
-- is kept by identities.py inside transactions, like schema.sql, without index constraints.
-- Secrets are never stored: passwords as scrypt hashes with their salt and parameters, API keys
-- as the sha256 of the (256-bit random) token.

CREATE TABLE IF NOT EXISTS users (
    name           VARCHAR,
    password_hash  VARCHAR,      -- 'scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>'
    created_at     DOUBLE,       -- seconds since the epoch
    password_at    DOUBLE        -- last password change: bearer tokens issued before it are refused
);

CREATE TABLE IF NOT EXISTS groups (
    name        VARCHAR,
    created_at  DOUBLE
);

CREATE TABLE IF NOT EXISTS group_members (
    group_name  VARCHAR,
    user_name   VARCHAR
);

CREATE TABLE IF NOT EXISTS api_keys (
    key_id      VARCHAR,      -- short public id, shown by `keys list`, used by `keys revoke`
    user_name   VARCHAR,
    token_hash  VARCHAR,      -- hex sha256 of the whole token
    label       VARCHAR,
    created_at  DOUBLE,
    expires_at  DOUBLE,       -- NULL: never
    revoked_at  DOUBLE        -- NULL: valid
);

-- `permission` on datasets whose name matches the shell glob `pattern`, for one principal.
CREATE TABLE IF NOT EXISTS grants (
    pattern     VARCHAR,
    kind        VARCHAR,      -- 'user' | 'group' | 'public'
    principal   VARCHAR,      -- user or group name; '' for public
    permission  VARCHAR,      -- 'read'
    created_at  DOUBLE
);
