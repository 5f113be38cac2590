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

/// The longest value of a search parameter (each of its OR values), in bytes (→ 400).  SQLite refuses `LIKE`
/// patterns over 50,000 bytes (a 60,000-character `name` gave a 500).
pub const MAX_VALUE_BYTES: usize = 4_096;

/// The most parameters (including repeats) in one search (→ 400).  Repeated parameters are
/// AND-ed terms of the same query, so this and [`MAX_OR_VALUES`] bound its size together.
pub const MAX_SEARCH_PARAMETERS: usize = 50;

/// The most JSON objects in one request body (→ 413).  Parsed, each object costs a tree node of
/// about 640 bytes whatever its size, so 32 MiB of `{"a":0},` would become 2.5 GB (measured:
/// 5.6 GB RSS for one create).  A Synthea Bundle has about one object per 100 bytes, so this
/// admits about 30 MiB of Synthea, or 10,000 entries of it (the transaction limit).  Checked by
/// [`check_json_body`] before anything is parsed.
pub const MAX_JSON_OBJECTS: usize = 300_000;

/// The most JSON values in one request body (→ 413), for the same reason: 32 MiB of `0,` would
/// be 16 million values of 32 bytes each.  Synthea has about one value per 25 bytes.
pub const MAX_JSON_VALUES: usize = 2_000_000;

/// Refuses a JSON body whose parsed tree would pass [`MAX_JSON_OBJECTS`] or [`MAX_JSON_VALUES`],
/// by counting `{`, `[` and `,` outside strings (one pass, no allocation); the error says why.
pub fn check_json_body(body: &[u8]) -> Result<(), String> {
    let (mut objects, mut values) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => {
                objects += 1;
                values += 1;
            }
            b'[' | b',' => values += 1,
            _ => {}
        }
    }
    if objects > MAX_JSON_OBJECTS {
        return Err(format!(
            "the body holds {objects} JSON objects; this server accepts at most {MAX_JSON_OBJECTS} per request: send fewer resources per Bundle"
        ));
    }
    if values > MAX_JSON_VALUES {
        return Err(format!(
            "the body holds about {values} JSON values; this server accepts at most {MAX_JSON_VALUES} per request: send fewer resources per Bundle"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_are_measured_before_they_are_parsed() {
        assert!(check_json_body(br#"{"resourceType":"Patient","name":[{"family":"A,{[,"}]}"#).is_ok());
        let objects = "{\"a\":0},".repeat(MAX_JSON_OBJECTS + 1);
        assert!(check_json_body(format!("[{objects}0]").as_bytes()).unwrap_err().contains("at most 300000"));
        let values = "0,".repeat(MAX_JSON_VALUES + 1);
        assert!(check_json_body(format!("[{values}0]").as_bytes()).unwrap_err().contains("at most 2000000"));
        let in_strings = format!("{{\"text\":\"{}\\\"\"}}", "{,".repeat(MAX_JSON_VALUES));
        assert!(check_json_body(in_strings.as_bytes()).is_ok(), "characters inside strings (escapes too) do not count");
    }
}
