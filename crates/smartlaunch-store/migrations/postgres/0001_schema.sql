-- smartlaunch schema for PostgreSQL, version 1: the end state of SQLite migrations 0001–0008
-- (crates/smartlaunch-store/migrations/), table for table and index for index, so that every
-- statement the two backends share means the same on both.  docs/DESIGN.md "PostgreSQL".
--
-- Types: times are Unix seconds (BIGINT), as on SQLite; FHIR `lastUpdated` stays the instant
-- text that is served (it is compared as text, which its fixed format makes chronological).
-- Every text column is COLLATE "C": bytewise order and equality, as SQLite's BINARY collation,
-- whatever the database's locale — ids, sort keys and search values sort the same on both
-- backends, and a `LIKE 'prefix%'` can use a plain B-tree index.  JSON documents are TEXT:
-- they are stored and served as text and never queried inside, except by the two expression
-- indexes on launches below.
--
-- UNLOGGED tables (not written to the WAL: no fsync per commit, lost after a crash and absent
-- on a streaming replica) hold only state whose loss fails closed and costs at most a retry:
--   pending_authorizations — an authorization in progress (the user starts again);
--   authorization_codes    — ≤ 60 s codes (the app starts the launch again; a lost used-code
--                            marker makes a replay "unknown", still refused);
--   launch_events, launch_traces — the launch inspector's trace (a debugging aid).
-- Kept LOGGED on purpose: client_assertion_jtis (a truncated replay store would accept a
-- captured private_key_jwt assertion again within its lifetime: a security check must
-- survive a crash), sessions (a crash must not sign everyone out; online_access grants end with
-- them), launches (single use, and the EHR's list of a user's launches), and everything else.
-- SQLite's purge deletes expired codes and pending requests as a prefix by rowid; PostgreSQL
-- has no rowid, so those UNLOGGED tables index their expiry (cheap: an unlogged index).

