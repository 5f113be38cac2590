-- Issue 9, the inspector that teaches.
--
-- The inspector's summary finds a launch by its trace id, and the EHR chart lists a user's own
-- launches: both are kept in the launch's JSON, indexed by expression (no new column to fill).
CREATE INDEX launches_trace ON launches (json_extract(data, '$.trace_id'));
CREATE INDEX launches_user ON launches (json_extract(data, '$.user_id'), created_at);

-- A client's "trace this app's next launches" switch, on until `expires_at`.  Read with the
-- client (the same query as its backend session), so a client without one costs nothing more.
CREATE TABLE trace_switches (
    client_id   TEXT PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);

-- Launches made by hand (no launcher, no launch API) that a switch traced, for the launcher's
-- list and the inspector's summary.
CREATE TABLE hand_traces (
    trace_id    TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX hand_traces_created_at ON hand_traces (created_at);
