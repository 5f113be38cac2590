//! The one SQLite writer: a thread that owns the write connection, with group commit (issue
//! 10, "Faster embedded default"; docs/DESIGN.md "SQLite: one writer connection").
//!
//! SQLite has one writer at a time.  Every write of the store is a job handed to one thread
//! ([`Writer::write`]) through a bounded queue (callers wait for room: backpressure); the
//! caller awaits the answer.  The thread takes everything queued since its last commit (at most
//! [`MAX_BATCH`] jobs) and runs it in one transaction (`BEGIN IMMEDIATE` … `COMMIT`), in
//! arrival order.  A write is acknowledged only after the `COMMIT` that contains it returned,
//! so an acknowledged write is in the WAL; with `synchronous=NORMAL` it survives a crash of the
//! process (not a power loss before the next checkpoint).
//!
//! One failing write must not fail the others: when a job fails, the whole transaction is
//! rolled back (nothing of it was acknowledged) and every job of the batch runs again alone,
//! each in its own transaction, so the failing one fails alone and the others commit.  A job is
//! therefore a closure that can run twice: it builds its statements afresh from owned values.
//!
//! A batch of one single-statement job (light load) runs without `BEGIN`/`COMMIT`: SQLite
//! commits a lone statement atomically.
//!
//! Statements run on the thread itself, with no hand-off per statement (sqlx ran each on its
//! connection's worker thread: a futex wake each way per statement); the hot ones are prepared
//! once per connection (`prepare_cached`).  A bulk write (seed, import, reset) takes the thread
//! for its whole transaction ([`Writer::exclusive`]): the other writes wait until it ends.

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::DbError;

/// Jobs waiting for the writer; beyond this, callers wait for room (backpressure).
const QUEUE_CAPACITY: usize = 4096;
/// The most jobs in one transaction.
const MAX_BATCH: usize = 256;

/// How a job's transaction ended, as [`Job::settle`] is told.
enum Ended {
    Committed,
    /// The job itself failed (its own error is kept).
    JobFailed,
    /// `BEGIN`, `COMMIT` or the connection failed.
    Failed(rusqlite::Error),
}

/// A job as the writer thread sees it: run (possibly twice), then settle once.
trait Job: Send {
    /// Runs the job's statements; whether it succeeded.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Whether the job is one statement (atomic on its own, without a transaction).
    fn single_statement(&self) -> bool;
    /// Answers the caller: the job's output if its transaction committed, else the error.
    fn settle(self: Box<Self>, ended: Ended);
}

/// A typed job: `work` runs the statements; `last` keeps what the last run returned until the
/// commit decides.
struct Typed<T, E, F> {
    work: F,
    single_statement: bool,
    last: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<T, E, F> Job for Typed<T, E, F>
where
    T: Send,
    E: From<DbError> + Send,
    F: FnMut(&Connection) -> Result<T, E> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let out = (self.work)(conn);
        let ok = out.is_ok();
        self.last = Some(out);
        ok
    }

    fn single_statement(&self) -> bool {
        self.single_statement
    }

    fn settle(self: Box<Self>, ended: Ended) {
        let Typed { last, reply, .. } = *self;
        let answer = match (ended, last) {
            (Ended::Committed | Ended::JobFailed, Some(out)) => out,
            (_, Some(Err(own))) => Err(own),
            (Ended::Failed(e), _) => Err(E::from(DbError::Sqlite(e))),
            (_, None) => Err(E::from(DbError::Closed)),
        };
        let _ = reply.send(answer);
    }
}

/// What the queue carries.
enum Message {
    Job(Box<dyn Job>),
    /// Runs alone with the connection to itself (it opens and ends its own transaction).
    Exclusive(Box<dyn FnOnce(&Connection) + Send>),
    /// Stops the thread and closes the connection, then answers.
    Close(oneshot::Sender<()>),
}

/// The queue to the writer thread, shared by every clone of the database handle.
#[derive(Debug)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Message>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Message")
    }
}

impl Writer {
    /// Starts the writer thread, owning `conn`.
    pub(crate) fn start(conn: Connection) -> Result<Writer, DbError> {
        let (queue, jobs) = mpsc::channel(QUEUE_CAPACITY);
        std::thread::Builder::new().name("sqlite-writer".into()).spawn(move || run(jobs, conn))?;
        Ok(Writer { queue })
    }

