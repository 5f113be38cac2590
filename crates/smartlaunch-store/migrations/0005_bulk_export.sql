-- smartlaunch schema, version 5: FHIR Bulk Data export jobs (issue 8, item 4).
--
-- A job's files live in {data_dir}/exports/{id}/; the row is the job's state.  status:
-- active (queued or running), completed, failed.  expires_at: when the job and its files are
-- deleted (a finished job an hour after it finished; an active one after a day, as stuck).
CREATE TABLE export_jobs (
    id                TEXT PRIMARY KEY,
    client_id         TEXT NOT NULL,
    request_url       TEXT NOT NULL,
    spec              TEXT NOT NULL,
    status            TEXT NOT NULL,
    transaction_time  TEXT NOT NULL,
    progress          TEXT NOT NULL,
    outcome           TEXT,
    error             TEXT,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL
);
CREATE INDEX export_jobs_client ON export_jobs (client_id, status);
CREATE INDEX export_jobs_expires ON export_jobs (expires_at);

-- An export is a snapshot at its transactionTime: the resources changed after it are found
-- through this index (and exported as the version they had then), and `_since` uses it too.
CREATE INDEX resources_last_updated ON resources (resource_type, last_updated);
