//! Parsing a search (R4 §3.1.1): parameters with modifiers and prefixes, comma-separated values
//! (OR) and repeated parameters (AND), and the result parameters `_count`, `_offset`, `_sort`,
//! `_summary=count`, `_elements`.

use super::extract::split_reference;
use super::normalize::{date_range, fold};
use super::params::{param, Kind};

pub use crate::limits::{DEFAULT_COUNT, MAX_COUNT};
use crate::limits::{MAX_OR_VALUES, MAX_SEARCH_PARAMETERS, MAX_VALUE_BYTES};

/// What a clause searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `_id`: the resource id.
    Id,
    /// An indexed parameter (including `_lastUpdated`).
    Indexed { name: &'static str, kind: Kind },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modifier {
    None,
    /// `:missing=true|false`
    Missing(bool),
    /// `:exact` (strings)
    Exact,
    /// `:contains` (strings)
    Contains,
}

/// Comparison prefixes of dates and quantities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClauseValue {
    Id(String),
    /// `system`: `None` any system, `Some(None)` no system (`|code`), `Some(Some(s))` that system.
    /// `code`: `None` any code (`system|`).
    Token {
        system: Option<Option<String>>,
        code: Option<String>,
    },
    /// Folded for the default and `:contains`, as given for `:exact`.
    String(String),
    Date {
        prefix: Prefix,
        low: i64,
        high: i64,
    },
    Reference {
        target_type: Option<String>,
        id: String,
    },
    /// `[prefix]number|system|code`; `low..high` is the number's precision range.
    Quantity {
        prefix: Prefix,
        value: f64,
        low: f64,
        high: f64,
        system: Option<String>,
        code: Option<String>,
    },
}

/// One parameter occurrence: its values are alternatives (OR); clauses combine with AND.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub target: Target,
    pub modifier: Modifier,
    pub values: Vec<ClauseValue>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub target: Target,
    pub descending: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    pub clauses: Vec<Clause>,
    /// `_include=Type:param[:Target]`: (reference parameter of the searched type, target type).
    pub include: Vec<(&'static str, Option<String>)>,
    /// `_revinclude=Type:param`: resources of `Type` whose `param` references a match.
    pub revinclude: Vec<(String, &'static str)>,
    pub count: i64,
    pub offset: i64,
    pub sort: Vec<SortKey>,
    pub summary_count: bool,
    pub elements: Option<Vec<String>>,
    /// The most bytes of resource JSON the page may hold (the response budget).
    pub max_bytes: usize,
}

impl SearchRequest {
    /// A plain request for the resources matching `clauses` (at most `MAX_COUNT`).
    pub fn matching(clauses: Vec<Clause>) -> SearchRequest {
        SearchRequest {
            clauses,
            include: Vec::new(),
            revinclude: Vec::new(),
            count: MAX_COUNT,
            offset: 0,
            sort: Vec::new(),
            summary_count: false,
            elements: None,
            max_bytes: crate::limits::RESPONSE_BUDGET_BYTES,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    /// An unknown or unsupported parameter (ignored unless `Prefer: handling=strict`).
    #[error("unknown or unsupported search parameter `{0}`")]
    Unknown(String),
    #[error("{0}")]
    Invalid(String),
}

/// Parameters that only shape the response and are accepted (and ignored) everywhere.
const IGNORED: &[&str] = &["_format", "_pretty", "_total"];

/// Parses the query of a search on `resource_type`.  Unknown parameters are an error when
/// `strict`, and ignored otherwise (R4 `Prefer: handling`).
pub fn parse(resource_type: &str, pairs: &[(String, String)], strict: bool) -> Result<SearchRequest, SearchError> {
    if pairs.len() > MAX_SEARCH_PARAMETERS {
        return Err(SearchError::Invalid(format!(
            "this search has {} parameters; at most {MAX_SEARCH_PARAMETERS} are accepted (split the search)",
            pairs.len()
        )));
    }
    let mut request = SearchRequest {
        clauses: Vec::new(),
        include: Vec::new(),
        revinclude: Vec::new(),
        count: DEFAULT_COUNT,
        offset: 0,
        sort: Vec::new(),
        summary_count: false,
        elements: None,
        max_bytes: crate::limits::RESPONSE_BUDGET_BYTES,
    };
    for (key, value) in pairs {
        let result = match key.as_str() {
            "_count" => value
                .parse::<i64>()
                .ok()
                .filter(|c| *c >= 0)
                .map(|c| request.count = c.min(MAX_COUNT))
                .ok_or_else(|| SearchError::Invalid("_count must be a non-negative number".into())),
            "_offset" => value
                .parse::<i64>()
                .ok()
                .filter(|o| *o >= 0)
                .map(|o| request.offset = o)
                .ok_or_else(|| SearchError::Invalid("_offset must be a non-negative number".into())),
            "_sort" => parse_sort(resource_type, value).map(|s| request.sort = s),
            "_summary" if value == "count" => {
                request.summary_count = true;
                Ok(())
            }
            "_summary" => Err(SearchError::Invalid("only _summary=count is supported".into())),
            "_elements" => {
                request.elements =
                    Some(value.split(',').map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()).collect());
                Ok(())
            }
            "_include" => parse_include(resource_type, value).map(|i| request.include.push(i)),
            "_revinclude" => parse_revinclude(value).map(|i| request.revinclude.push(i)),
            k if IGNORED.contains(&k) => Ok(()),
            _ => parse_clause(resource_type, key, value).map(|c| request.clauses.push(c)),
        };
        match result {
            Err(SearchError::Unknown(_)) if !strict => {}
            Err(e) => return Err(e),
            Ok(()) => {}
        }
    }
    Ok(request)
}

/// Parses the `?param=value&…` filter of a granular scope as clauses; any unsupported part
/// makes the whole filter unusable (`None`), so the scope can never widen.
pub fn parse_filter(resource_type: &str, filter: &[(String, String)]) -> Option<Vec<Clause>> {
    filter.iter().map(|(k, v)| parse_clause(resource_type, k, v).ok()).collect()
}

/// A reference search parameter of a type.
fn reference_param(resource_type: &str, name: &str) -> Option<&'static str> {
    param(resource_type, name).filter(|p| p.kind == Kind::Reference).map(|p| p.name)
}

fn parse_include(resource_type: &str, value: &str) -> Result<(&'static str, Option<String>), SearchError> {
    let mut parts = value.split(':');
    let (source, name, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), parts.next());
    if source != resource_type {
        return Err(SearchError::Invalid(format!("_include must name the searched type: {resource_type}:<parameter>")));
    }
    let name = reference_param(resource_type, name).ok_or_else(|| {
        SearchError::Invalid(format!("_include: `{name}` is not a reference parameter of {resource_type}"))
    })?;
    Ok((name, target.filter(|t| crate::resource_types::is_resource_type(t)).map(str::to_owned)))
}

