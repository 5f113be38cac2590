//! Sandbox management (issue 9, item 6): the reset that both `smartlaunch reset` and the
//! `/sandbox` page's button run, and the lock that tells the command line a server is using a
//! database: a file lock in the SQLite data directory, an advisory lock on PostgreSQL
//! (issue 10; [`smartlaunch_store::PgDb::server_lock`]).

use std::fs::File;
use std::path::Path;

use smartlaunch_store::{Db, PgSessionLock, ResetReport};

/// The file in a data directory that a running server holds a shared lock on.
const LOCK_FILE: &str = "smartlaunch.lock";

/// Restores the demo data and demo accounts and removes everything else that was added (see
/// [`smartlaunch_store::RESET_TABLES`]), in one transaction.  The signing keys stay.  The
/// caller updates what a running server holds in memory (`AuthService::forget_after_reset`,
/// the CORS origins, the export jobs' files).
pub async fn reset_database(db: &Db, now: i64, now_instant: &str) -> anyhow::Result<ResetReport> {
    let demo = smartlaunch_fhir::demo::generate();
    let users = crate::seed::demo_users(&demo).await?;
    Ok(db.reset_sandbox(demo.resources, &users, now, now_instant).await?)
}

/// A running server's shared lock on its database: held until dropped.
pub enum ServerLock {
    /// On the SQLite data directory's lock file.
    DataDir(File),
    /// The PostgreSQL servers' advisory lock (every node holds it shared).
    Postgres(PgSessionLock),
}

/// The command line's exclusive lock for a reset: no server runs on the database meanwhile.
pub enum ResetLock {
    DataDir(File),
    Postgres(PgSessionLock),
}

impl ResetLock {
    /// Lets servers start again.
    pub async fn release(self) {
        match self {
            ResetLock::DataDir(file) => drop(file),
            ResetLock::Postgres(lock) => lock.release().await,
        }
    }
}

/// Why the command line may not reset a database.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "a smartlaunch server is using {0}: stop it first, or use the \"Reset the sandbox\" button on its /sandbox page"
    )]
    InUse(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("taking the PostgreSQL servers' lock: {0}")]
    Database(#[from] smartlaunch_store::DbError),
}

fn open_lock(dir: &Path) -> Result<File, LockError> {
    let path = dir.join(LOCK_FILE);
    std::fs::create_dir_all(dir).map_err(|e| LockError::Io(dir.display().to_string(), e))?;
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| LockError::Io(path.display().to_string(), e))
}

/// Takes the server's shared lock on its database (several servers may share one; only the
/// command line's reset is kept out): the data directory's lock file on SQLite (where file
/// locks are not available, none), the servers' advisory lock on PostgreSQL.
pub async fn lock_for_server(db: &Db, dir: &Path) -> Result<ServerLock, LockError> {
    match db {
        Db::Sqlite(_) => {
            let file = open_lock(dir)?;
            // A failure to lock (a file system without locks) must not stop the server.
            let _ = flock(&file, Lock::Shared);
            Ok(ServerLock::DataDir(file))
        }
        Db::Postgres(pg) => Ok(ServerLock::Postgres(pg.server_lock().await?)),
    }
}

/// Takes the exclusive lock of a command that may not run beside a server (`smartlaunch
/// reset`): fails with [`LockError::InUse`] while a server runs on the database.
pub async fn lock_without_server(db: &Db, dir: &Path) -> Result<ResetLock, LockError> {
    match db {
        Db::Sqlite(_) => Ok(ResetLock::DataDir(lock_data_dir_without_server(dir)?)),
        Db::Postgres(pg) => match pg.try_lock_without_servers().await? {
            Some(lock) => Ok(ResetLock::Postgres(lock)),
            None => Err(LockError::InUse("the PostgreSQL database".into())),
        },
    }
}

/// The data directory's exclusive lock: fails with [`LockError::InUse`] while a server holds
/// `dir` (`smartlaunch reset`, `smartlaunch migrate --from-data`).
pub fn lock_data_dir_without_server(dir: &Path) -> Result<File, LockError> {
    let file = open_lock(dir)?;
    match flock(&file, Lock::Exclusive) {
        Ok(()) => Ok(file),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(LockError::InUse(dir.display().to_string())),
        Err(e) => Err(LockError::Io(dir.join(LOCK_FILE).display().to_string(), e)),
    }
}

enum Lock {
    Shared,
    Exclusive,
}

/// `flock(2)` without waiting.
#[cfg(unix)]
fn flock(file: &File, lock: Lock) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let operation = match lock {
        Lock::Shared => libc::LOCK_SH,
        Lock::Exclusive => libc::LOCK_EX,
    } | libc::LOCK_NB;
    // SAFETY: flock only reads the descriptor, which `file` keeps open for the call.
    if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
fn flock(_: &File, _: Lock) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_lock_keeps_the_reset_out_until_it_is_dropped() {
        let dir = std::env::temp_dir().join(format!("smartlaunch-lock-{}", std::process::id()));
        let shared = || {
            let file = open_lock(&dir).unwrap();
            flock(&file, Lock::Shared).unwrap();
            file
        };
        let server = shared();
        let second = shared();
        assert!(matches!(lock_data_dir_without_server(&dir), Err(LockError::InUse(_))));
        drop(server);
        assert!(matches!(lock_data_dir_without_server(&dir), Err(LockError::InUse(_))), "another server still runs");
        drop(second);
        let reset = lock_data_dir_without_server(&dir).unwrap();
        drop(reset);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
