//! The WAL checkpointer of a serving SQLite database: a thread with a connection of its own
//! that copies the WAL into the database every [`INTERVAL`] (`PRAGMA wal_checkpoint(PASSIVE)`).
//!
//! Why not the writer's automatic checkpoint: a checkpoint syncs the WAL and the database
//! file, and the writer ran it inside a commit, so every write queued behind that commit
//! waited for the disk.  Under the launch loop a fifth of the CPU sat idle while requests
//! waited (`vmstat`: 4-5% iowait, issue 10).  A passive checkpoint on another connection never
//! takes the write lock: the writer appends to the WAL meanwhile, and restarts it from the
//! start once a checkpoint has copied all of it.  Durability is the same: with
//! `synchronous=NORMAL` a commit is in the WAL (it survives a crash of the process), and is on
//! disk after the next checkpoint.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::conn::Options;
use crate::DbError;

/// How often the WAL is copied into the database.
const INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

/// The checkpointer thread; [`Checkpointer::stop`] ends it.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    stop: Arc<Stop>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Opens its connection and starts the thread.
    pub(crate) fn start(options: &Options) -> Result<Checkpointer, DbError> {
        let conn = options.open()?;
        let stop = Arc::new(Stop::default());
        let signal = stop.clone();
        let thread = std::thread::Builder::new().name("sqlite-checkpoint".into()).spawn(move || loop {
            let stopped = signal.stopped.lock().unwrap_or_else(|p| p.into_inner());
            let (stopped, _) = signal
                .wake
                .wait_timeout_while(stopped, INTERVAL, |stopped| !*stopped)
                .unwrap_or_else(|p| p.into_inner());
            if *stopped {
                return;
            }
            drop(stopped);
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!("checkpointing the SQLite WAL: {e}");
            }
        })?;
        Ok(Checkpointer { stop, thread: Mutex::new(Some(thread)) })
    }

    /// Stops the thread (after the checkpoint it is running, if any) and closes its connection.
    pub(crate) fn stop(&self) {
        *self.stop.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.stop.wake.notify_all();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_frames(options: &Options) -> i64 {
        let conn = options.open().unwrap();
        // (busy, frames in the WAL, frames checkpointed): a no-op checkpoint reports them.
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)).unwrap()
    }

    /// The writer never checkpoints (its automatic checkpoint is off); the checkpointer copies
    /// its commits into the database, so the WAL is restarted instead of growing.
    #[test]
    fn the_checkpointer_copies_the_wal_while_the_writer_only_appends() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("smartlaunch-ckpt-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let options = Options { path: dir.join("c.db"), cache_mib: 2, wal_autocheckpoint_pages: 0 };
        let writer = options.open().unwrap();
        writer.execute_batch("CREATE TABLE t (v TEXT)").unwrap();
        let write = |n: usize| {
            for _ in 0..n {
                writer.execute("INSERT INTO t (v) VALUES (?1)", [&"x".repeat(3000)]).unwrap();
            }
        };
        write(200);
        let unchecked = wal_frames(&options);
        assert!(unchecked >= 200, "with no checkpoint the WAL holds every commit: {unchecked}");
        let checkpointer = Checkpointer::start(&options).unwrap();
        std::thread::sleep(INTERVAL * 3);
        // All of it copied: the next commit starts the WAL again from its first frame.
        write(1);
        let restarted = wal_frames(&options);
        assert!(restarted < 10, "the WAL was restarted after the checkpoint: {restarted} frames");
        checkpointer.stop();
        let count: i64 = writer.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(count, 201);
        drop(writer);
        std::fs::remove_dir_all(&dir).ok();
    }
}
