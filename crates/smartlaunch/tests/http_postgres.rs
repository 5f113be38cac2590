//! The HTTP suites again, every server on PostgreSQL (issue 10): a database of its own per
//! server on `SMARTLAUNCH_TEST_DATABASE_URL` (tests/support/postgres.rs), which must be set
//! (unset, every test fails rather than passing on SQLite).
//!
//! Left out, as SQLite-only: `durability` (kills the process and checks the data directory's
//! WAL), `sandbox` (the data directory's reset lock; the PostgreSQL reset lock has its own
//! test there), `import` (the command line into a data directory), and the suites that start
//! the binary with a fresh `--data` only (`limits`, `trust`'s process tests run within it);
//! `hardening` checks the binary's own start-up on a data directory.

#[path = "suites"]
mod suites {
    mod apps_consent;
    mod authorization;
    mod backend;
    mod backend_launcher;
    mod bulk_export;
    mod ehr_launch;
    mod enforcement;
    mod fhir_rest;
    mod fhir_search;
    mod hardening;
    mod inspector;
    mod launcher_dev;
    mod limits;
    mod polish;
    mod sandbox;
    mod trust;
}
// Some helpers serve only the SQLite-only suites.
#[allow(dead_code, unused_imports)]
mod support;

/// The servers of these suites run on PostgreSQL.
const ON_POSTGRES: bool = true;
