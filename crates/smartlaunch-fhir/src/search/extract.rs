//! Index entries of a resource: for each search parameter, the values its elements hold.

use serde_json::Value;

use super::normalize::{date_range, fold};
use super::params::{params_of, Kind};

/// One indexed value of one search parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexValue {
    /// `system|code` (a Coding, a CodeableConcept's codings, an Identifier, a code, a boolean).
    Token {
        system: Option<String>,
        code: String,
    },
    /// A folded string (for prefix and contains search) and the exact one.
    String {
        folded: String,
        exact: String,
    },
    /// An inclusive range of Unix seconds.
    Date {
        low: i64,
        high: i64,
    },
    Reference {
        target_type: Option<String>,
        target_id: String,
    },
    Quantity {
        value: f64,
        system: Option<String>,
        code: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    pub param: &'static str,
    pub value: IndexValue,
}

/// Collects the values found at a dotted path (arrays are walked at every level).
fn values_at<'a>(value: &'a Value, path: &str, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| values_at(item, path, out)),
        Value::Object(map) => {
            let (head, rest) = match path.split_once('.') {
                Some((h, r)) => (h, Some(r)),
                None => (path, None),
            };
            match (map.get(head), rest) {
                (Some(next), Some(rest)) => values_at(next, rest, out),
                (Some(Value::Array(items)), None) => out.extend(items.iter()),
                (Some(v), None) => out.push(v),
                (None, _) => {}
            }
        }
        _ => {}
    }
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn tokens(v: &Value, out: &mut Vec<IndexValue>) {
    match v {
        Value::String(s) => out.push(IndexValue::Token { system: None, code: s.clone() }),
        Value::Bool(b) => out.push(IndexValue::Token { system: None, code: b.to_string() }),
        Value::Object(map) => {
            if let Some(Value::Array(codings)) = map.get("coding") {
                codings.iter().for_each(|c| tokens(c, out));
            } else if let Some(code) = text(v, "code") {
                out.push(IndexValue::Token { system: text(v, "system"), code });
            } else if let Some(value) = text(v, "value") {
                out.push(IndexValue::Token { system: text(v, "system"), code: value });
            }
        }
        _ => {}
    }
}

fn strings(v: &Value, out: &mut Vec<IndexValue>) {
    let mut push = |s: &str| out.push(IndexValue::String { folded: fold(s), exact: s.to_owned() });
    match v {
        Value::String(s) => push(s),
        Value::Object(map) => {
            for key in [
                "text",
                "family",
                "given",
                "prefix",
                "suffix",
                "line",
                "city",
                "district",
                "state",
                "postalCode",
                "country",
            ] {
                match map.get(key) {
                    Some(Value::String(s)) => push(s),
                    Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).for_each(&mut push),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn dates(v: &Value, out: &mut Vec<IndexValue>) {
    match v {
        Value::String(s) => out.extend(date_range(s).map(|(low, high)| IndexValue::Date { low, high })),
        Value::Object(_) => {
            let low = v.get("start").and_then(Value::as_str).and_then(date_range).map_or(i64::MIN, |r| r.0);
            let high = v.get("end").and_then(Value::as_str).and_then(date_range).map_or(i64::MAX, |r| r.1);
            if low != i64::MIN || high != i64::MAX {
                out.push(IndexValue::Date { low, high });
            }
        }
        _ => {}
    }
}

/// `Patient/123`, or an absolute URL ending in `Type/id`.
pub fn split_reference(reference: &str) -> Option<(Option<String>, String)> {
    let mut parts = reference.rsplitn(3, '/');
    let id = parts.next()?;
    match parts.next() {
        Some(ty) if crate::resource_types::is_resource_type(ty) => Some((Some(ty.to_owned()), id.to_owned())),
        Some(_) => None,
        None => Some((None, id.to_owned())),
    }
}

fn references(v: &Value, out: &mut Vec<IndexValue>) {
    if let Some((target_type, target_id)) = v.get("reference").and_then(Value::as_str).and_then(split_reference) {
        out.push(IndexValue::Reference { target_type, target_id });
    }
}

fn quantities(v: &Value, out: &mut Vec<IndexValue>) {
    if let Some(value) = v.get("value").and_then(Value::as_f64) {
        out.push(IndexValue::Quantity {
            value,
            system: text(v, "system"),
            code: text(v, "code").or_else(|| text(v, "unit")),
        });
    }
}

/// Every index entry of a resource (its `_lastUpdated` is added by the store).
pub fn index_entries(resource: &Value) -> Vec<IndexEntry> {
    let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else {
        return Vec::new();
    };
    let mut entries = Vec::new();
    for param in params_of(resource_type) {
        let mut found = Vec::new();
        for path in param.paths {
            values_at(resource, path, &mut found);
        }
        let mut values = Vec::new();
        for v in found {
            match param.kind {
                Kind::Token => tokens(v, &mut values),
                Kind::String => strings(v, &mut values),
                Kind::Date => dates(v, &mut values),
                Kind::Reference => references(v, &mut values),
                Kind::Quantity => quantities(v, &mut values),
            }
        }
        entries.extend(values.into_iter().map(|value| IndexEntry { param: param.name, value }));
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn of(resource: Value, param: &str) -> Vec<IndexValue> {
        index_entries(&resource).into_iter().filter(|e| e.param == param).map(|e| e.value).collect()
    }

    #[test]
    fn tokens_strings_dates_references_quantities() {
        let obs = json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Heart rate"},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2026-03-04T10:00:00Z",
            "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
        });
        assert_eq!(
            of(obs.clone(), "code"),
            vec![IndexValue::Token { system: Some("http://loinc.org".into()), code: "8867-4".into() }]
        );
        assert_eq!(of(obs.clone(), "status"), vec![IndexValue::Token { system: None, code: "final".into() }]);
        assert_eq!(
            of(obs.clone(), "patient"),
            vec![IndexValue::Reference { target_type: Some("Patient".into()), target_id: "p1".into() }]
        );
        assert!(matches!(of(obs.clone(), "date")[0], IndexValue::Date { low, high } if low == high));
        assert!(matches!(&of(obs, "value-quantity")[0], IndexValue::Quantity { value, .. } if *value == 72.0));
        let patient = json!({"resourceType": "Patient", "name": [{"family": "Ångström", "given": ["Zoë", "B"]}], "active": true,
                             "identifier": [{"system": "urn:mrn", "value": "42"}]});
        let names = of(patient.clone(), "name");
        assert!(names.contains(&IndexValue::String { folded: "angstrom".into(), exact: "Ångström".into() }));
        assert_eq!(names.len(), 3);
        assert_eq!(of(patient.clone(), "active"), vec![IndexValue::Token { system: None, code: "true".into() }]);
        assert_eq!(
            of(patient, "identifier"),
            vec![IndexValue::Token { system: Some("urn:mrn".into()), code: "42".into() }]
        );
        let enc = json!({"resourceType": "Encounter", "period": {"start": "2026-01-01"}});
        assert!(matches!(of(enc, "date")[0], IndexValue::Date { high: i64::MAX, .. }));
    }

    #[test]
    fn references_may_be_absolute() {
        assert_eq!(split_reference("Patient/1"), Some((Some("Patient".into()), "1".into())));
        assert_eq!(split_reference("http://x/fhir/Patient/1"), Some((Some("Patient".into()), "1".into())));
        assert_eq!(split_reference("1"), Some((None, "1".into())));
        assert_eq!(split_reference("urn:uuid:abc/x"), None);
    }
}
