-- Issue 8: the developer launcher's backend-service sessions.  At most one per client (a new
-- one replaces it); the token endpoint reads it with the client, in the same query, so a
-- client without one costs nothing more.  `simulate_error` is a backend simulated error's
-- snake_case name (NULL: none).
CREATE TABLE backend_sessions (
    client_id       TEXT PRIMARY KEY,
    trace_id        TEXT NOT NULL,
    simulate_error  TEXT,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX backend_sessions_expires_at ON backend_sessions (expires_at);
CREATE INDEX backend_sessions_created_at ON backend_sessions (created_at);