    /// Runs `work` in the writer's next transaction and returns its output once that
    /// transaction is committed.  `work` may run twice (see the module notes): it must build
    /// its statements from values it owns, and must not open a transaction of its own.  An
    /// error it returns fails it (and rolls back what it wrote).
    pub(crate) async fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnMut(&Connection) -> Result<T, E> + Send + 'static,
    {
        self.queue(work, false).await
    }

    /// Like [`Writer::write`] for a job of exactly one write statement.
    pub(crate) async fn statement<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnMut(&Connection) -> Result<T, E> + Send + 'static,
    {
        self.queue(work, true).await
    }

    async fn queue<T, E, F>(&self, work: F, single_statement: bool) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnMut(&Connection) -> Result<T, E> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Typed { work, single_statement, last: None, reply });
        self.queue.send(Message::Job(job)).await.map_err(|_| DbError::Closed)?;
        answer.await.map_err(|_| DbError::Closed)?
    }

    /// Runs `work` alone on the writer thread, after every job queued before it: it opens and
    /// ends its own transaction, and the writes queued after it wait until it returns.
    pub(crate) async fn exclusive(&self, work: impl FnOnce(&Connection) + Send + 'static) -> Result<(), DbError> {
        self.queue.send(Message::Exclusive(Box::new(work))).await.map_err(|_| DbError::Closed)
    }

    /// Runs what is queued, then stops the thread and closes the connection (the last close
    /// checkpoints the WAL).  Later writes fail.
    pub(crate) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.queue.send(Message::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
    }
}

