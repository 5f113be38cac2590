//! The launch inspector's event log, written off the request path: requests put their events
//! on a bounded queue (never waiting: when it is full the event is dropped and counted), and one
//! task drains it in batches collected over up to [`LINGER`], each written by the group-commit
//! writer (in the transaction of the requests' own writes of that moment) and keeping every
//! launch within [`MAX_EVENTS_PER_TRACE`] events (the newest).  Reads flush the queue first, so
//! they see every event recorded before them.  Also the inspector's other records: launches by trace
//! and by user, the per-client trace switches and the hand-made launches they traced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use smartlaunch_auth::inspect::{LaunchEvent, LaunchRecord};
use smartlaunch_auth::launch::Launch;
use smartlaunch_auth::retention::MAX_EVENTS_PER_TRACE;
use smartlaunch_auth::store::HandTrace;
use smartlaunch_auth::UnixTime;
use tokio::sync::{mpsc, oneshot};

use crate::auth_rows::{hand_trace_from_row, HandTraceRow, HAND_TRACE_COLUMNS};
use crate::conn::{all, exec, one};
use crate::writer::Writer;
use crate::DbError;

/// Events waiting to be written; beyond this, new events are dropped (and counted).
const QUEUE_CAPACITY: usize = 4096;
/// The most events written in one transaction.
const BATCH: usize = 512;
/// How long the drain collects events before writing them.  Every write of events dirties the
/// same pages (the table's last page, the launches' places in the `(trace_id, seq)` index, their
/// counters), and each commit copies every dirty page into the WAL: written as they came, the
/// sandbox launch loop's three events per launch cost more than the launch's own writes.
/// Written every 50 ms, those pages are copied 20 times a second whatever the load.  Nobody
/// waits for it: a read of the events flushes the queue first, and an event is a debugging
/// aid, which a crash may lose (as the full queue drops it, and as PostgreSQL's `UNLOGGED`
/// table would).
const LINGER: std::time::Duration = std::time::Duration::from_millis(50);
/// Events a launch may hold beyond [`MAX_EVENTS_PER_TRACE`] between two trims: a trim walks
/// the cap's worth of the launch's index, so it runs once per this many events, not per batch;
/// reads show the newest [`MAX_EVENTS_PER_TRACE`] all the same.
pub(crate) const TRIM_EVERY: i64 = 64;
/// The most launches whose dropped events are counted between two batches (a bound on the
/// counter itself under a flood).
const MAX_OVERFLOW_TRACES: usize = 10_000;

enum Queued {
    Event(String, Box<LaunchEvent>),
    /// Answered once every event queued before it is committed.
    Flush(oneshot::Sender<()>),
}

/// Per launch, the events dropped because the queue was full.
type Overflow = Arc<Mutex<HashMap<String, u64>>>;

/// The queue's sending side, shared by every clone of the database handle.
#[derive(Debug)]
pub(crate) struct EventLog {
    tx: mpsc::Sender<Queued>,
    overflow: Overflow,
}

impl EventLog {
    /// Starts the task that drains the queue into `writer`.
    pub(crate) fn start(write: Arc<Writer>) -> EventLog {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let overflow = Overflow::default();
        tokio::spawn(drain(rx, write, overflow.clone()));
        EventLog { tx, overflow }
    }

    /// Queues an event without waiting; when the queue is full, drops it and counts it.
    pub(crate) fn record(&self, trace: &str, event: &LaunchEvent) {
        if let Err(e) = self.tx.try_send(Queued::Event(trace.to_owned(), Box::new(event.clone()))) {
            let mut overflow = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
            if overflow.len() < MAX_OVERFLOW_TRACES || overflow.contains_key(trace) {
                *overflow.entry(trace.to_owned()).or_default() += 1;
            }
            if matches!(e, mpsc::error::TrySendError::Closed(_)) {
                tracing::warn!("launch inspector: the event writer has stopped");
            }
        }
    }

