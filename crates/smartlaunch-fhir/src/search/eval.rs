//! Search clauses evaluated in memory on one resource's JSON: how a granular scope
//! (`patient/Observation.rs?category=…`) is checked on a version that is not the current one
//! (the search index holds only current versions) and on a resource about to be written.  The
//! values come from the same extraction as the index ([`super::extract::index_entries`]), and
//! each comparison mirrors the SQL of the store's search, so a clause means the same thing here
//! and in a search.

use serde_json::Value;

use super::extract::{index_entries, IndexEntry, IndexValue};
use super::normalize::date_range;
use super::query::{Clause, ClauseValue, Modifier, Prefix, Target};

/// Whether `resource` satisfies every clause (AND; each clause's values are OR-ed).
pub fn matches_all(resource: &Value, clauses: &[Clause]) -> bool {
    if clauses.is_empty() {
        return true;
    }
    let mut entries = index_entries(resource);
    if let Some((low, high)) = resource.pointer("/meta/lastUpdated").and_then(Value::as_str).and_then(date_range) {
        entries.push(IndexEntry { param: "_lastUpdated", value: IndexValue::Date { low, high } });
    }
    let id = resource.get("id").and_then(Value::as_str).unwrap_or_default();
    clauses.iter().all(|c| clause_matches(id, &entries, c))
}

fn clause_matches(id: &str, entries: &[IndexEntry], clause: &Clause) -> bool {
    match clause.target {
        Target::Id => match clause.modifier {
            // Every resource has an id (as in SQL: `:missing=true` matches nothing).
            Modifier::Missing(missing) => !missing,
            _ => clause.values.iter().any(|v| matches!(v, ClauseValue::Id(want) if want == id)),
        },
        Target::Indexed { name, .. } => {
            let mut rows = entries.iter().filter(|e| e.param == name).map(|e| &e.value);
            match clause.modifier {
                Modifier::Missing(true) => rows.next().is_none(),
                Modifier::Missing(false) => rows.next().is_some(),
                modifier => rows.any(|row| clause.values.iter().any(|v| value_matches(modifier, v, row))),
            }
        }
    }
}

/// One clause value against one index value (the SQL of `value_sql` in the store).
fn value_matches(modifier: Modifier, want: &ClauseValue, row: &IndexValue) -> bool {
    match (want, row) {
        (ClauseValue::Token { system, code: want_code }, IndexValue::Token { system: row_system, code }) => {
            want_code.as_ref().is_none_or(|c| c == code)
                && match system {
                    None => true,
                    Some(None) => row_system.as_deref().is_none_or(str::is_empty),
                    Some(Some(s)) => row_system.as_deref() == Some(s.as_str()),
                }
        }
        (ClauseValue::String(s), IndexValue::String { folded, exact }) => match modifier {
            Modifier::Exact => exact == s,
            Modifier::Contains => folded.contains(s.as_str()),
            _ => folded.starts_with(s.as_str()),
        },
        (ClauseValue::Date { prefix, low, high }, IndexValue::Date { low: row_low, high: row_high }) => {
            let (l, h, rl, rh) = (*low, *high, *row_low, *row_high);
            match prefix {
                Prefix::Eq => rl >= l && rh <= h,
                Prefix::Ne => !(rl >= l && rh <= h),
                Prefix::Gt => rh > h,
                Prefix::Lt => rl < l,
                Prefix::Ge => rh >= l,
                Prefix::Le => rl <= h,
            }
        }
        (ClauseValue::Reference { target_type, id }, IndexValue::Reference { target_type: row_type, target_id }) => {
            target_id == id && target_type.as_ref().is_none_or(|t| row_type.as_ref() == Some(t))
        }
        (
            ClauseValue::Quantity { prefix, value, low, high, system, code },
            IndexValue::Quantity { value: v, system: row_system, code: row_code },
        ) => {
            let in_range = match prefix {
                Prefix::Eq => *v >= *low && *v < *high,
                Prefix::Ne => !(*v >= *low && *v < *high),
                Prefix::Gt => *v > *value,
                Prefix::Lt => *v < *value,
                Prefix::Ge => *v >= *value,
                Prefix::Le => *v <= *value,
            };
            in_range
                && system.as_ref().is_none_or(|s| row_system.as_ref() == Some(s))
                && code.as_ref().is_none_or(|c| row_code.as_ref() == Some(c))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::query::parse_filter;
    use serde_json::json;

    const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

    fn obs(category: &str) -> Value {
        json!({
            "resourceType": "Observation", "id": "o1", "status": "final",
            "meta": {"lastUpdated": "2026-03-04T10:00:00Z"},
            "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Heart rate"},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2026-03-04T10:00:00Z",
            "valueQuantity": {"value": 72, "system": "http://unitsofmeasure.org", "code": "/min"}
        })
    }

    fn filter(pairs: &[(&str, &str)]) -> Vec<Clause> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        parse_filter("Observation", &pairs).expect("supported")
    }

    #[test]
    fn a_granular_filter_is_evaluated_on_the_version_itself() {
        let lab = filter(&[("category", &format!("{CATEGORY}|laboratory"))]);
        assert!(matches_all(&obs("laboratory"), &lab));
        assert!(!matches_all(&obs("vital-signs"), &lab), "another category is outside the filter");
        assert!(matches_all(&obs("vital-signs"), &filter(&[("category", "laboratory,vital-signs")])));
        assert!(!matches_all(&obs("laboratory"), &filter(&[("category", "|laboratory")])), "|code means no system");
    }

    #[test]
    fn every_kind_of_value_compares_as_the_sql_does() {
        let o = obs("laboratory");
        let yes = |pairs: &[(&str, &str)]| matches_all(&o, &filter(pairs));
        assert!(yes(&[("code", "http://loinc.org|8867-4"), ("status", "final")]), "clauses AND");
        assert!(!yes(&[("code", "http://loinc.org|8867-4"), ("status", "amended")]));
        assert!(yes(&[("code", "http://loinc.org|")]));
        assert!(yes(&[("subject", "Patient/p1")]) && yes(&[("patient", "p1")]) && !yes(&[("subject", "Patient/p2")]));
        assert!(yes(&[("date", "2026-03")]) && yes(&[("date", "ge2026-03-04")]) && !yes(&[("date", "lt2026")]));
        assert!(yes(&[("value-quantity", "72")]) && yes(&[("value-quantity", "gt71|http://unitsofmeasure.org|/min")]));
        assert!(!yes(&[("value-quantity", "lt72")]));
        assert!(yes(&[("_id", "o1")]) && !yes(&[("_id", "o2")]));
        assert!(yes(&[("_lastUpdated", "2026-03-04")]));
        assert!(yes(&[("encounter:missing", "true")]) && !yes(&[("status:missing", "true")]));
    }

    #[test]
    fn strings_fold_prefix_contain_and_match_exactly() {
        let p = json!({"resourceType": "Patient", "id": "p", "name": [{"family": "Ångström"}]});
        let f = |k: &str, v: &str| {
            parse_filter("Patient", &[(k.to_string(), v.to_string())]).map(|c| matches_all(&p, &c)).unwrap()
        };
        assert!(f("family", "ang") && f("family:contains", "STR") && f("family:exact", "Ångström"));
        assert!(!f("family", "str") && !f("family:exact", "angstrom"));
    }
}
