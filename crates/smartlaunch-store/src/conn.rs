//! SQLite connections (rusqlite, issue 10 "Faster embedded default"): opening one with the
//! store's pragmas, binding values to numbered placeholders, reading rows into tuples, and the
//! pool of reader connections.
//!
//! Statements are written with `$n` placeholders (the texts PostgreSQL runs too) or `?`.
//! SQLite reads `$1` as a *named* parameter and numbers named parameters in order of first
//! appearance, so [`bind`] binds by the number in the name (`$3` and `?3` take the third
//! value), as sqlx did: a text whose placeholders are out of order still binds right.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::FromSql;
use rusqlite::{Connection, Row, Statement, ToSql};

use crate::DbError;

/// Values bound to a statement, in placeholder-number order.
pub(crate) type Args<'a> = &'a [&'a dyn ToSql];

/// Prepared statements kept per connection (the hot statements of the auth and FHIR paths;
/// search texts vary and are prepared uncached).
const STATEMENT_CACHE: usize = 128;

/// How every connection of a database is opened.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub path: PathBuf,
    pub cache_mib: i64,
    pub wal_autocheckpoint_pages: i64,
}

impl Options {
    /// Opens (creating if needed) a connection: WAL, `synchronous=NORMAL` (a committed
    /// transaction survives a crash of the process), foreign keys, a 10 s busy timeout.  No
    /// memory map (`mmap_size`): in WAL mode a reader whose snapshot is older than the last
    /// commit unmaps the whole file at its next read, so with commits arriving every
    /// millisecond a map costs a munmap and page faults per read (profiled with a 256 MiB map:
    /// 5% of the server's time in the launch loop went to unmapping).
    pub(crate) fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open(&self.path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        conn.execute_batch(&format!(
            "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -{}; \
             PRAGMA wal_autocheckpoint = {};",
            self.cache_mib * 1024,
            self.wal_autocheckpoint_pages
        ))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }
}

/// Binds `args` to `stmt` by placeholder number (see the module notes).
pub(crate) fn bind(stmt: &mut Statement<'_>, args: Args<'_>) -> rusqlite::Result<()> {
    let count = stmt.parameter_count();
    if count != args.len() {
        // Every statement numbers its placeholders 1..=n: as many values as placeholders.
        return Err(rusqlite::Error::InvalidParameterCount(args.len(), count));
    }
    for index in 1..=count {
        let number = stmt
            .parameter_name(index)
            .and_then(|name| name.strip_prefix(['$', '?']))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(index);
        let value = number
            .checked_sub(1)
            .and_then(|at| args.get(at))
            .ok_or(rusqlite::Error::InvalidParameterCount(number, count))?;
        stmt.raw_bind_parameter(index, value)?;
    }
    Ok(())
}

/// A row read into a tuple of columns, in `SELECT` order.
pub(crate) trait FromRow: Sized {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self>;
}

macro_rules! tuple_from_row {
    ($($t:ident $i:tt),+) => {
        impl<$($t: FromSql),+> FromRow for ($($t,)+) {
            fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
                Ok(($(row.get::<_, $t>($i)?,)+))
            }
        }
    };
}

tuple_from_row!(A 0);
tuple_from_row!(A 0, B 1);
tuple_from_row!(A 0, B 1, C 2);
tuple_from_row!(A 0, B 1, C 2, D 3);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14);

/// Runs a statement of a fixed text (cached); the rows it changed.
pub(crate) fn exec(conn: &Connection, sql: &str, args: Args<'_>) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, args)?;
    stmt.raw_execute()
}

/// The first row of a query of a fixed text (cached), if any.
pub(crate) fn one<T: FromRow>(conn: &Connection, sql: &str, args: Args<'_>) -> rusqlite::Result<Option<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, args)?;
    let mut rows = stmt.raw_query();
    rows.next()?.map(T::from_row).transpose()
}

/// Every row of a query of a fixed text (cached).
pub(crate) fn all<T: FromRow>(conn: &Connection, sql: &str, args: Args<'_>) -> rusqlite::Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    query_all(&mut stmt, args)
}