    /// Waits until every event queued so far is committed.
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Queued::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// The draining task: collects events for up to [`LINGER`] after the first (or until
/// [`BATCH`] are queued, or a reader asks for a flush) and writes them in one job.
async fn drain(mut rx: mpsc::Receiver<Queued>, write: Arc<Writer>, overflow: Overflow) {
    while let Some(first) = rx.recv().await {
        let mut events = Vec::new();
        let mut flushes = Vec::new();
        let deadline = tokio::time::Instant::now() + LINGER;
        let mut next = Some(first);
        while let Some(item) = next {
            match item {
                Queued::Event(trace, event) => events.push((trace, *event)),
                Queued::Flush(done) => flushes.push(done),
            }
            next = if events.len() >= BATCH {
                None
            } else if !flushes.is_empty() {
                // A reader waits: take what is queued now and write it at once.
                rx.try_recv().ok()
            } else {
                tokio::time::timeout_at(deadline, rx.recv()).await.ok().flatten()
            };
        }
        let dropped = std::mem::take(&mut *overflow.lock().unwrap_or_else(|p| p.into_inner()));
        if !events.is_empty() || !dropped.is_empty() {
            let count = events.len();
            let batch = Arc::new((events, dropped));
            let written = write.write(move |conn| write_batch(conn, &batch.0, &batch.1)).await;
            if let Err(e) = written {
                tracing::warn!("launch inspector: {count} events not recorded: {e}");
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Inserts the events, counts them (and the dropped ones) per launch, and trims a launch to its
/// newest [`MAX_EVENTS_PER_TRACE`] events when its count passed the cap and another
/// [`TRIM_EVERY`] events (inside the writer's transaction).
fn write_batch(
    conn: &Connection,
    events: &[(String, LaunchEvent)],
    dropped: &HashMap<String, u64>,
) -> Result<(), DbError> {
    let mut per_trace: HashMap<&str, (u64, i64)> = HashMap::new();
    for (trace, n) in dropped {
        per_trace.entry(trace).or_default().0 += n;
    }
    for (trace, event) in events {
        let json = serde_json::to_string(event).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        exec(conn, "INSERT INTO launch_events (trace_id, at, event) VALUES (?, ?, ?)", &[trace, &event.at, &json])?;
        let entry = per_trace.entry(trace).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(event.at);
    }
    for (trace, (added, last_at)) in &per_trace {
        let added = *added as i64;
        let recorded: Option<(i64,)> = one(
            conn,
            "INSERT INTO launch_traces (trace_id, recorded, last_at) VALUES (?, ?, ?) ON CONFLICT (trace_id) \
             DO UPDATE SET recorded = recorded + excluded.recorded, last_at = MAX(last_at, excluded.last_at) \
             RETURNING recorded",
            &[trace, &added, last_at],
        )?;
        let recorded = recorded.map_or(added, |(n,)| n);
        let before = recorded - added;
        if recorded <= MAX_EVENTS_PER_TRACE || before / TRIM_EVERY == recorded / TRIM_EVERY {
            continue;
        }
        exec(
            conn,
            "DELETE FROM launch_events WHERE trace_id = $1 AND seq <= \
             (SELECT seq FROM launch_events WHERE trace_id = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2)",
            &[trace, &MAX_EVENTS_PER_TRACE],
        )?;
    }
    Ok(())
}

/// A launch's kept events, oldest first, and how many it recorded beyond them.
pub(crate) fn launch_record(
    conn: &Connection,
    trace: &str,
) -> rusqlite::Result<Result<LaunchRecord, serde_json::Error>> {
    let rows: Vec<(String,)> = all(
        conn,
        "SELECT event FROM (SELECT seq, event FROM launch_events WHERE trace_id = ? ORDER BY seq DESC LIMIT ?) \
         ORDER BY seq",
        &[&trace, &MAX_EVENTS_PER_TRACE],
    )?;
    let recorded: Option<(i64,)> = one(conn, "SELECT recorded FROM launch_traces WHERE trace_id = ?", &[&trace])?;
    let events =
        match rows.into_iter().map(|(json,)| serde_json::from_str(&json)).collect::<Result<Vec<LaunchEvent>, _>>() {
            Ok(events) => events,
            Err(e) => return Ok(Err(e)),
        };
    let dropped = recorded.map_or(0, |(n,)| (n.max(0) as u64).saturating_sub(events.len() as u64));
    Ok(Ok(LaunchRecord { events, dropped }))
}

/// The launch whose inspector key is `trace` (the `launches_trace` expression index).
pub(crate) fn launch_by_trace(
    conn: &Connection,
    trace: &str,
) -> rusqlite::Result<Result<Option<Launch>, serde_json::Error>> {
    let row: Option<(String,)> = one(
        conn,
        "SELECT data FROM launches WHERE json_extract(data, '$.trace_id') = ? ORDER BY created_at DESC LIMIT 1",
        &[&trace],
    )?;
    Ok(row.map(|(data,)| serde_json::from_str(&data)).transpose())
}

/// A user's newest launches, newest first (the `launches_user` expression index).
pub(crate) fn user_launches(
    conn: &Connection,
    user_id: &str,
    limit: i64,
) -> rusqlite::Result<Result<Vec<Launch>, serde_json::Error>> {
    let rows: Vec<(String,)> = all(
        conn,
        "SELECT data FROM launches WHERE json_extract(data, '$.user_id') = ? ORDER BY created_at DESC LIMIT ?",
        &[&user_id, &limit],
    )?;
    Ok(rows.into_iter().map(|(data,)| serde_json::from_str(&data)).collect())
}

/// Turns a client's trace switch on until `until`, or off.
pub(crate) async fn set_trace_switch(writer: &Writer, client_id: &str, until: Option<UnixTime>) -> Result<(), DbError> {
    let client_id = client_id.to_owned();
    writer
        .statement(move |conn| {
            match until {
                Some(until) => exec(
                    conn,
                    "INSERT INTO trace_switches (client_id, expires_at) VALUES (?, ?) \
                     ON CONFLICT (client_id) DO UPDATE SET expires_at = excluded.expires_at",
                    &[&client_id, &until],
                )?,
                None => exec(conn, "DELETE FROM trace_switches WHERE client_id = ?", &[&client_id])?,
            };
            Ok(())
        })
        .await
}

pub(crate) async fn insert_hand_trace(writer: &Writer, trace: &HandTrace) -> Result<(), DbError> {
    let t = trace.clone();
    writer
        .statement(move |conn| {
            exec(
                conn,
                &format!("INSERT INTO hand_traces ({HAND_TRACE_COLUMNS}) VALUES (?, ?, ?, ?)"),
                &[&t.trace_id, &t.client_id, &t.created_at, &t.expires_at],
            )?;
            Ok(())
        })
        .await
}

pub(crate) fn hand_trace(conn: &Connection, trace_id: &str) -> rusqlite::Result<Option<HandTrace>> {
    let sql = format!("SELECT {HAND_TRACE_COLUMNS} FROM hand_traces WHERE trace_id = ?");
    let row: Option<HandTraceRow> = one(conn, &sql, &[&trace_id])?;
    Ok(row.map(hand_trace_from_row))
}

pub(crate) fn recent_hand_traces(conn: &Connection, limit: i64) -> rusqlite::Result<Vec<HandTrace>> {
    let sql = format!("SELECT {HAND_TRACE_COLUMNS} FROM hand_traces ORDER BY created_at DESC LIMIT ?");
    let rows: Vec<HandTraceRow> = all(conn, &sql, &[&limit])?;
    Ok(rows.into_iter().map(hand_trace_from_row).collect())
}
