-- smartlaunch schema, version 1.  Portable SQL: SQLite today, PostgreSQL with the same text.

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    rsa_pkcs8    BLOB NOT NULL,
    hmac_secret  BLOB NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE clients (
    client_id    TEXT PRIMARY KEY,
    metadata     TEXT NOT NULL,
    secret_hash  TEXT,
    created_at   BIGINT NOT NULL
);

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    fhir_user      TEXT NOT NULL,
    display_name   TEXT NOT NULL
);

CREATE TABLE sessions (
    id_hash     TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    csrf        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE TABLE pending_authorizations (
    id          TEXT PRIMARY KEY,
    request     TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE TABLE consents (
    user_id     TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

CREATE TABLE authorization_codes (
    code_hash   TEXT PRIMARY KEY,
    grant_id    TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    data        TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);

CREATE TABLE grants (
    id                  TEXT PRIMARY KEY,
    client_id           TEXT NOT NULL,
    user_id             TEXT NOT NULL,
    fhir_user           TEXT NOT NULL,
    scope               TEXT NOT NULL,
    patient             TEXT,
    encounter           TEXT,
    session_id          TEXT,
    refresh_expires_at  BIGINT,
    created_at          BIGINT NOT NULL,
    revoked_at          BIGINT
);
CREATE INDEX grants_client ON grants (client_id);
CREATE INDEX grants_user ON grants (user_id, client_id);

-- Revoked grants, including grants that were never stored because they issued no refresh
-- token (a replayed code revokes those too).  The resource server's revocation list is filled
-- from here at start.
CREATE TABLE revocations (
    grant_id    TEXT PRIMARY KEY,
    revoked_at  BIGINT NOT NULL
);
CREATE INDEX revocations_revoked_at ON revocations (revoked_at);

-- "Revoke access" from the management page: every token a user gave a client until revoked_at.
CREATE TABLE access_revocations (
    user_id     TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    revoked_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    grant_id    TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);

-- FHIR resources: the current version of each (a deleted one keeps its row, deleted = 1, and
-- content = ''), every version in resource_versions, and the patient compartments it is in.
CREATE TABLE resources (
    resource_type  TEXT NOT NULL,
    id             TEXT NOT NULL,
    version_id     BIGINT NOT NULL,
    last_updated   TEXT NOT NULL,
    deleted        INTEGER NOT NULL DEFAULT 0,
    sort_key       TEXT,
    content        TEXT NOT NULL,
    PRIMARY KEY (resource_type, id)
);
CREATE INDEX resources_sort ON resources (resource_type, sort_key);

CREATE TABLE resource_versions (
    resource_type  TEXT NOT NULL,
    id             TEXT NOT NULL,
    version_id     BIGINT NOT NULL,
    last_updated   TEXT NOT NULL,
    deleted        INTEGER NOT NULL DEFAULT 0,
    content        TEXT NOT NULL,
    PRIMARY KEY (resource_type, id, version_id)
);

CREATE TABLE resource_compartments (
    patient_id     TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    id             TEXT NOT NULL,
    PRIMARY KEY (patient_id, resource_type, id)
);
CREATE INDEX resource_compartments_resource ON resource_compartments (resource_type, id);

-- The search index: one row per indexed value of a search parameter (see smartlaunch-fhir's
-- search::params).  Columns by kind: token (system, code), string (value_text folded,
-- value_exact), date (date_low, date_high: Unix seconds, inclusive), reference (ref_type,
-- ref_id), quantity (value_num, system, code).
CREATE TABLE search_index (
    resource_type  TEXT NOT NULL,
    id             TEXT NOT NULL,
    param          TEXT NOT NULL,
    system         TEXT,
    code           TEXT,
    value_text     TEXT,
    value_exact    TEXT,
    date_low       BIGINT,
    date_high      BIGINT,
    ref_type       TEXT,
    ref_id         TEXT,
    value_num      DOUBLE PRECISION
);
-- Partial indexes: each row sits only in the index of its kind (absent columns are NULL).
CREATE INDEX search_index_resource ON search_index (resource_type, id, param);
CREATE INDEX search_index_token ON search_index (resource_type, param, code, system) WHERE code IS NOT NULL;
CREATE INDEX search_index_string ON search_index (resource_type, param, value_text) WHERE value_text IS NOT NULL;
CREATE INDEX search_index_date ON search_index (resource_type, param, date_low) WHERE date_low IS NOT NULL;
CREATE INDEX search_index_reference ON search_index (resource_type, param, ref_id) WHERE ref_id IS NOT NULL;