CREATE TABLE signing_keys (
    kid          TEXT COLLATE "C" PRIMARY KEY,
    rsa_pkcs8    BYTEA NOT NULL,
    hmac_secret  BYTEA NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE clients (
    client_id                TEXT COLLATE "C" PRIMARY KEY,
    metadata                 TEXT NOT NULL,
    secret_hash              TEXT COLLATE "C",
    created_at               BIGINT NOT NULL,
    -- RFC 7592: the hash of the registration access token.
    registration_token_hash  TEXT COLLATE "C"
);

CREATE TABLE users (
    id             TEXT COLLATE "C" PRIMARY KEY,
    username       TEXT COLLATE "C" NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    fhir_user      TEXT COLLATE "C" NOT NULL,
    display_name   TEXT COLLATE "C" NOT NULL
);

CREATE TABLE sessions (
    id_hash     TEXT COLLATE "C" PRIMARY KEY,
    user_id     TEXT COLLATE "C" NOT NULL,
    csrf        TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE UNLOGGED TABLE pending_authorizations (
    id          TEXT COLLATE "C" PRIMARY KEY,
    request     TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX pending_authorizations_expires_at ON pending_authorizations (expires_at);

CREATE TABLE consents (
    user_id     TEXT COLLATE "C" NOT NULL,
    client_id   TEXT COLLATE "C" NOT NULL,
    scope       TEXT COLLATE "C" NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

CREATE UNLOGGED TABLE authorization_codes (
    code_hash   TEXT COLLATE "C" PRIMARY KEY,
    grant_id    TEXT COLLATE "C" NOT NULL,
    client_id   TEXT COLLATE "C" NOT NULL,
    data        TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX authorization_codes_expires_at ON authorization_codes (expires_at);

CREATE TABLE grants (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    client_id           TEXT COLLATE "C" NOT NULL,
    user_id             TEXT COLLATE "C" NOT NULL,
    fhir_user           TEXT COLLATE "C" NOT NULL,
    scope               TEXT COLLATE "C" NOT NULL,
    patient             TEXT COLLATE "C",
    encounter           TEXT COLLATE "C",
    session_id          TEXT COLLATE "C",
    refresh_expires_at  BIGINT,
    created_at          BIGINT NOT NULL,
    revoked_at          BIGINT,
    -- fhirContext, intent, tenant, need_patient_banner, smart_style_url as JSON (NULL: none).
    context             TEXT,
    -- A failure the developer launcher asked for after the code (snake_case; NULL: none).
    simulate_error      TEXT COLLATE "C",
    -- The FHIR base the grant's tokens are for (NULL: the server's own).
    aud                 TEXT COLLATE "C",
    -- The launch inspector's key of the launch the grant came from.
    trace               TEXT COLLATE "C"
);
CREATE INDEX grants_client ON grants (client_id);
CREATE INDEX grants_user ON grants (user_id, client_id);

-- Revoked grants, including grants never stored because they issued no refresh token.
CREATE TABLE revocations (
    grant_id    TEXT COLLATE "C" PRIMARY KEY,
    revoked_at  BIGINT NOT NULL
);
CREATE INDEX revocations_revoked_at ON revocations (revoked_at);

-- "Revoke access" from the management page: every token a user gave a client until revoked_at.
CREATE TABLE access_revocations (
    user_id     TEXT COLLATE "C" NOT NULL,
    client_id   TEXT COLLATE "C" NOT NULL,
    revoked_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

CREATE TABLE refresh_tokens (
    token_hash  TEXT COLLATE "C" PRIMARY KEY,
    grant_id    TEXT COLLATE "C" NOT NULL,
    client_id   TEXT COLLATE "C" NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);

-- FHIR resources: the current version of each (a deleted one keeps its row, deleted, and
-- content = ''), every version in resource_versions, and the patient compartments it is in.
CREATE TABLE resources (
    resource_type  TEXT COLLATE "C" NOT NULL,
    id             TEXT COLLATE "C" NOT NULL,
    version_id     BIGINT NOT NULL,
    last_updated   TEXT COLLATE "C" NOT NULL,
    deleted        BOOLEAN NOT NULL DEFAULT FALSE,
    sort_key       TEXT COLLATE "C",
    content        TEXT NOT NULL,
    PRIMARY KEY (resource_type, id)
);
CREATE INDEX resources_sort ON resources (resource_type, sort_key);
-- An export's snapshot and `_since`.
CREATE INDEX resources_last_updated ON resources (resource_type, last_updated);

CREATE TABLE resource_versions (
    resource_type  TEXT COLLATE "C" NOT NULL,
    id             TEXT COLLATE "C" NOT NULL,
    version_id     BIGINT NOT NULL,
    last_updated   TEXT COLLATE "C" NOT NULL,
    deleted        BOOLEAN NOT NULL DEFAULT FALSE,
    content        TEXT NOT NULL,
    PRIMARY KEY (resource_type, id, version_id)
);

CREATE TABLE resource_compartments (
    patient_id     TEXT COLLATE "C" NOT NULL,
    resource_type  TEXT COLLATE "C" NOT NULL,
    id             TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (patient_id, resource_type, id)
);
CREATE INDEX resource_compartments_resource ON resource_compartments (resource_type, id);

-- The search index: one row per indexed value of a search parameter.  Columns by kind: token
-- (system, code), string (value_text folded, value_exact), date (date_low, date_high: Unix
-- seconds, inclusive), reference (ref_type, ref_id), quantity (value_num, system, code).
CREATE TABLE search_index (
    resource_type  TEXT COLLATE "C" NOT NULL,
    id             TEXT COLLATE "C" NOT NULL,
    param          TEXT COLLATE "C" NOT NULL,
    system         TEXT COLLATE "C",
    code           TEXT COLLATE "C",
    value_text     TEXT COLLATE "C",
    value_exact    TEXT COLLATE "C",
    date_low       BIGINT,
    date_high      BIGINT,
    ref_type       TEXT COLLATE "C",
    ref_id         TEXT COLLATE "C",
    value_num      DOUBLE PRECISION
);
-- Partial indexes: each row sits only in the index of its kind (absent columns are NULL).
CREATE INDEX search_index_resource ON search_index (resource_type, id, param);
CREATE INDEX search_index_token ON search_index (resource_type, param, code, system) WHERE code IS NOT NULL;
CREATE INDEX search_index_string ON search_index (resource_type, param, value_text) WHERE value_text IS NOT NULL;
CREATE INDEX search_index_date ON search_index (resource_type, param, date_low) WHERE date_low IS NOT NULL;
CREATE INDEX search_index_reference ON search_index (resource_type, param, ref_id) WHERE ref_id IS NOT NULL;

-- An EHR launch, by the hash of its opaque id; `data` is the launch as JSON; `used_at` is set
-- by the one authorization that may use it.
CREATE TABLE launches (
    id_hash     TEXT COLLATE "C" PRIMARY KEY,
    client_id   TEXT COLLATE "C" NOT NULL,
    data        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX launches_expires_at ON launches (expires_at);
CREATE INDEX launches_created_at ON launches (created_at);
-- The inspector finds a launch by trace id; the EHR chart lists a user's own launches.
-- (SQLite: json_extract(data, '$.trace_id'); queries must use these same expressions.)
CREATE INDEX launches_trace ON launches (((data::jsonb ->> 'trace_id') COLLATE "C"));
CREATE INDEX launches_user ON launches (((data::jsonb ->> 'user_id') COLLATE "C"), created_at);

-- The launch inspector: each request an app made during a launch, in order (secrets masked).
CREATE UNLOGGED TABLE launch_events (
    seq       BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    trace_id  TEXT COLLATE "C" NOT NULL,
    at        BIGINT NOT NULL,
    event     TEXT NOT NULL
);
CREATE INDEX launch_events_trace ON launch_events (trace_id, seq);
CREATE INDEX launch_events_at ON launch_events (at);

-- Per inspector trace: events ever recorded and the time of the newest.
CREATE UNLOGGED TABLE launch_traces (
    trace_id  TEXT COLLATE "C" PRIMARY KEY,
    recorded  BIGINT NOT NULL,
    last_at   BIGINT NOT NULL
);
CREATE INDEX launch_traces_last_at ON launch_traces (last_at);

-- private_key_jwt replay store: each (client, jti) accepted once while its assertion is valid.
CREATE TABLE client_assertion_jtis (
    client_id   TEXT COLLATE "C" NOT NULL,
    jti_hash    TEXT COLLATE "C" NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti_hash)
);
CREATE INDEX client_assertion_jtis_expiry ON client_assertion_jtis (expires_at);

-- FHIR Bulk Data export jobs.  status: active (queued or running), completed, failed.
CREATE TABLE export_jobs (
    id                TEXT COLLATE "C" PRIMARY KEY,
    client_id         TEXT COLLATE "C" NOT NULL,
    request_url       TEXT NOT NULL,
    spec              TEXT NOT NULL,
    status            TEXT COLLATE "C" NOT NULL,
    transaction_time  TEXT COLLATE "C" NOT NULL,
    progress          TEXT NOT NULL,
    outcome           TEXT,
    error             TEXT,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL
);
CREATE INDEX export_jobs_client ON export_jobs (client_id, status);
CREATE INDEX export_jobs_expires ON export_jobs (expires_at);

-- The developer launcher's backend-service sessions, at most one per client.
CREATE TABLE backend_sessions (
    client_id       TEXT COLLATE "C" PRIMARY KEY,
    trace_id        TEXT COLLATE "C" NOT NULL,
    simulate_error  TEXT COLLATE "C",
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX backend_sessions_expires_at ON backend_sessions (expires_at);
CREATE INDEX backend_sessions_created_at ON backend_sessions (created_at);

-- The developer launcher's permanent launch links (id kept as a hash; `form` URL-encoded).
CREATE TABLE launch_links (
    id_hash     TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    form        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX launch_links_created_at ON launch_links (created_at);

-- A client's "trace this app's next launches" switch, on until `expires_at`.
CREATE TABLE trace_switches (
    client_id   TEXT COLLATE "C" PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);

-- Launches made by hand that a switch traced.
CREATE TABLE hand_traces (
    trace_id    TEXT COLLATE "C" PRIMARY KEY,
    client_id   TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX hand_traces_created_at ON hand_traces (created_at);
