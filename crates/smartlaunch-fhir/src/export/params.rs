//! The kick-off request's parameters (Bulk Data IG v2.0.0, "Query Parameters"): `_outputFormat`,
//! `_type`, `_since` and `_typeFilter`, from a query string or a POSTed `Parameters` resource.
//! The parameters this server does not implement are refused unless the client sent
//! `Prefer: handling=lenient` (IG v2: "a server SHOULD return an error … unless lenient").

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ExportError;
use crate::limits::{MAX_OR_VALUES, MAX_SEARCH_PARAMETERS};
use crate::resource_types::{is_resource_type, R4_RESOURCE_TYPES};
use crate::search::normalize::date_range;
use crate::search::query::{parse, Clause};

/// Which data an export covers: `[base]/$export`, `[base]/Patient/$export` or
/// `[base]/Group/[id]/$export`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportLevel {
    System,
    Patient,
    Group(String),
}

/// The kick-off parameters, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportParams {
    /// `_type`: the types asked for, deduplicated, in the order given (`None`: every type).
    #[serde(default)]
    pub types: Option<Vec<String>>,
    /// `_since`, as a UTC instant at one-second precision (`2026-01-02T03:04:05Z`).
    #[serde(default)]
    pub since: Option<String>,
    /// `_typeFilter`: `Type?query` strings, each checked to parse as a search of its type.
    #[serde(default)]
    pub type_filters: Vec<String>,
}

/// The most `_typeFilter` queries in one kick-off (→ 400 `too-costly`).
pub const MAX_TYPE_FILTERS: usize = 20;

/// The most `_type` entries, repeats included (→ 400 `too-costly`); there are fewer R4 types.
const MAX_TYPE_ENTRIES: usize = 1_000;

/// Kick-off parameters of the IG that this server does not implement.
const UNSUPPORTED: &[&str] =
    &["_elements", "patient", "includeAssociatedData", "_until", "organizeOutputBy", "allowPartialManifests"];

/// The accepted `_outputFormat` values (the IG's required format and its abbreviations).
const OUTPUT_FORMATS: &[&str] = &["application/fhir+ndjson", "application/ndjson", "ndjson"];

/// Parses and checks the kick-off parameters.  `lenient` (`Prefer: handling=lenient`) ignores
/// the parameters this server does not implement instead of refusing them; a malformed value is
/// refused either way.
pub fn parse_kickoff(pairs: &[(String, String)], lenient: bool) -> Result<ExportParams, ExportError> {
    let mut params = ExportParams::default();
    let mut type_entries = 0usize;
    for (key, value) in pairs {
        match key.as_str() {
            "_outputFormat" => {
                if !OUTPUT_FORMATS.contains(&value.as_str()) {
                    return Err(ExportError::NotSupported(format!(
                        "_outputFormat `{value}` is not supported: this server writes application/fhir+ndjson \
                         (also accepted as application/ndjson or ndjson)"
                    )));
                }
            }
            "_type" => {
                let types = params.types.get_or_insert_with(Vec::new);
                for t in value.split(',').map(str::trim) {
                    type_entries += 1;
                    if type_entries > MAX_TYPE_ENTRIES {
                        return Err(ExportError::TooCostly(format!(
                            "_type lists more than {MAX_TYPE_ENTRIES} entries; there are {} R4 resource types",
                            R4_RESOURCE_TYPES.len()
                        )));
                    }
                    if !is_resource_type(t) {
                        return Err(ExportError::Invalid(format!("_type: `{t}` is not a FHIR R4 resource type")));
                    }
                    if !types.iter().any(|known| known == t) {
                        types.push(t.to_owned());
                    }
                }
            }
            "_since" => {
                if params.since.is_some() {
                    return Err(ExportError::Invalid("_since may be given once".into()));
                }
                params.since = Some(parse_instant(value).ok_or_else(|| {
                    ExportError::Invalid(format!(
                        "_since must be a FHIR instant with a time zone, such as 2026-01-02T03:04:05Z (got `{value}`)"
                    ))
                })?);
            }
            "_typeFilter" => {
                for query in value.split(',').filter(|q| !q.is_empty()) {
                    params.type_filters.push(query.to_owned());
                }
            }
            k if UNSUPPORTED.contains(&k) => {
                if !lenient {
                    return Err(ExportError::NotSupported(format!(
                        "the kick-off parameter {k} is not supported by this server; leave it out, or send \
                         Prefer: handling=lenient to have it ignored"
                    )));
                }
            }
            k => {
                if !lenient {
                    return Err(ExportError::Invalid(format!(
                        "unknown kick-off parameter `{k}`: $export takes _outputFormat, _type, _since and \
                         _typeFilter (send Prefer: handling=lenient to have unknown parameters ignored)"
                    )));
                }
            }
        }
    }
    check_type_filters(&params)?;
    Ok(params)
}

