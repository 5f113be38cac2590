-- smartlaunch schema, version 3: bounded data (issue 7).
--
-- No index on the expiry of codes, pending requests or inspector events: one more index on
-- the code table cost a fifth of the launch throughput (each launch writes a code).  Those rows
-- are written in time order, so housekeeping deletes the expired prefix by rowid instead
-- (smartlaunch-store/src/auth.rs `purge_expired`).

-- Per launch inspector trace: how many events were ever recorded (kept, trimmed by the cap,
-- purged by age or dropped under overload) and the time of the newest.  The inspector shows
-- recorded minus kept as "dropped".
CREATE TABLE launch_traces (
    trace_id  TEXT PRIMARY KEY,
    recorded  BIGINT NOT NULL,
    last_at   BIGINT NOT NULL
);
CREATE INDEX launch_traces_last_at ON launch_traces (last_at);