fn parse_revinclude(value: &str) -> Result<(String, &'static str), SearchError> {
    let mut parts = value.split(':');
    let (source, name) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let name = reference_param(source, name)
        .ok_or_else(|| SearchError::Invalid(format!("_revinclude: `{source}:{name}` is not a reference parameter")))?;
    Ok((source.to_owned(), name))
}

fn target(resource_type: &str, name: &str) -> Option<Target> {
    match name {
        "_id" => Some(Target::Id),
        "_lastUpdated" => Some(Target::Indexed { name: "_lastUpdated", kind: Kind::Date }),
        _ => param(resource_type, name).map(|p| Target::Indexed { name: p.name, kind: p.kind }),
    }
}

fn parse_sort(resource_type: &str, value: &str) -> Result<Vec<SortKey>, SearchError> {
    if value.split(',').count() > MAX_OR_VALUES {
        return Err(SearchError::Invalid(format!("_sort takes at most {MAX_OR_VALUES} keys")));
    }
    value
        .split(',')
        .map(|s| {
            let (name, descending) = match s.trim().strip_prefix('-') {
                Some(n) => (n, true),
                None => (s.trim(), false),
            };
            match target(resource_type, name) {
                Some(t @ (Target::Id | Target::Indexed { kind: Kind::Date | Kind::String | Kind::Token, .. })) => {
                    Ok(SortKey { target: t, descending })
                }
                _ => Err(SearchError::Invalid(format!("cannot sort {resource_type} by `{name}`"))),
            }
        })
        .collect()
}

/// Splits a value list on unescaped commas and unescapes `\,` `\|` `\$` `\\`.
fn split_values(value: &str) -> Vec<String> {
    let mut values = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    values.last_mut().expect("non-empty").push(next);
                }
            }
            ',' => values.push(String::new()),
            c => values.last_mut().expect("non-empty").push(c),
        }
    }
    values
}

fn parse_prefix(value: &str) -> (Prefix, &str) {
    let prefixes = [
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("gt", Prefix::Gt),
        ("lt", Prefix::Lt),
        ("ge", Prefix::Ge),
        ("le", Prefix::Le),
    ];
    for (p, prefix) in prefixes {
        if let Some(rest) = value.strip_prefix(p) {
            if rest.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.') {
                return (prefix, rest);
            }
        }
    }
    (Prefix::Eq, value)
}