/// A FHIR `instant` (date, time to the second, time zone) as a UTC instant at one-second
/// precision: the server's own `lastUpdated` precision, so that `_since` can be compared with it.
fn parse_instant(value: &str) -> Option<String> {
    let (date, time) = value.split_once('T')?;
    let zoned = time.ends_with('Z') || time.contains('+') || time.contains('-');
    if date.len() != 10 || time.len() < 9 || !zoned || time.as_bytes().get(5) != Some(&b':') {
        return None;
    }
    let (low, _) = date_range(value)?;
    Some(super::instant_of(low))
}

/// Each `_typeFilter` names a type (in `_type`, when given) and parses as search clauses of it
/// (no result parameters); together they hold at most [`MAX_SEARCH_PARAMETERS`] parameters.
fn check_type_filters(params: &ExportParams) -> Result<(), ExportError> {
    if params.type_filters.len() > MAX_TYPE_FILTERS {
        return Err(ExportError::TooCostly(format!(
            "{} _typeFilter queries; at most {MAX_TYPE_FILTERS} are accepted",
            params.type_filters.len()
        )));
    }
    let mut parameters = 0usize;
    for query in &params.type_filters {
        let (ty, clauses) = parse_type_filter(query)?;
        if params.types.as_ref().is_some_and(|types| !types.contains(&ty)) {
            return Err(ExportError::Invalid(format!(
                "_typeFilter `{query}` is for {ty}, which _type leaves out; add {ty} to _type"
            )));
        }
        parameters += clauses.len();
    }
    if parameters > MAX_SEARCH_PARAMETERS {
        return Err(ExportError::TooCostly(format!(
            "the _typeFilter queries hold {parameters} search parameters in all; at most {MAX_SEARCH_PARAMETERS} \
             are accepted (each with at most {MAX_OR_VALUES} comma-separated values)"
        )));
    }
    Ok(())
}

/// One `_typeFilter` query, `Type?param=value&…` (its values percent-encoded), as the type and
/// its search clauses.  The search engine's own rules and limits apply; result parameters
/// (`_count`, `_sort`, `_include`, …) have no meaning here and are refused.
pub(crate) fn parse_type_filter(query: &str) -> Result<(String, Vec<Clause>), ExportError> {
    let invalid = |why: String| ExportError::Invalid(format!("_typeFilter `{query}`: {why}"));
    let (ty, search) = query.split_once('?').ok_or_else(|| invalid("write it as Type?param=value".into()))?;
    if !is_resource_type(ty) {
        return Err(invalid(format!("`{ty}` is not a FHIR R4 resource type")));
    }
    let pairs: Vec<(String, String)> = form_urlencoded::parse(search.as_bytes()).into_owned().collect();
    if pairs.is_empty() {
        return Err(invalid("it has no search parameters".into()));
    }
    if let Some((k, _)) = pairs.iter().find(|(k, _)| k.starts_with('_') && k != "_id" && k != "_lastUpdated") {
        return Err(invalid(format!("{k} shapes a search response and cannot filter an export")));
    }
    let request = parse(ty, &pairs, true).map_err(|e| invalid(e.to_string()))?;
    Ok((ty.to_owned(), request.clauses))
}

