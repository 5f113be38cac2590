//! The FHIR server's limits, in one place (docs/DESIGN.md, "Limits (FHIR)").  Each one keeps a
//! single request from growing the server's memory without bound or reaching a database error,
//! and each is answered with a 4xx OperationOutcome that says the limit and what to do.

/// The largest request body of a FHIR write, search form or Bundle (→ 413): 32 MiB.  A Synthea
/// patient's transaction Bundle is a few MiB.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The most entries in a batch Bundle (→ 413).  Every entry of a batch is a request of its own,
/// so a batch costs up to this many requests.
pub const MAX_BATCH_ENTRIES: usize = 1_000;

/// The most entries in a transaction Bundle (→ 413).  Higher than a batch's: a Synthea patient's
/// history is one transaction of a few thousand entries, all written in one database
/// transaction, and the body limit bounds it too.
pub const MAX_TRANSACTION_ENTRIES: usize = 10_000;

/// The largest response body of a search (matches and included resources) and of a whole batch
/// (every entry's response): 32 MiB.  Bytes are counted as the response is built, which stops as
/// soon as it would pass the budget (→ 400, `too-costly`, "page with a smaller `_count`").
pub const RESPONSE_BUDGET_BYTES: usize = 32 * 1024 * 1024;

/// The page size when a search names no `_count`.
pub const DEFAULT_COUNT: i64 = 50;

/// The largest page of a search or history: a larger `_count` is clamped to it (R4 §3.1.1.5.6:
/// the server may return fewer than asked; the `next` link pages on).
pub const MAX_COUNT: i64 = 1_000;

/// The most comma-separated (OR) values of one search parameter (→ 400).  Each value is a term
/// of the query; SQLite refuses expression trees deeper than 1,000.
pub const MAX_OR_VALUES: usize = 100;

/// The most parameters (including repeats) in one search (→ 400).  Repeated parameters are
/// AND-ed terms of the same query, so this and [`MAX_OR_VALUES`] bound its size together.
pub const MAX_SEARCH_PARAMETERS: usize = 50;
