//! The HTTP suites again, every server on PostgreSQL (issue 10): a database of its own per
//! server on `SMARTLAUNCH_TEST_DATABASE_URL` (tests/support/postgres.rs), which must be set
//! (unset, every test fails rather than passing on SQLite).
//!
//! Left out: `durability`, SQLite-only (it kills the server and checks that the SQLite data
//! directory lost no committed write: PostgreSQL's own durability is not ours to test).  The
//! tests that start the binary in a process of its own (`support::Process`: peak memory,
//! signals) run it on a fresh `--data` directory, so on SQLite in this target too.

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
    mod import;
    mod inspector;
    mod key_rotation;
    mod launcher_dev;
    mod limits;
    mod polish;
    mod postgres;
    mod proxy;
    mod sandbox;
    mod trust;
}
mod support;

/// The servers of these suites run on PostgreSQL.
const ON_POSTGRES: bool = true;