/// The kick-off parameters of a POSTed `Parameters` resource, as name–value pairs (each
/// `value[x]` that is a string, code, instant or URI; a `patient` reference is passed on as its
/// reference, to be refused as unsupported).
pub fn parameters_to_pairs(body: &Value) -> Result<Vec<(String, String)>, ExportError> {
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(ExportError::Invalid("a POSTed kick-off must be a Parameters resource".into()));
    }
    let mut pairs = Vec::new();
    for p in body.get("parameter").and_then(Value::as_array).into_iter().flatten() {
        let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
        let value = ["valueString", "valueCode", "valueInstant", "valueUri", "valueUrl"]
            .iter()
            .find_map(|k| p.get(*k).and_then(Value::as_str))
            .or_else(|| p.pointer("/valueReference/reference").and_then(Value::as_str));
        match value {
            Some(v) if !name.is_empty() => pairs.push((name.to_owned(), v.to_owned())),
            _ => {
                return Err(ExportError::Invalid(format!(
                    "parameter `{name}` needs a name and a valueString (or valueCode, valueInstant, valueUri)"
                )))
            }
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn types_are_checked_and_deduplicated() {
        let p =
            parse_kickoff(&pairs(&[("_type", "Patient, Observation,Patient"), ("_type", "Condition")]), false).unwrap();
        assert_eq!(p.types.unwrap(), ["Patient", "Observation", "Condition"]);
        let e = parse_kickoff(&pairs(&[("_type", "Patient,Nope")]), false).unwrap_err();
        assert_eq!(e, ExportError::Invalid("_type: `Nope` is not a FHIR R4 resource type".into()));
        let huge = vec!["Patient"; MAX_TYPE_ENTRIES + 1].join(",");
        assert!(matches!(parse_kickoff(&pairs(&[("_type", &huge)]), false), Err(ExportError::TooCostly(_))));
    }

    #[test]
    fn output_format_is_ndjson_in_any_of_its_spellings() {
        for f in OUTPUT_FORMATS {
            assert!(parse_kickoff(&pairs(&[("_outputFormat", f)]), false).is_ok());
        }
        for lenient in [false, true] {
            assert!(matches!(
                parse_kickoff(&pairs(&[("_outputFormat", "text/csv")]), lenient),
                Err(ExportError::NotSupported(_))
            ));
        }
    }

    #[test]
    fn since_is_an_instant_with_a_zone_kept_at_second_precision() {
        let p = parse_kickoff(&pairs(&[("_since", "2026-01-02T03:04:05.678+02:00")]), false).unwrap();
        assert_eq!(p.since.as_deref(), Some("2026-01-02T01:04:05Z"));
        for bad in ["2026-01-02", "2026-01-02T03:04:05", "yesterday", "2026-01-02T03:04Z"] {
            assert!(matches!(parse_kickoff(&pairs(&[("_since", bad)]), false), Err(ExportError::Invalid(_))), "{bad}");
        }
        let twice = pairs(&[("_since", "2026-01-02T03:04:05Z"), ("_since", "2026-01-02T03:04:05Z")]);
        assert!(parse_kickoff(&twice, false).is_err());
    }

    #[test]
    fn unsupported_and_unknown_parameters_are_refused_unless_lenient() {
        for k in ["_elements", "patient", "_until", "_count", "frobnicate"] {
            assert!(parse_kickoff(&pairs(&[(k, "x")]), false).is_err(), "{k}");
            assert!(parse_kickoff(&pairs(&[(k, "x")]), true).is_ok(), "{k} lenient");
        }
    }

    #[test]
    fn type_filters_are_searches_of_a_requested_type() {
        let q = "Observation?category=http://terminology.hl7.org/CodeSystem/observation-category%7Claboratory";
        let p = parse_kickoff(&pairs(&[("_type", "Observation"), ("_typeFilter", q)]), false).unwrap();
        assert_eq!(p.type_filters, [q]);
        let (ty, clauses) = parse_type_filter(q).unwrap();
        assert_eq!((ty.as_str(), clauses.len()), ("Observation", 1));
        let two = "Observation?code=8867-4%2C8310-5,Condition?clinical-status=active";
        let p = parse_kickoff(&pairs(&[("_typeFilter", two)]), false).unwrap();
        assert_eq!(p.type_filters.len(), 2, "comma-separated queries; %2C inside one is an OR");
        assert_eq!(parse_type_filter(&p.type_filters[0]).unwrap().1[0].values.len(), 2);
        let cases = [
            ("Condition?clinical-status=active", "which _type leaves out"),
            ("Observation", "Type?param=value"),
            ("Nope?x=1", "not a FHIR R4 resource type"),
            ("Observation?nope=1", "unknown or unsupported search parameter"),
            ("Observation?_count=1", "cannot filter an export"),
            ("Observation?_include=Observation:patient", "cannot filter an export"),
        ];
        for (filter, why) in cases {
            let e = parse_kickoff(&pairs(&[("_type", "Observation"), ("_typeFilter", filter)]), true).unwrap_err();
            assert!(e.to_string().contains(why), "{filter}: {e}");
        }
        let many = vec!["Observation?status=final"; MAX_TYPE_FILTERS + 1].join(",");
        assert!(matches!(parse_kickoff(&pairs(&[("_typeFilter", &many)]), false), Err(ExportError::TooCostly(_))));
        let wide = format!("Observation?{}", vec!["status=final"; 30].join("&"));
        let e = parse_kickoff(&pairs(&[("_typeFilter", &format!("{wide},{wide}"))]), false).unwrap_err();
        assert!(matches!(e, ExportError::TooCostly(_)), "{e}");
    }

    #[test]
    fn parameters_resources_become_pairs() {
        let body = json!({"resourceType": "Parameters", "parameter": [
            {"name": "_type", "valueString": "Patient"},
            {"name": "_since", "valueInstant": "2026-01-02T03:04:05Z"},
            {"name": "patient", "valueReference": {"reference": "Patient/pat-001"}}
        ]});
        assert_eq!(
            parameters_to_pairs(&body).unwrap(),
            pairs(&[("_type", "Patient"), ("_since", "2026-01-02T03:04:05Z"), ("patient", "Patient/pat-001")])
        );
        assert!(parameters_to_pairs(&json!({"resourceType": "Patient"})).is_err());
        assert!(parameters_to_pairs(&json!({"resourceType": "Parameters", "parameter": [{"name": "_type"}]})).is_err());
    }
}
