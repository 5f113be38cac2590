//! The launch inspector's event log, written off the request path: requests put their events
//! on a bounded queue (never waiting: when it is full the event is dropped and counted), and one
//! task drains it in batches, each written by the group-commit writer (in the transaction of
//! the requests' own writes of that moment) and keeping every launch within
//! [`MAX_EVENTS_PER_TRACE`] events (the newest).  Reads flush the queue first, so they see
//! every event recorded before them.  Also the inspector's other records: launches by trace
//! and by user, the per-client trace switches and the hand-made launches they traced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use smartlaunch_auth::inspect::{LaunchEvent, LaunchRecord};
use smartlaunch_auth::launch::Launch;
use smartlaunch_auth::retention::MAX_EVENTS_PER_TRACE;
use smartlaunch_auth::store::HandTrace;
use smartlaunch_auth::UnixTime;
use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use crate::writer::Writer;

/// Events waiting to be written; beyond this, new events are dropped (and counted).
const QUEUE_CAPACITY: usize = 4096;
/// The most events written in one transaction.
const BATCH: usize = 512;
/// Events a launch may hold beyond [`MAX_EVENTS_PER_TRACE`] between two trims: a trim walks
/// the cap's worth of the launch's index, so it runs once per this many events, not per batch;
/// reads show the newest [`MAX_EVENTS_PER_TRACE`] all the same.
const TRIM_EVERY: i64 = 64;
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

/// The draining task: takes what is queued (up to [`BATCH`]) and writes it in one job.
async fn drain(mut rx: mpsc::Receiver<Queued>, write: Arc<Writer>, overflow: Overflow) {
    while let Some(first) = rx.recv().await {
        let mut events = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(item) = next {
            match item {
                Queued::Event(trace, event) => events.push((trace, *event)),
                Queued::Flush(done) => flushes.push(done),
            }
            next = if events.len() < BATCH { rx.try_recv().ok() } else { None };
        }
        let dropped = std::mem::take(&mut *overflow.lock().unwrap_or_else(|p| p.into_inner()));
        if !events.is_empty() || !dropped.is_empty() {
            let count = events.len();
            let batch = Arc::new((events, dropped));
            let written = write
                .write(move |conn| {
                    let batch = batch.clone();
                    Box::pin(async move { write_batch(conn, &batch.0, &batch.1).await })
                })
                .await;
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
async fn write_batch(
    conn: &mut SqliteConnection,
    events: &[(String, LaunchEvent)],
    dropped: &HashMap<String, u64>,
) -> Result<(), sqlx::Error> {
    let mut per_trace: HashMap<&str, (u64, i64)> = HashMap::new();
    for (trace, n) in dropped {
        per_trace.entry(trace).or_default().0 += n;
    }
    for (trace, event) in events {
        let json = serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        sqlx::query("INSERT INTO launch_events (trace_id, at, event) VALUES (?, ?, ?)")
            .bind(trace)
            .bind(event.at)
            .bind(json)
            .execute(&mut *conn)
            .await?;
        let entry = per_trace.entry(trace).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(event.at);
    }
    for (trace, (added, last_at)) in &per_trace {
        let (recorded,): (i64,) = sqlx::query_as(
            "INSERT INTO launch_traces (trace_id, recorded, last_at) VALUES (?, ?, ?) ON CONFLICT (trace_id) \
             DO UPDATE SET recorded = recorded + excluded.recorded, last_at = MAX(last_at, excluded.last_at) \
             RETURNING recorded",
        )
        .bind(trace)
        .bind(*added as i64)
        .bind(last_at)
        .fetch_one(&mut *conn)
        .await?;
        let before = recorded - *added as i64;
        if recorded <= MAX_EVENTS_PER_TRACE || before / TRIM_EVERY == recorded / TRIM_EVERY {
            continue;
        }
        sqlx::query(
            "DELETE FROM launch_events WHERE trace_id = ? AND seq <= \
             (SELECT seq FROM launch_events WHERE trace_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
        )
        .bind(trace)
        .bind(trace)
        .bind(MAX_EVENTS_PER_TRACE)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A launch's kept events, oldest first, and how many it recorded beyond them.
pub(crate) async fn launch_record(read: &SqlitePool, trace: &str) -> Result<LaunchRecord, sqlx::Error> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT event FROM (SELECT seq, event FROM launch_events WHERE trace_id = ? ORDER BY seq DESC LIMIT ?) \
         ORDER BY seq",
    )
    .bind(trace)
    .bind(MAX_EVENTS_PER_TRACE)
    .fetch_all(read)
    .await?;
    let recorded: Option<(i64,)> = sqlx::query_as("SELECT recorded FROM launch_traces WHERE trace_id = ?")
        .bind(trace)
        .fetch_optional(read)
        .await?;
    let events = rows
        .into_iter()
        .map(|(json,)| serde_json::from_str(&json).map_err(|e| sqlx::Error::Decode(Box::new(e))))
        .collect::<Result<Vec<LaunchEvent>, _>>()?;
    let dropped = recorded.map_or(0, |(n,)| (n.max(0) as u64).saturating_sub(events.len() as u64));
    Ok(LaunchRecord { events, dropped })
}

/// The launch whose inspector key is `trace` (the `launches_trace` expression index).
pub(crate) async fn launch_by_trace(read: &SqlitePool, trace: &str) -> Result<Option<Launch>, sqlx::Error> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT data FROM launches WHERE json_extract(data, '$.trace_id') = ? ORDER BY created_at DESC LIMIT 1",
    )
    .bind(trace)
    .fetch_optional(read)
    .await?;
    row.map(|(data,)| serde_json::from_str(&data).map_err(|e| sqlx::Error::Decode(Box::new(e)))).transpose()
}

/// A user's newest launches, newest first (the `launches_user` expression index).
pub(crate) async fn user_launches(read: &SqlitePool, user_id: &str, limit: i64) -> Result<Vec<Launch>, sqlx::Error> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT data FROM launches WHERE json_extract(data, '$.user_id') = ? ORDER BY created_at DESC LIMIT ?",
    )
    .bind(user_id)
    .bind(limit)
    .fetch_all(read)
    .await?;
    rows.into_iter().map(|(data,)| serde_json::from_str(&data).map_err(|e| sqlx::Error::Decode(Box::new(e)))).collect()
}