/// The writer thread: waits for a job, then commits batches of what is queued.
fn run(mut queue: mpsc::Receiver<Message>, conn: Connection) {
    let mut pending: Option<Message> = None;
    let closed = loop {
        let Some(first) = pending.take().or_else(|| queue.blocking_recv()) else { break None };
        match first {
            Message::Close(done) => break Some(done),
            Message::Exclusive(work) => work(&conn),
            Message::Job(job) => {
                let mut batch = vec![job];
                while batch.len() < MAX_BATCH {
                    match queue.try_recv() {
                        Ok(Message::Job(job)) => batch.push(job),
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                commit_batch(&conn, batch);
            }
        }
    };
    if let Err((_, e)) = conn.close() {
        tracing::warn!("sqlite writer: close: {e}");
    }
    if let Some(done) = closed {
        let _ = done.send(());
    }
}

/// Runs a batch in one transaction; when a job fails, runs each job alone instead.
fn commit_batch(conn: &Connection, mut batch: Vec<Box<dyn Job>>) {
    match in_transaction(conn, &mut batch) {
        Ended::Committed => batch.into_iter().for_each(|job| job.settle(Ended::Committed)),
        ended if batch.len() == 1 => {
            if let Some(job) = batch.pop() {
                job.settle(ended);
            }
        }
        ended => {
            if let Ended::Failed(e) = &ended {
                tracing::debug!("group commit: the transaction failed ({e}); running its writes one by one");
            }
            for mut job in batch {
                let alone = in_transaction(conn, std::slice::from_mut(&mut job));
                job.settle(alone);
            }
        }
    }
}

/// Runs `jobs` in one transaction and commits it; on any failure rolls it back.
fn in_transaction(conn: &Connection, jobs: &mut [Box<dyn Job>]) -> Ended {
    if let [job] = jobs {
        if job.single_statement() {
            return if job.run(conn) { Ended::Committed } else { Ended::JobFailed };
        }
    }
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        return Ended::Failed(e);
    }
    let mut ended = Ended::Committed;
    for job in jobs.iter_mut() {
        if !job.run(conn) {
            ended = Ended::JobFailed;
            break;
        }
    }
    if let Ended::Committed = ended {
        if let Err(e) = conn.execute_batch("COMMIT") {
            ended = Ended::Failed(e);
        }
    }
    // Nothing of a failed batch is acknowledged; a failed COMMIT may have ended it already.
    if !matches!(ended, Ended::Committed) && !conn.is_autocommit() {
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            tracing::debug!("group commit: rollback: {e}");
        }
    }
    ended
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::conn::{exec, one, Options};

    use super::*;

    fn database() -> (Options, std::path::PathBuf) {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("smartlaunch-writer-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let options = Options { path: dir.join("w.db"), cache_mib: 2, wal_autocheckpoint_pages: 1000 };
        options.open().unwrap().execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)").unwrap();
        (options, dir)
    }

    fn insert(k: i64, v: Option<&'static str>) -> impl FnMut(&Connection) -> Result<usize, DbError> {
        move |conn| Ok(exec(conn, "INSERT INTO t (k, v) VALUES (?, ?)", &[&k, &v])?)
    }

    fn rows(options: &Options) -> i64 {
        let (n,): (i64,) = one(&options.open().unwrap(), "SELECT COUNT(*) FROM t", &[]).unwrap().unwrap();
        n
    }

    /// Many concurrent writers share transactions; one that fails (a NOT NULL violation, and a
    /// two-statement job whose second statement fails) fails alone, leaves nothing behind, and
    /// every other write is acknowledged and stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_commit_together_and_a_failure_fails_alone() {
        let (options, dir) = database();
        let writer = Arc::new(Writer::start(options.open().unwrap()).unwrap());
        let mut tasks = Vec::new();
        for k in 0..300 {
            let writer = writer.clone();
            tasks.push(tokio::spawn(async move {
                match k {
                    150 => writer.write(insert(k, None)).await,
                    151 => {
                        writer
                            .write(move |conn| {
                                exec(conn, "INSERT INTO t (k, v) VALUES (1151, 'half')", &[])?;
                                exec(conn, "INSERT INTO t (k, v) VALUES (1152, NULL)", &[])?;
                                Ok(2)
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
        assert_eq!(rows(&options), 298, "every acknowledged write is stored, nothing of the failed ones");
        writer.close().await;
        std::fs::remove_dir_all(dir).ok();
    }

    /// Jobs queued while the writer is busy run in one transaction (each sees the writes of
    /// the jobs before it, inside `BEGIN`), and none is answered before that transaction's
    /// `COMMIT`: when the first answer arrives, another connection sees every write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_jobs_share_one_transaction_and_are_answered_after_its_commit() {
        let (options, dir) = database();
        let writer = Arc::new(Writer::start(options.open().unwrap()).unwrap());
        // Holds the thread until the ten jobs are queued.
        let (open_gate, gate) = std::sync::mpsc::channel::<()>();
        writer
            .exclusive(move |_| {
                let _ = gate.recv();
            })
            .await
            .unwrap();
        let mut answers = Vec::new();
        for k in 0..10 {
            let writer = writer.clone();
            answers.push(tokio::spawn(async move {
                writer
                    .write(move |conn| {
                        exec(conn, "INSERT INTO t (k, v) VALUES (?, 'v')", &[&k])?;
                        let (seen,): (i64,) = one(conn, "SELECT COUNT(*) FROM t", &[])?.unwrap_or((0,));
                        Ok::<_, DbError>((seen, conn.is_autocommit()))
                    })
                    .await
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(rows(&options), 0);
        open_gate.send(()).unwrap();
        let mut seen = Vec::new();
        for (n, answer) in answers.into_iter().enumerate() {
            let (count, autocommit) = answer.await.unwrap().unwrap();
            if n == 0 {
                assert_eq!(rows(&options), 10, "answered after the commit of the whole batch");
            }
            assert!(!autocommit, "inside the batch's BEGIN");
            seen.push(count);
        }
        seen.sort_unstable();
        assert_eq!(seen, (1..=10).collect::<Vec<i64>>(), "one transaction, in arrival order");
        writer.close().await;
        std::fs::remove_dir_all(dir).ok();
    }

    /// A job's output is what its committed run returned, also when it ran twice; a domain
    /// error a job returns fails it and rolls back what it wrote.
    #[tokio::test]
    async fn a_job_that_reads_its_own_write_answers_after_commit_and_its_error_rolls_it_back() {
        let (options, dir) = database();
        let writer = Writer::start(options.open().unwrap()).unwrap();
        let seen = writer
            .write(|conn| {
                exec(conn, "INSERT INTO t (k, v) VALUES (1, 'a')", &[])?;
                let v: Option<(String,)> = one(conn, "SELECT v FROM t WHERE k = 1", &[])?;
                Ok::<_, DbError>(v.map(|(v,)| v))
            })
            .await
            .unwrap();
        assert_eq!(seen.as_deref(), Some("a"));
        let refused: Result<(), DbError> = writer
            .write(|conn| {
                exec(conn, "INSERT INTO t (k, v) VALUES (2, 'b')", &[])?;
                Err(DbError::Closed)
            })
            .await;
        assert!(matches!(refused, Err(DbError::Closed)));
        assert_eq!(rows(&options), 1, "the failed job's insert was rolled back");
        writer.close().await;
        assert!(writer.write(insert(3, Some("c"))).await.is_err(), "closed: writes fail");
        std::fs::remove_dir_all(dir).ok();
    }
}