fn parse_clause(resource_type: &str, key: &str, value: &str) -> Result<Clause, SearchError> {
    let (name, modifier) = match key.split_once(':') {
        Some((n, m)) => (n, Some(m)),
        None => (key, None),
    };
    let target = target(resource_type, name).ok_or_else(|| SearchError::Unknown(key.to_owned()))?;
    let kind = match target {
        Target::Id => Kind::Token,
        Target::Indexed { kind, .. } => kind,
    };
    let modifier = match (modifier, kind) {
        (None, _) => Modifier::None,
        (Some("missing"), _) => match value {
            "true" => return Ok(Clause { target, modifier: Modifier::Missing(true), values: Vec::new() }),
            "false" => return Ok(Clause { target, modifier: Modifier::Missing(false), values: Vec::new() }),
            _ => return Err(SearchError::Invalid(format!("{key} takes true or false"))),
        },
        (Some("exact"), Kind::String) => Modifier::Exact,
        (Some("contains"), Kind::String) => Modifier::Contains,
        (Some(t), Kind::Reference) if crate::resource_types::is_resource_type(t) => Modifier::None,
        (Some(_), _) => return Err(SearchError::Unknown(key.to_owned())),
    };
    let reference_type = modifier_type(key);
    let invalid = |why: &str| SearchError::Invalid(format!("{key}={value}: {why}"));
    let raw = split_values(value);
    if raw.len() > MAX_OR_VALUES {
        return Err(SearchError::Invalid(format!(
            "{key} has {} comma-separated values; at most {MAX_OR_VALUES} are accepted per parameter (split the search)",
            raw.len()
        )));
    }
    let mut values = Vec::new();
    for v in raw {
        if v.is_empty() {
            return Err(invalid("empty value"));
        }
        if v.len() > MAX_VALUE_BYTES {
            return Err(SearchError::Invalid(format!(
                "a value of {key} is {} bytes long; at most {MAX_VALUE_BYTES} are accepted",
                v.len()
            )));
        }
        values.push(match (target, kind) {
            (Target::Id, _) => ClauseValue::Id(v),
            (_, Kind::Token) => match v.split_once('|') {
                Some(("", code)) => ClauseValue::Token { system: Some(None), code: Some(code.to_owned()) },
                Some((system, "")) => ClauseValue::Token { system: Some(Some(system.to_owned())), code: None },
                Some((system, code)) => {
                    ClauseValue::Token { system: Some(Some(system.to_owned())), code: Some(code.to_owned()) }
                }
                None => ClauseValue::Token { system: None, code: Some(v) },
            },
            (_, Kind::String) => ClauseValue::String(if modifier == Modifier::Exact { v } else { fold(&v) }),
            (_, Kind::Date) => {
                let (prefix, rest) = parse_prefix(&v);
                let (low, high) = date_range(rest)
                    .ok_or_else(|| invalid("not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or a dateTime)"))?;
                ClauseValue::Date { prefix, low, high }
            }
            (_, Kind::Reference) => {
                let (target_type, id) = split_reference(&v).ok_or_else(|| invalid("a reference is Type/id or id"))?;
                ClauseValue::Reference { target_type: target_type.or_else(|| reference_type.clone()), id }
            }
            (_, Kind::Quantity) => {
                let (prefix, rest) = parse_prefix(&v);
                let mut parts = rest.splitn(3, '|');
                let number = parts.next().unwrap_or_default();
                let value: f64 = number.parse().map_err(|_| invalid("a quantity is [prefix]number[|system|code]"))?;
                let decimals = number.split_once('.').map_or(0, |(_, d)| d.len() as i32);
                let half = 0.5 * 10f64.powi(-decimals);
                let system = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
                let code = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
                ClauseValue::Quantity { prefix, value, low: value - half, high: value + half, system, code }
            }
        });
    }
    Ok(Clause { target, modifier, values })
}

