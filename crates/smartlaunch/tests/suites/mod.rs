//! Further suites of the HTTP integration-test binary (one binary per crate: link time on two
//! cores is real).

mod apps_consent;
mod authorization;
mod backend;
mod backend_launcher;
mod bulk_export;
mod client_fhir;
mod client_launch;
mod demo_app;
mod durability;
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
mod proxy;
mod sandbox;
mod trust;
mod two_nodes;
