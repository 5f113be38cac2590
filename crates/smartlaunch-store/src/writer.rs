//! The one SQLite writer, with group commit (issue 10, "Faster embedded default").
//!
//! SQLite has one writer at a time.  Instead of committing each request's write on its own,
//! requests hand their statements to one task ([`Writer::write`]); the task takes everything
//! queued since its last commit and runs it in one transaction (`BEGIN IMMEDIATE` … `COMMIT`),
//! in arrival order.  A write is acknowledged only after the `COMMIT` that contains it
//! returned, so an acknowledged write is in the WAL; with `synchronous=NORMAL` it survives a
//! crash of the process (not a power loss before the next checkpoint, as before).
//!
//! One failing write must not fail the others: when a job fails, the whole transaction is
//! rolled back (nothing of it was acknowledged) and every job of the batch runs again alone,
//! each in its own transaction, so the failing one fails alone and the others commit.  A job is
//! therefore a closure that can run twice: it builds its statements afresh from owned values.
//!
//! A batch of one single-statement job (light load) runs without `BEGIN`/`COMMIT`: SQLite
//! commits a lone statement atomically, and two round trips to the connection's thread are
//! saved.
//!
//! The writer borrows the pool's one write connection per series of batches and gives it
//! back when its queue is empty (or after [`MAX_HELD_BATCHES`]), so the writes that still use
//! the pool directly (FHIR resources, bulk import, housekeeping) interleave fairly.

use futures_util::future::BoxFuture;
use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

/// Jobs waiting for the writer; beyond this, callers wait for room (backpressure).
const QUEUE_CAPACITY: usize = 4096;
/// The most jobs in one transaction.
const MAX_BATCH: usize = 256;
/// Batches run before the connection goes back to the pool for the other writers.
const MAX_HELD_BATCHES: usize = 16;

/// The result of a write job.
pub(crate) type WriteResult<T> = Result<T, sqlx::Error>;

/// A job as the writer task sees it: run (possibly twice), then settle once.
trait Job: Send {
    fn run<'c>(&'c mut self, conn: &'c mut SqliteConnection) -> BoxFuture<'c, WriteResult<()>>;
    /// Whether the job is one statement (atomic on its own, without a transaction).
    fn single_statement(&self) -> bool;
    /// Answers the caller: the job's output if its transaction committed, else the error.
    fn settle(self: Box<Self>, outcome: WriteResult<()>);
}

/// A typed job: `work` builds and runs the statements; `output` keeps what the last run
/// returned until the commit decides.
struct Typed<T, F> {
    work: F,
    single_statement: bool,
    output: Option<T>,
    reply: oneshot::Sender<WriteResult<T>>,
}

impl<T, F> Job for Typed<T, F>
where
    T: Send,
    F: for<'c> FnMut(&'c mut SqliteConnection) -> BoxFuture<'c, WriteResult<T>> + Send,
{
    fn run<'c>(&'c mut self, conn: &'c mut SqliteConnection) -> BoxFuture<'c, WriteResult<()>> {
        self.output = None;
        let running = (self.work)(conn);
        let output = &mut self.output;
        Box::pin(async move {
            *output = Some(running.await?);
            Ok(())
        })
    }

    fn single_statement(&self) -> bool {
        self.single_statement
    }

    fn settle(self: Box<Self>, outcome: WriteResult<()>) {
        let Typed { output, reply, .. } = *self;
        let _ = reply.send(outcome.and_then(|()| output.ok_or(sqlx::Error::WorkerCrashed)));
    }
}

/// The queue to the writer task, shared by every clone of the database handle.
#[derive(Debug)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Starts the writer task on `write`, the pool of the one write connection.
    pub(crate) fn start(write: SqlitePool) -> Writer {
        let (queue, jobs) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(run(jobs, write));
        Writer { queue }
    }

    /// Runs `work` in the writer's next transaction and returns its output once that
    /// transaction is committed.  `work` may run twice (see the module notes): it must build
    /// its statements from values it owns, and must not open a transaction of its own.
    pub(crate) async fn write<T, F>(&self, work: F) -> WriteResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnMut(&'c mut SqliteConnection) -> BoxFuture<'c, WriteResult<T>> + Send + 'static,
    {
        self.queue(work, false).await
    }

    /// Like [`Writer::write`] for a job of exactly one statement.
    pub(crate) async fn statement<T, F>(&self, work: F) -> WriteResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnMut(&'c mut SqliteConnection) -> BoxFuture<'c, WriteResult<T>> + Send + 'static,
    {
        self.queue(work, true).await
    }

    async fn queue<T, F>(&self, work: F, single_statement: bool) -> WriteResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnMut(&'c mut SqliteConnection) -> BoxFuture<'c, WriteResult<T>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Typed { work, single_statement, output: None, reply });
        self.queue.send(job).await.map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }
}