/// Turns a client's trace switch on until `until`, or off.
pub(crate) async fn set_trace_switch(
    writer: &Writer,
    client_id: &str,
    until: Option<UnixTime>,
) -> Result<(), sqlx::Error> {
    let client_id = client_id.to_owned();
    writer
        .statement(move |conn| {
            let query = match until {
                Some(until) => sqlx::query(
                    "INSERT INTO trace_switches (client_id, expires_at) VALUES (?, ?) \
                     ON CONFLICT (client_id) DO UPDATE SET expires_at = excluded.expires_at",
                )
                .bind(client_id.clone())
                .bind(until),
                None => sqlx::query("DELETE FROM trace_switches WHERE client_id = ?").bind(client_id.clone()),
            };
            Box::pin(async move { query.execute(conn).await.map(|_| ()) })
        })
        .await
}

/// The clients whose trace switch is on at `now`.
pub(crate) async fn trace_switches(read: &SqlitePool, now: UnixTime) -> Result<Vec<(String, UnixTime)>, sqlx::Error> {
    sqlx::query_as("SELECT client_id, expires_at FROM trace_switches WHERE expires_at > ? ORDER BY client_id")
        .bind(now)
        .fetch_all(read)
        .await
}

pub(crate) async fn insert_hand_trace(writer: &Writer, trace: &HandTrace) -> Result<(), sqlx::Error> {
    let trace = trace.clone();
    writer
        .statement(move |conn| {
            let query = sqlx::query(
                "INSERT INTO hand_traces (trace_id, client_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
            )
            .bind(trace.trace_id.clone())
            .bind(trace.client_id.clone())
            .bind(trace.created_at)
            .bind(trace.expires_at);
            Box::pin(async move { query.execute(conn).await.map(|_| ()) })
        })
        .await
}

type HandTraceRow = (String, String, i64, i64);

fn hand_trace_of((trace_id, client_id, created_at, expires_at): HandTraceRow) -> HandTrace {
    HandTrace { trace_id, client_id, created_at, expires_at }
}

pub(crate) async fn hand_trace(read: &SqlitePool, trace_id: &str) -> Result<Option<HandTrace>, sqlx::Error> {
    let row: Option<HandTraceRow> =
        sqlx::query_as("SELECT trace_id, client_id, created_at, expires_at FROM hand_traces WHERE trace_id = ?")
            .bind(trace_id)
            .fetch_optional(read)
            .await?;
    Ok(row.map(hand_trace_of))
}

pub(crate) async fn recent_hand_traces(read: &SqlitePool, limit: i64) -> Result<Vec<HandTrace>, sqlx::Error> {
    let rows: Vec<HandTraceRow> = sqlx::query_as(
        "SELECT trace_id, client_id, created_at, expires_at FROM hand_traces ORDER BY created_at DESC LIMIT ?",
    )
    .bind(limit)
    .fetch_all(read)
    .await?;
    Ok(rows.into_iter().map(hand_trace_of).collect())
}