/// Every row of `stmt` with `args`.
pub(crate) fn query_all<T: FromRow>(stmt: &mut Statement<'_>, args: Args<'_>) -> rusqlite::Result<Vec<T>> {
    let mut out = Vec::new();
    each(stmt, args, |row: T| {
        out.push(row);
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// Reads the rows of `stmt` one at a time until `f` breaks (a page within its byte budget).
pub(crate) fn each<T: FromRow>(
    stmt: &mut Statement<'_>,
    args: Args<'_>,
    mut f: impl FnMut(T) -> ControlFlow<()>,
) -> rusqlite::Result<()> {
    bind(stmt, args)?;
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next()? {
        if f(T::from_row(row)?).is_break() {
            break;
        }
    }
    Ok(())
}

/// The binds of a built statement as rusqlite values.
pub(crate) fn values(binds: &[crate::search::Bind]) -> Vec<&dyn ToSql> {
    binds.iter().map(|b| b as &dyn ToSql).collect()
}

/// Reader connections kept open between uses.
const MAX_IDLE_READERS: usize = 8;

/// The reader connections.  With WAL a reader never waits for the writer: it reads the last
/// committed state.  A reader is taken for one read and given back; when none is idle a new
/// one is opened (the pool never makes a read wait for another).
#[derive(Debug)]
pub(crate) struct Readers {
    options: Options,
    idle: Mutex<Vec<Connection>>,
    /// Set by [`Readers::close`]: no connection is opened or handed out after it.
    closed: AtomicBool,
}

impl Readers {
    pub(crate) fn new(options: Options) -> Readers {
        Readers { options, idle: Mutex::new(Vec::new()), closed: AtomicBool::new(false) }
    }

    fn take(&self) -> Result<Connection, DbError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(DbError::Closed);
        }
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => Ok(self.options.open()?),
        }
    }

    fn give(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_READERS && conn.is_autocommit() && !self.closed.load(Ordering::Acquire) {
            idle.push(conn);
        }
    }

    /// Runs a short read (a point look-up: microseconds) on the calling task.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, DbError> {
        let conn = self.take()?;
        let out = f(&conn);
        self.give(conn);
        Ok(out?)
    }

    /// Runs a long read (a search, a history, a scan: milliseconds) on the blocking pool, so
    /// that it never holds up a runtime worker.
    pub(crate) async fn read_blocking<T, F>(self: &Arc<Self>, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let readers = self.clone();
        tokio::task::spawn_blocking(move || readers.read(f)).await.map_err(|_| DbError::Closed)?
    }

    /// Opens a connection of its own (an export's snapshot).
    pub(crate) fn open(&self) -> Result<Connection, DbError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(DbError::Closed);
        }
        Ok(self.options.open()?)
    }

    /// Closes the idle connections; later reads fail (the health check reports it).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// Runs a built statement whose text varies (a bulk insert of n rows): prepared uncached.
pub(crate) fn exec_built(conn: &Connection, sql: &crate::search::Sql) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare(&sql.text)?;
    bind(&mut stmt, &values(&sql.binds))?;
    stmt.raw_execute()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;

    /// The figure behind the choice of inline point reads (docs/DESIGN.md "Access layer"): a
    /// point read on the calling task vs the same read through `spawn_blocking`.
    /// `cargo test -p smartlaunch-store --release --lib -- --ignored --nocapture point_read`
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement"]
    async fn point_read_inline_vs_spawn_blocking() {
        let dir = std::env::temp_dir().join(format!("smartlaunch-reads-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let options = Options { path: dir.join("r.db"), cache_mib: 2, wal_autocheckpoint_pages: 1000 };
        options
            .open()
            .unwrap()
            .execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT); INSERT INTO t VALUES ('a', 'x');")
            .unwrap();
        let readers = Arc::new(Readers::new(options));
        let n = 20_000;
        let started = Instant::now();
        for _ in 0..n {
            let _: Option<(String,)> = readers.read(|c| one(c, "SELECT v FROM t WHERE k = ?", &[&"a"])).unwrap();
        }
        let inline = started.elapsed() / n;
        let started = Instant::now();
        for _ in 0..n {
            let _: Option<(String,)> =
                readers.read_blocking(|c| one(c, "SELECT v FROM t WHERE k = ?", &[&"a"])).await.unwrap();
        }
        let blocking = started.elapsed() / n;
        println!("point read: inline {inline:?}, spawn_blocking {blocking:?}");
        std::fs::remove_dir_all(dir).ok();
    }
}