/// `subject:Patient=123` → `Patient`.
fn modifier_type(key: &str) -> Option<String> {
    key.split_once(':').map(|(_, t)| t).filter(|t| crate::resource_types::is_resource_type(t)).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        q.split('&').filter_map(|p| p.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
    }

    #[test]
    fn tokens_strings_dates_references_quantities() {
        let r = parse("Observation", &pairs("code=http://loinc.org|8867-4,|x,y,sys|&subject=Patient/p1&date=ge2026-01&value-quantity=lt5.4|http://unitsofmeasure.org|mg"), true).unwrap();
        assert_eq!(r.clauses.len(), 4);
        assert_eq!(
            r.clauses[0].values,
            vec![
                ClauseValue::Token { system: Some(Some("http://loinc.org".into())), code: Some("8867-4".into()) },
                ClauseValue::Token { system: Some(None), code: Some("x".into()) },
                ClauseValue::Token { system: None, code: Some("y".into()) },
                ClauseValue::Token { system: Some(Some("sys".into())), code: None },
            ]
        );
        assert_eq!(
            r.clauses[1].values,
            vec![ClauseValue::Reference { target_type: Some("Patient".into()), id: "p1".into() }]
        );
        assert!(matches!(r.clauses[2].values[0], ClauseValue::Date { prefix: Prefix::Ge, .. }));
        match &r.clauses[3].values[0] {
            ClauseValue::Quantity { prefix, low, high, code, .. } => {
                assert_eq!(*prefix, Prefix::Lt);
                assert!((low - 5.35).abs() < 1e-9 && (high - 5.45).abs() < 1e-9);
                assert_eq!(code.as_deref(), Some("mg"));
            }
            other => panic!("{other:?}"),
        }
        let p =
            parse("Patient", &pairs("name=Zoë&family:exact=Shaw&given:contains=my&gender:missing=true"), true).unwrap();
        assert_eq!(p.clauses[0].values, vec![ClauseValue::String("zoe".into())]);
        assert_eq!(p.clauses[1].modifier, Modifier::Exact);
        assert_eq!(p.clauses[1].values, vec![ClauseValue::String("Shaw".into())]);
        assert_eq!(p.clauses[3].modifier, Modifier::Missing(true));
    }

    #[test]
    fn result_parameters() {
        let r = parse(
            "Observation",
            &pairs("_count=5000&_offset=10&_sort=-date,_id&_summary=count&_elements=id,code"),
            true,
        )
        .unwrap();
        assert_eq!(r.count, MAX_COUNT);
        assert_eq!(r.offset, 10);
        assert_eq!(r.sort.len(), 2);
        assert!(r.sort[0].descending);
        assert!(r.summary_count);
        assert_eq!(r.elements, Some(vec!["id".to_string(), "code".to_string()]));
        assert!(parse("Observation", &pairs("_count=-1"), false).is_err());
        assert!(parse("Observation", &pairs("_sort=value-quantity"), false).is_err());
    }

    #[test]
    fn includes() {
        let r = parse(
            "Observation",
            &pairs(
                "_include=Observation:patient&_include=Observation:encounter:Encounter&_revinclude=Condition:subject",
            ),
            true,
        )
        .unwrap();
        assert_eq!(r.include, vec![("patient", None), ("encounter", Some("Encounter".to_string()))]);
        assert_eq!(r.revinclude, vec![("Condition".to_string(), "subject")]);
        assert!(parse("Observation", &pairs("_include=Patient:general-practitioner"), true).is_err());
        assert!(parse("Observation", &pairs("_include=Observation:code"), true).is_err());
    }

    #[test]
    fn unknown_parameters_are_lenient_or_strict() {
        assert!(parse("Observation", &pairs("foo=bar&code=x"), false).is_ok());
        assert_eq!(parse("Observation", &pairs("foo=bar"), true), Err(SearchError::Unknown("foo".into())));
        assert!(matches!(parse("Observation", &pairs("code:fancy=x"), true), Err(SearchError::Unknown(_))));
        assert!(
            matches!(parse("Observation", &pairs("date=yesterday"), false), Err(SearchError::Invalid(_))),
            "bad values are always errors"
        );
    }

    #[test]
    fn scope_filters() {
        let f = vec![(
            "category".to_string(),
            "http://terminology.hl7.org/CodeSystem/observation-category|laboratory".to_string(),
        )];
        assert_eq!(parse_filter("Observation", &f).unwrap().len(), 1);
        assert!(parse_filter("Observation", &[("nope".into(), "x".into())]).is_none());
    }

    #[test]
    fn or_values_are_capped_per_parameter() {
        let values = |n: usize| (0..n).map(|i| format!("c{i}")).collect::<Vec<_>>().join(",");
        assert!(parse("Observation", &[("code".into(), values(MAX_OR_VALUES))], true).is_ok());
        let too_many = parse("Observation", &[("code".into(), values(MAX_OR_VALUES + 1))], false);
        assert!(matches!(too_many, Err(SearchError::Invalid(m)) if m.contains("at most 100")));
        let sorts = vec!["date"; MAX_OR_VALUES + 1].join(",");
        assert!(parse("Observation", &[("_sort".into(), sorts)], false).is_err());
        let long = "x".repeat(MAX_VALUE_BYTES + 1);
        assert!(
            matches!(parse("Observation", &[("code".into(), long)], false), Err(SearchError::Invalid(m)) if m.contains("at most 4096"))
        );
        let repeated = vec![("status".to_string(), "final".to_string()); MAX_SEARCH_PARAMETERS + 1];
        assert!(
            matches!(parse("Observation", &repeated, false), Err(SearchError::Invalid(m)) if m.contains("at most 50"))
        );
    }

    #[test]
    fn escaped_commas() {
        assert_eq!(split_values(r"a\,b,c"), vec!["a,b", "c"]);
    }
}
