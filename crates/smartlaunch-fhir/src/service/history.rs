//! history (R4 §3.1.0.10), instance (r) and type (s): every version a history shows is
//! checked on its own by the gate (issue 7, item 5): a version outside the token is omitted,
//! and an instance history of which the token may see no version is refused (403).

use serde_json::json;
use smart_scopes::Interaction;

use super::error::FhirError;
use super::gate::unrestricted;
use super::request::{InstancePath, TypePath};
use super::text::{bundle_with_entries, with_resource};
use super::{Context, FhirService};
use crate::limits::{DEFAULT_COUNT, MAX_COUNT, RESPONSE_BUDGET_BYTES};
use crate::store::{ResourceStore, StoredResource};

/// One entry of a history Bundle, as JSON text (the version's stored JSON is not re-parsed).
fn history_entry(base: &str, v: &StoredResource) -> String {
    let (ty, id) = (&v.resource_type, &v.id);
    let (method, status) = match (v.deleted, v.version_id) {
        (true, _) => ("DELETE", "204"),
        (false, 1) => ("POST", "201"),
        (false, _) => ("PUT", "200"),
    };
    let entry = json!({
        "fullUrl": format!("{base}/{ty}/{id}"),
        "request": { "method": method, "url": format!("{ty}/{id}") },
        "response": {
            "status": status,
            "etag": format!("W/\"{}\"", v.version_id),
            "lastModified": v.last_updated,
            "location": format!("{base}/{ty}/{id}/_history/{}", v.version_id),
        },
    });
    if v.deleted {
        entry.to_string()
    } else {
        with_resource(&entry, &v.json)
    }
}

impl<S: ResourceStore> FhirService<'_, S> {
    /// Instance history (r), newest first: the versions the token may read.
    pub async fn history(&self, cx: &Context<'_>, path: &InstancePath) -> Result<String, FhirError> {
        let gate = self.gate(cx);
        let (ty, id) = (&path.resource_type, &path.id);
        let page =
            self.store.history(ty, id, RESPONSE_BUDGET_BYTES).await.map_err(FhirError::store("read the history"))?;
        if page.over_budget {
            return Err(FhirError::OverBudget(format!(
                "the history of {ty}/{id} is larger than the response budget; read its versions one by one \
                 (GET {ty}/{id}/_history/{{version}})"
            )));
        }
        if page.versions.is_empty() {
            return Err(gate.missing(Interaction::Read, path, format!("{ty}/{id} does not exist")));
        }
        let mut entries = Vec::new();
        let mut refusal = None;
        for (n, v) in page.versions.iter().enumerate() {
            match gate.version(Interaction::Read, v, page.versions.get(n + 1)).await? {
                Ok(()) => entries.push(history_entry(cx.base, v)),
                Err(denied) => refusal = Some(denied),
            }
        }
        if let (true, Some(denied)) = (entries.is_empty(), refusal) {
            return Err(denied.into());
        }
        let head = json!({
            "resourceType": "Bundle",
            "type": "history",
            "total": entries.len(),
            "link": [{ "relation": "self", "url": format!("{}/{ty}/{id}/_history", cx.base) }],
        });
        Ok(bundle_with_entries(&head, &entries))
    }

    /// Type history (s), newest first, of the versions the token may search, each checked on
    /// its own; `_count` (at most [`MAX_COUNT`]) and `_offset` page it.  A restricted token
    /// gets no `total` (it would count versions it may not see).
    pub async fn type_history(
        &self,
        cx: &Context<'_>,
        resource_type: &TypePath,
        params: &[(String, String)],
    ) -> Result<String, FhirError> {
        let gate = self.gate(cx);
        let ty = resource_type.as_str();
        let access = gate.search(Interaction::Search, ty)?;
        let number = |name: &str, default: i64| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.parse::<i64>().ok())
                .filter(|v| *v >= 0)
                .unwrap_or(default)
        };
        let count = number("_count", DEFAULT_COUNT).min(MAX_COUNT);
        let offset = number("_offset", 0);
        let page = self
            .store
            .type_history(ty, &access, count, offset, RESPONSE_BUDGET_BYTES)
            .await
            .map_err(FhirError::store("read the history"))?;
        if page.over_budget {
            return Err(FhirError::OverBudget(format!(
                "this page of {ty}/_history is larger than the response budget; page with a smaller _count"
            )));
        }
        let link = |o: i64| format!("{}/{ty}/_history?_count={count}&_offset={o}", cx.base);
        let mut links = vec![json!({ "relation": "self", "url": link(offset) })];
        // Saturating: `_offset` may be any non-negative i64.
        if count > 0 && offset.saturating_add(count) < page.total {
            links.push(json!({ "relation": "next", "url": link(offset.saturating_add(count)) }));
        }
        let mut entries = Vec::new();
        for v in &page.versions {
            if gate.version(Interaction::Search, v, None).await?.is_ok() {
                entries.push(history_entry(cx.base, v));
            }
        }
        let mut head = json!({ "resourceType": "Bundle", "type": "history", "link": links });
        if unrestricted(&access) {
            head["total"] = json!(page.total);
        }
        Ok(bundle_with_entries(&head, &entries))
    }
}
