//! Basic validity of a resource sent by a client: JSON object, known `resourceType`, matching
//! the URL, id syntax.  Each error says what is wrong (→ 400 OperationOutcome).

use serde_json::Value;

use crate::is_valid_id;
use crate::resource_types::is_resource_type;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body must be a JSON object (a FHIR resource)")]
    NotObject,
    #[error("the resource has no resourceType")]
    NoResourceType,
    #[error("`{0}` is not a FHIR R4 resource type")]
    UnknownType(String),
    #[error("the resource is a {found} but the URL names {expected}")]
    WrongType { expected: String, found: String },
    #[error("`{0}` is not a valid FHIR id (1–64 characters of A–Z, a–z, 0–9, `-` and `.`)")]
    BadId(String),
    #[error("an update must carry the resource's id in the body")]
    MissingId,
    #[error("the id in the body ({body}) differs from the id in the URL ({url})")]
    IdMismatch { url: String, body: String },
}

/// Parses a resource body for `resource_type`.
pub fn parse_resource(body: &[u8], resource_type: &str) -> Result<Value, Invalid> {
    let value: Value = serde_json::from_slice(body).map_err(|e| Invalid::NotJson(e.to_string()))?;
    check_resource(&value, resource_type)?;
    Ok(value)
}

/// Checks an already parsed resource for `resource_type`.
pub fn check_resource(value: &Value, resource_type: &str) -> Result<(), Invalid> {
    if !value.is_object() {
        return Err(Invalid::NotObject);
    }
    let found = value.get("resourceType").and_then(Value::as_str).ok_or(Invalid::NoResourceType)?;
    if !is_resource_type(found) {
        return Err(Invalid::UnknownType(found.chars().take(64).collect()));
    }
    if found != resource_type {
        return Err(Invalid::WrongType { expected: resource_type.to_owned(), found: found.to_owned() });
    }
    if let Some(id) = value.get("id") {
        match id.as_str() {
            Some(id) if is_valid_id(id) => {}
            _ => return Err(Invalid::BadId(id.to_string().chars().take(80).collect())),
        }
    }
    Ok(())
}

/// For an update: the body's id must be present and equal the URL's.
pub fn check_update_id(resource: &Value, url_id: &str) -> Result<(), Invalid> {
    match resource.get("id").and_then(Value::as_str) {
        None => Err(Invalid::MissingId),
        Some(id) if id != url_id => Err(Invalid::IdMismatch { url: url_id.to_owned(), body: id.to_owned() }),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_checked() {
        assert!(parse_resource(br#"{"resourceType":"Observation","status":"final"}"#, "Observation").is_ok());
        assert!(matches!(parse_resource(b"{", "Observation"), Err(Invalid::NotJson(_))));
        assert_eq!(parse_resource(b"[]", "Observation"), Err(Invalid::NotObject));
        assert_eq!(parse_resource(b"{}", "Observation"), Err(Invalid::NoResourceType));
        assert!(matches!(parse_resource(br#"{"resourceType":"Foo"}"#, "Foo"), Err(Invalid::UnknownType(_))));
        assert!(matches!(
            parse_resource(br#"{"resourceType":"Patient"}"#, "Observation"),
            Err(Invalid::WrongType { .. })
        ));
        assert!(matches!(
            parse_resource(br#"{"resourceType":"Patient","id":"a b"}"#, "Patient"),
            Err(Invalid::BadId(_))
        ));
        assert!(matches!(parse_resource(br#"{"resourceType":"Patient","id":7}"#, "Patient"), Err(Invalid::BadId(_))));
        let p = parse_resource(br#"{"resourceType":"Patient","id":"a"}"#, "Patient").unwrap();
        assert!(check_update_id(&p, "a").is_ok());
        assert!(matches!(check_update_id(&p, "b"), Err(Invalid::IdMismatch { .. })));
        let no_id = parse_resource(br#"{"resourceType":"Patient"}"#, "Patient").unwrap();
        assert_eq!(check_update_id(&no_id, "a"), Err(Invalid::MissingId));
    }
}
