//! Building response Bundles as JSON text: a stored resource is spliced in as it is, never
//! parsed and re-serialised to be sent.

use serde_json::Value;

/// `envelope` (a JSON object) with a `resource` member whose JSON text is `resource`.
pub fn with_resource(envelope: &Value, resource: &str) -> String {
    let mut out = envelope.to_string();
    if out.ends_with('}') && !resource.is_empty() {
        out.pop();
        out.push_str(if out.len() > 1 { ",\"resource\":" } else { "\"resource\":" });
        out.push_str(resource);
        out.push('}');
    }
    out
}

/// A Bundle: `head` (a JSON object without entries) with `entry` holding the entries' JSON text.
pub fn bundle_with_entries(head: &Value, entries: &[String]) -> String {
    let mut out = head.to_string();
    out.pop();
    out.reserve(entries.iter().map(|e| e.len() + 1).sum::<usize>() + 12);
    out.push_str(",\"entry\":[");
    for (n, e) in entries.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(e);
    }
    out.push_str("]}");
    out
}

/// The type and id of a resource's JSON (read without building the whole tree).
#[derive(serde::Deserialize, Default)]
pub(crate) struct Identity {
    #[serde(rename = "resourceType", default)]
    pub resource_type: String,
    #[serde(default)]
    pub id: String,
}

pub(crate) fn identity(json: &str) -> Identity {
    serde_json::from_str(json).unwrap_or_default()
}

/// A Bundle entry's `response.status`: the code and its reason phrase (RFC 9110 §15).
pub(crate) fn status_line(status: u16) -> String {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        500 => "Internal Server Error",
        _ => "",
    };
    format!("{status} {reason}")
}

/// An ETag (weak, R4 §3.1.0.5): `W/"3"`.
pub fn etag(version_id: i64) -> String {
    format!("W/\"{version_id}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resources_are_spliced_into_envelopes() {
        assert_eq!(with_resource(&json!({"a": 1}), "{\"id\":\"x\"}"), "{\"a\":1,\"resource\":{\"id\":\"x\"}}");
        assert_eq!(with_resource(&json!({}), "{}"), "{\"resource\":{}}");
        assert_eq!(with_resource(&json!({"a": 1}), ""), "{\"a\":1}");
        let b = bundle_with_entries(&json!({"type": "x"}), &["{}".into(), "{}".into()]);
        assert_eq!(serde_json::from_str::<Value>(&b).unwrap()["entry"].as_array().unwrap().len(), 2);
        assert_eq!(identity("{\"resourceType\":\"Patient\",\"id\":\"p\"}").id, "p");
        assert_eq!(status_line(412), "412 Precondition Failed");
    }
}
