//! FHIR search: the parameters served, index extraction, value normalisation and query parsing.
//! The SQL that runs a query lives with the store.

pub mod extract;
pub mod normalize;
pub mod params;
pub mod query;
