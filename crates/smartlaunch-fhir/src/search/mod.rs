//! FHIR search: the parameters served, index extraction, value normalisation and query parsing.
//! The SQL that runs a query lives with the store.

pub mod eval;
pub mod extract;
pub mod normalize;
pub mod params;
pub mod query;

use query::Clause;

/// One way a token may see resources in a search (from one granted scope): optionally only
/// one patient's compartment, and optionally granular filter clauses.  Constraints are a union.
#[derive(Debug, Clone, PartialEq)]
pub struct Constraint {
    pub compartment: Option<String>,
    pub filter: Vec<Clause>,
}

impl Constraint {
    /// A constraint that admits everything of the type.
    pub fn everything() -> Constraint {
        Constraint { compartment: None, filter: Vec::new() }
    }
}
