//! End-to-end tests of the server over real HTTP on an ephemeral port, against the real
//! SQLite store (the suites that also run on PostgreSQL: tests/http_postgres.rs).

mod suites;
mod support;

/// The servers of these suites run on SQLite in their data directory.
const ON_POSTGRES: bool = false;
