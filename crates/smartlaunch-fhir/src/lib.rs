//! FHIR R4 for smartlaunch: the REST service (every interaction's rules, without HTTP), the
//! patient compartment, SMART access decisions on resources, the CapabilityStatement, the
//! resource-store trait, Bulk Data export and the offline demo data set.

pub mod access;
pub mod brands;
pub mod bundle;
pub mod capability;
pub mod compartment;
pub mod demo;
pub mod export;
pub mod limits;
pub mod resource_types;
pub mod search;
pub mod service;
pub mod store;
pub mod validate;

/// The FHIR version served.
pub const FHIR_VERSION: &str = "4.0.1";

/// Whether `id` is a valid FHIR id: 1–64 of `[A-Za-z0-9-.]`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}
