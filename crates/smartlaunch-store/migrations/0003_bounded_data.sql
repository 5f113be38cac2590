-- smartlaunch schema, version 3: bounded data (issue 7).  Housekeeping deletes by expiry, so
-- each expiry gets an index (a purge must not scan the table on the one writer connection).

CREATE INDEX authorization_codes_expires_at ON authorization_codes (expires_at);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX pending_authorizations_expires_at ON pending_authorizations (expires_at);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);
CREATE INDEX launch_events_at ON launch_events (at);

-- Per launch inspector trace: how many events were ever recorded (kept, trimmed by the cap,
-- purged by age or dropped under overload) and the time of the newest.  The inspector shows
-- recorded minus kept as "dropped".
CREATE TABLE launch_traces (
    trace_id  TEXT PRIMARY KEY,
    recorded  BIGINT NOT NULL,
    last_at   BIGINT NOT NULL
);
CREATE INDEX launch_traces_last_at ON launch_traces (last_at);
