//! [`InspectorStore`] on PostgreSQL: the launch inspector's events, launches by trace and by
//! user, trace switches and hand-made traces.
//!
//! An event is written at once, in one statement, not queued as on SQLite: a node's queue
//! would be invisible to the other nodes, and the port's contract is that a read sees every
//! event recorded before it, wherever it was recorded.  The statement counts the event and,
//! once the launch has more than [`MAX_EVENTS_PER_TRACE`], deletes its oldest, once every
//! [`TRIM_EVERY`] events (a trim walks the cap's worth of the launch's index: trimming at every
//! event over the cap made the sandbox launch loop three times slower than the signed-in one).
//! Reads take the newest [`MAX_EVENTS_PER_TRACE`], so the record never shows more, whatever
//! racing recorders on two connections leave over the cap until the next trim.

use smartlaunch_auth::inspect::{LaunchEvent, LaunchRecord};
use smartlaunch_auth::launch::Launch;
use smartlaunch_auth::retention::MAX_EVENTS_PER_TRACE;
use smartlaunch_auth::store::{HandTrace, InspectorStore, StoreResult};
use smartlaunch_auth::UnixTime;

use crate::auth_rows::{err, hand_trace_from_row, HandTraceRow, HAND_TRACE_COLUMNS};
use crate::events::TRIM_EVERY;
use crate::pg::PgDb;

/// Records an event (`$1` trace, `$2` at, `$3` event) and counts it; when the launch has
/// recorded more than `$4` (the cap) and its count is a multiple of `$5`, keeps its newest
/// `$4`: the new event, which this statement's snapshot does not see, and the newest `$4 - 1`
/// before it.
const RECORD_EVENT: &str = "WITH counted AS ( \
       INSERT INTO launch_traces (trace_id, recorded, last_at) VALUES ($1, 1, $2) \
       ON CONFLICT (trace_id) DO UPDATE SET recorded = launch_traces.recorded + 1, \
         last_at = GREATEST(launch_traces.last_at, excluded.last_at) \
       RETURNING recorded), \
     added AS (INSERT INTO launch_events (trace_id, at, event) VALUES ($1, $2, $3)) \
     DELETE FROM launch_events WHERE trace_id = $1 AND (SELECT recorded FROM counted) > $4 \
       AND (SELECT recorded FROM counted) % $5 = 0 \
       AND seq <= (SELECT seq FROM launch_events WHERE trace_id = $1 ORDER BY seq DESC LIMIT 1 OFFSET $4 - 1)";
/// A launch's newest `$2` events, oldest first, and how many it recorded, in one snapshot.
const RECORD: &str = "SELECT ARRAY(SELECT event FROM (SELECT seq, event FROM launch_events WHERE trace_id = $1 \
       ORDER BY seq DESC LIMIT $2) newest ORDER BY seq), \
     (SELECT recorded FROM launch_traces WHERE trace_id = $1)";
/// By the `launches_trace` and `launches_user` expression indexes (the same expressions).
const BY_TRACE: &str = "SELECT data FROM launches WHERE ((data::jsonb ->> 'trace_id') COLLATE \"C\") = $1 \
     ORDER BY created_at DESC LIMIT 1";
const BY_USER: &str = "SELECT data FROM launches WHERE ((data::jsonb ->> 'user_id') COLLATE \"C\") = $1 \
     ORDER BY created_at DESC LIMIT $2";
const SWITCH_ON: &str = "INSERT INTO trace_switches (client_id, expires_at) VALUES ($1, $2) \
     ON CONFLICT (client_id) DO UPDATE SET expires_at = excluded.expires_at";

impl InspectorStore for PgDb {
    async fn record_event(&self, trace: &str, event: &LaunchEvent) -> StoreResult<()> {
        sqlx::query(RECORD_EVENT)
            .bind(trace)
            .bind(event.at)
            .bind(serde_json::to_string(event).map_err(err)?)
            .bind(MAX_EVENTS_PER_TRACE)
            .bind(TRIM_EVERY)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn launch_by_trace(&self, trace: &str) -> StoreResult<Option<Launch>> {
        let row: Option<(String,)> =
            sqlx::query_as(BY_TRACE).bind(trace).fetch_optional(&self.pool).await.map_err(err)?;
        row.map(|(data,)| serde_json::from_str(&data).map_err(err)).transpose()
    }

    async fn user_launches(&self, user_id: &str, limit: i64) -> StoreResult<Vec<Launch>> {
        let rows: Vec<(String,)> =
            sqlx::query_as(BY_USER).bind(user_id).bind(limit).fetch_all(&self.pool).await.map_err(err)?;
        rows.into_iter().map(|(data,)| serde_json::from_str(&data).map_err(err)).collect()
    }

    async fn set_trace_switch(&self, client_id: &str, until: Option<UnixTime>) -> StoreResult<()> {
        match until {
            Some(until) => sqlx::query(SWITCH_ON).bind(client_id).bind(until),
            None => sqlx::query("DELETE FROM trace_switches WHERE client_id = $1").bind(client_id),
        }
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn trace_switches(&self, now: UnixTime) -> StoreResult<Vec<(String, UnixTime)>> {
        sqlx::query_as("SELECT client_id, expires_at FROM trace_switches WHERE expires_at > $1 ORDER BY client_id")
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(err)
    }

    async fn insert_hand_trace(&self, trace: &HandTrace) -> StoreResult<()> {
        sqlx::query(&format!("INSERT INTO hand_traces ({HAND_TRACE_COLUMNS}) VALUES ($1, $2, $3, $4)"))
            .bind(&trace.trace_id)
            .bind(&trace.client_id)
            .bind(trace.created_at)
            .bind(trace.expires_at)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn hand_trace(&self, trace_id: &str) -> StoreResult<Option<HandTrace>> {
        let row: Option<HandTraceRow> =
            sqlx::query_as(&format!("SELECT {HAND_TRACE_COLUMNS} FROM hand_traces WHERE trace_id = $1"))
                .bind(trace_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
        Ok(row.map(hand_trace_from_row))
    }

    async fn recent_hand_traces(&self, limit: i64) -> StoreResult<Vec<HandTrace>> {
        let rows: Vec<HandTraceRow> =
            sqlx::query_as(&format!("SELECT {HAND_TRACE_COLUMNS} FROM hand_traces ORDER BY created_at DESC LIMIT $1"))
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        Ok(rows.into_iter().map(hand_trace_from_row).collect())
    }

    async fn launch_events(&self, trace: &str) -> StoreResult<Vec<LaunchEvent>> {
        Ok(self.launch_record(trace).await?.events)
    }

    async fn launch_record(&self, trace: &str) -> StoreResult<LaunchRecord> {
        let (rows, recorded): (Vec<String>, Option<i64>) =
            sqlx::query_as(RECORD).bind(trace).bind(MAX_EVENTS_PER_TRACE).fetch_one(&self.pool).await.map_err(err)?;
        let events = rows
            .iter()
            .map(|json| serde_json::from_str(json).map_err(err))
            .collect::<StoreResult<Vec<LaunchEvent>>>()?;
        let dropped = recorded.map_or(0, |n| (n.max(0) as u64).saturating_sub(events.len() as u64));
        Ok(LaunchRecord { events, dropped })
    }
}