/// The writer task: waits for a job, then runs batches of what is queued while jobs come.
async fn run(mut jobs: mpsc::Receiver<Box<dyn Job>>, write: SqlitePool) {
    let mut next = jobs.recv().await;
    while let Some(first) = next.take() {
        let mut conn = match write.acquire().await {
            Ok(conn) => conn,
            Err(e) => {
                // Closed pool (shutdown) or a broken database: every queued job fails.
                first.settle(Err(e));
                while let Ok(job) = jobs.try_recv() {
                    job.settle(Err(sqlx::Error::PoolClosed));
                }
                next = jobs.recv().await;
                continue;
            }
        };
        let mut batch = vec![first];
        for _ in 0..MAX_HELD_BATCHES {
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            commit_batch(&mut conn, std::mem::take(&mut batch)).await;
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        drop(conn);
        next = match batch.pop() {
            Some(job) => Some(job),
            None => jobs.recv().await,
        };
    }
}

/// Runs a batch in one transaction; when a job fails, runs each job alone instead.
async fn commit_batch(conn: &mut SqliteConnection, mut batch: Vec<Box<dyn Job>>) {
    match in_transaction(conn, &mut batch).await {
        Ok(()) => batch.into_iter().for_each(|job| job.settle(Ok(()))),
        Err(e) if batch.len() == 1 => {
            if let Some(job) = batch.pop() {
                job.settle(Err(e));
            }
        }
        Err(e) => {
            tracing::debug!("group commit: a write failed ({e}); running the batch's writes one by one");
            for mut job in batch {
                let alone = in_transaction(conn, std::slice::from_mut(&mut job)).await;
                job.settle(alone);
            }
        }
    }
}

/// Runs `jobs` in one transaction and commits it; on any failure rolls it back.
async fn in_transaction(conn: &mut SqliteConnection, jobs: &mut [Box<dyn Job>]) -> WriteResult<()> {
    if let [job] = jobs {
        if job.single_statement() {
            return job.run(conn).await;
        }
    }
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let mut result = Ok(());
    for job in jobs.iter_mut() {
        result = job.run(conn).await;
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        result = sqlx::query("COMMIT").execute(&mut *conn).await.map(|_| ());
    }
    if result.is_err() {
        // Nothing of the batch is acknowledged; a failed COMMIT may have ended it already.
        if let Err(e) = sqlx::query("ROLLBACK").execute(&mut *conn).await {
            tracing::debug!("group commit: rollback: {e}");
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

    use super::*;

    async fn pool() -> (SqlitePool, std::path::PathBuf) {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("smartlaunch-writer-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.join("w.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
        sqlx::query("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)").execute(&pool).await.unwrap();
        (pool, dir)
    }

    fn insert(
        k: i64,
        v: Option<&'static str>,
    ) -> impl for<'c> FnMut(&'c mut SqliteConnection) -> BoxFuture<'c, WriteResult<u64>> {
        move |conn| {
            let query = sqlx::query("INSERT INTO t (k, v) VALUES (?, ?)").bind(k).bind(v);
            Box::pin(async move { Ok(query.execute(conn).await?.rows_affected()) })
        }
    }

    /// Many concurrent writers share transactions; one that fails (a NOT NULL violation, and a
    /// two-statement job whose second statement fails) fails alone, leaves nothing behind, and
    /// every other write is acknowledged and stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_commit_together_and_a_failure_fails_alone() {
        let (pool, dir) = pool().await;
        let writer = Arc::new(Writer::start(pool.clone()));
        let mut tasks = Vec::new();
        for k in 0..300 {
            let writer = writer.clone();
            tasks.push(tokio::spawn(async move {
                match k {
                    150 => writer.write(insert(k, None)).await,
                    151 => {
                        writer
                            .write(move |conn| {
                                Box::pin(async move {
                                    sqlx::query("INSERT INTO t (k, v) VALUES (1151, 'half')")
                                        .execute(&mut *conn)
                                        .await?;
                                    sqlx::query("INSERT INTO t (k, v) VALUES (1152, NULL)").execute(&mut *conn).await?;
                                    Ok(2)
                                })
                            })
                            .await
                    }
                    _ => writer.write(insert(k, Some("v"))).await,
                }
            }));
        }
        let mut failed = Vec::new();
        for (k, task) in tasks.into_iter().enumerate() {
            match task.await.unwrap() {
                Ok(n) => assert_eq!(n, 1),
                Err(_) => failed.push(k),
            }
        }
        assert_eq!(failed, [150, 151], "only the failing writes fail");
        let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM t").fetch_one(&pool).await.unwrap();
        assert_eq!(rows, 298, "every acknowledged write is stored, nothing of the failed ones");
        pool.close().await;
        std::fs::remove_dir_all(dir).ok();
    }

    /// A job's output is what its committed run returned, also when it ran twice.
    #[tokio::test]
    async fn a_job_that_reads_its_own_write_answers_after_commit() {
        let (pool, dir) = pool().await;
        let writer = Writer::start(pool.clone());
        let seen = writer
            .write(|conn| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO t (k, v) VALUES (1, 'a')").execute(&mut *conn).await?;
                    let (v,): (String,) = sqlx::query_as("SELECT v FROM t WHERE k = 1").fetch_one(&mut *conn).await?;
                    Ok(v)
                })
            })
            .await
            .unwrap();
        assert_eq!(seen, "a");
        let (v,): (String,) = sqlx::query_as("SELECT v FROM t WHERE k = 1").fetch_one(&pool).await.unwrap();
        assert_eq!(v, "a");
        pool.close().await;
        std::fs::remove_dir_all(dir).ok();
    }
}
