-- smartlaunch schema, version 2: EHR launches and the launch context of grants.

-- An EHR launch, by the hash of its opaque id.  `data` is the launch (client, user, session,
-- patient, encounter, further context) as JSON; `used_at` is set by the one authorization that
-- may use it.
CREATE TABLE launches (
    id_hash     TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX launches_expires_at ON launches (expires_at);
CREATE INDEX launches_created_at ON launches (created_at);

-- fhirContext, intent, tenant, need_patient_banner, smart_style_url as JSON (NULL: none).
ALTER TABLE grants ADD COLUMN context TEXT;
-- A failure the developer launcher asked for after the code (its snake_case name; NULL: none).
ALTER TABLE grants ADD COLUMN simulate_error TEXT;
-- The FHIR base the grant's tokens are for (NULL: the server's own).
ALTER TABLE grants ADD COLUMN aud TEXT;
-- The launch inspector's key of the launch the grant came from.
ALTER TABLE grants ADD COLUMN trace TEXT;

-- The launch inspector: each request an app made during a launch, in order (secrets masked).
CREATE TABLE launch_events (
    seq       INTEGER PRIMARY KEY,
    trace_id  TEXT NOT NULL,
    at        BIGINT NOT NULL,
    event     TEXT NOT NULL
);
CREATE INDEX launch_events_trace ON launch_events (trace_id, seq);
