//! The typed requests of the FHIR REST API (R4 §3.1.0): what an interaction needs, already
//! parsed from the HTTP request (or from a batch entry).  Constructors validate the resource
//! type, the id and the version, so an interaction never sees a malformed path.

use serde_json::Value;

use super::error::FhirError;
use crate::is_valid_id;
use crate::limits::RESPONSE_BUDGET_BYTES;
use crate::resource_types::is_resource_type;

/// A FHIR R4 resource type named by a request's path (`[base]/{type}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypePath(String);

impl TypePath {
    /// 404 `not-supported` for a name that is not an R4 resource type.
    pub fn parse(resource_type: &str) -> Result<TypePath, FhirError> {
        if is_resource_type(resource_type) {
            Ok(TypePath(resource_type.to_owned()))
        } else {
            Err(FhirError::UnknownType(resource_type.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One resource named by a request's path (`[base]/{type}/{id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstancePath {
    pub resource_type: String,
    pub id: String,
}

impl InstancePath {
    /// The type first (404), then the id (400: 1–64 of `[A-Za-z0-9-.]`).
    pub fn parse(resource_type: &str, id: &str) -> Result<InstancePath, FhirError> {
        let TypePath(resource_type) = TypePath::parse(resource_type)?;
        if !is_valid_id(id) {
            return Err(FhirError::Invalid("a FHIR id is 1–64 characters of A–Z, a–z, 0–9, `-` and `.`".into()));
        }
        Ok(InstancePath { resource_type, id: id.to_owned() })
    }
}

/// A version id in a path (`_history/{vid}`).
pub fn parse_version_id(vid: &str) -> Result<i64, FhirError> {
    vid.parse::<i64>().map_err(|_| FhirError::Invalid("the version id must be a number".into()))
}

/// An ETag as sent in `If-Match` (or a Bundle entry's `request.ifMatch`): `W/"3"` → 3.
pub fn parse_if_match(value: &str) -> Result<i64, FhirError> {
    value
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i64>()
        .map_err(|_| FhirError::Invalid("If-Match must be an ETag such as W/\"3\"".into()))
}

/// `POST [base]/{type}`: create, conditional when `if_none_exist` holds a search.
#[derive(Debug, Clone, PartialEq)]
pub struct Create {
    pub resource_type: TypePath,
    /// The resource sent (checked by the service: object, type, id syntax).
    pub resource: Value,
    /// `If-None-Exist`, decoded into search parameters.
    pub if_none_exist: Option<Vec<(String, String)>>,
}

/// `PUT [base]/{type}/{id}`: update, or update-as-create; `if_match` makes it conditional.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub path: InstancePath,
    pub resource: Value,
    pub if_match: Option<i64>,
}

/// `DELETE [base]/{type}/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub path: InstancePath,
    pub if_match: Option<i64>,
}

/// `GET [base]/{type}?…` (or `POST [base]/{type}/_search`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    pub resource_type: TypePath,
    pub params: Vec<(String, String)>,
    /// `Prefer: handling=strict`: unknown parameters are an error, not ignored.
    pub strict: bool,
    /// The most bytes of resource JSON the answer may hold (a batch passes what is left of its
    /// budget).
    pub max_bytes: usize,
}

impl Search {
    /// A search answered within the whole response budget.
    pub fn new(resource_type: TypePath, params: Vec<(String, String)>, strict: bool) -> Search {
        Search { resource_type, params, strict, max_bytes: RESPONSE_BUDGET_BYTES }
    }
}

/// One interaction of the REST API, as a batch entry names it (and as the HTTP handlers call
/// the service for it).
#[derive(Debug, Clone, PartialEq)]
pub enum FhirRequest {
    Read(InstancePath),
    VRead(InstancePath, i64),
    History(InstancePath),
    TypeHistory(TypePath, Vec<(String, String)>),
    Search(Search),
    Create(Create),
    Update(Update),
    Delete(Delete),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_versions_and_etags_are_validated() {
        assert_eq!(TypePath::parse("Foo").unwrap_err().status(), 404);
        assert_eq!(InstancePath::parse("Foo", "bad id").unwrap_err().status(), 404, "the type is checked first");
        assert_eq!(InstancePath::parse("Patient", "bad id").unwrap_err().status(), 400);
        assert_eq!(InstancePath::parse("Patient", "p-1.x").unwrap().id, "p-1.x");
        assert_eq!(parse_version_id("x").unwrap_err().status(), 400);
        assert_eq!(parse_if_match(" W/\"3\" ").unwrap(), 3);
        assert_eq!(parse_if_match("\"4\"").unwrap(), 4);
        assert_eq!(parse_if_match("nonsense").unwrap_err().status(), 400);
    }
}
