//! `POST [base]` with a `batch` or `transaction` Bundle (R4 §3.1.0.11).  A batch runs each
//! entry as its own interaction through the service (so through the gate), and its entries
//! succeed or fail one by one.  Both are bounded (issue 7, item 6): entries per Bundle, and the
//! batch's whole response shares one budget, counted as each entry's response is added (the
//! batch stops at the first entry that would pass it and answers 400).

use serde_json::{json, Value};

use super::error::FhirError;
use super::request::{
    parse_if_match, parse_version_id, Create, Delete, FhirRequest, InstancePath, Search, TypePath, Update,
};
use super::text::{bundle_with_entries, etag, status_line, with_resource};
use super::{Context, FhirService, Outcome};
use crate::limits::{MAX_BATCH_ENTRIES, MAX_TRANSACTION_ENTRIES, RESPONSE_BUDGET_BYTES};
use crate::store::{ResourceStore, StoredResource};

/// What a Bundle sent to the base asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Batch,
    Transaction,
}

impl<S: ResourceStore> FhirService<'_, S> {
    /// `POST [base]`: a batch or transaction Bundle; the response Bundle as JSON text.
    pub async fn bundle(&self, cx: &Context<'_>, mut bundle: Value) -> Result<String, FhirError> {
        if bundle["resourceType"] != "Bundle" {
            return Err(FhirError::Invalid("POST to the FHIR base takes a Bundle of type batch or transaction".into()));
        }
        let (kind, name, limit) = match bundle["type"].as_str() {
            Some("transaction") => (Kind::Transaction, "transaction", MAX_TRANSACTION_ENTRIES),
            Some("batch") => (Kind::Batch, "batch", MAX_BATCH_ENTRIES),
            _ => return Err(FhirError::Invalid("Bundle.type must be batch or transaction".into())),
        };
        let entries = match bundle["entry"].take() {
            Value::Array(entries) => entries,
            _ => Vec::new(),
        };
        drop(bundle);
        if entries.len() > limit {
            return Err(FhirError::TooLarge(format!(
                "this {name} has {} entries; this server accepts at most {limit} entries per {name}: split it",
                entries.len()
            )));
        }
        match kind {
            Kind::Transaction => self.transaction(cx, entries).await,
            Kind::Batch => self.batch(cx, entries).await,
        }
    }

    /// A batch: each entry runs as its own interaction, with the caller's token.  The
    /// responses share [`RESPONSE_BUDGET_BYTES`]: a search gets what is left of it, every
    /// entry is counted as it is added, and the first entry that would pass it ends the batch.
    async fn batch(&self, cx: &Context<'_>, entries: Vec<Value>) -> Result<String, FhirError> {
        let mut out = Vec::with_capacity(entries.len());
        let mut left = RESPONSE_BUDGET_BYTES;
        let too_large = |n: usize| {
            FhirError::OverBudget(format!(
                "the responses of this batch's first {n} entries already fill it; send fewer entries per batch, \
                 or page the searches with a smaller _count"
            ))
        };
        for (n, entry) in entries.into_iter().enumerate() {
            let result = match entry_request(entry, left) {
                Ok(request) => self.handle(cx, request).await,
                Err(e) => Err(e),
            };
            if matches!(result, Err(FhirError::OverBudget(_))) {
                return Err(too_large(n));
            }
            let text = entry_response(cx.base, result);
            let Some(rest) = left.checked_sub(text.len() + 1) else {
                return Err(too_large(n));
            };
            left = rest;
            out.push(text);
        }
        let head = json!({ "resourceType": "Bundle", "type": "batch-response" });
        Ok(bundle_with_entries(&head, &out))
    }
}

/// The interaction a batch entry describes (its `request.method` and `request.url`, relative
/// to the base); a search may hold at most `max_bytes`.  The entry is consumed: its resource
/// moves into the request.
fn entry_request(mut entry: Value, max_bytes: usize) -> Result<FhirRequest, FhirError> {
    let request = entry["request"].take();
    let method = request["method"].as_str().unwrap_or_default();
    let url = request["url"].as_str().unwrap_or_default().trim_start_matches('/');
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let params = || form_urlencoded::parse(query.as_bytes()).into_owned().collect::<Vec<_>>();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let if_match = || optional_str(&request, "ifMatch")?.map(parse_if_match).transpose();
    Ok(match (method, segments.as_slice()) {
        ("GET", [ty]) => {
            FhirRequest::Search(Search { max_bytes, ..Search::new(TypePath::parse(ty)?, params(), false) })
        }
        ("GET", [ty, "_history"]) => FhirRequest::TypeHistory(TypePath::parse(ty)?, params()),
        ("GET", [ty, id]) => FhirRequest::Read(InstancePath::parse(ty, id)?),
        ("GET", [ty, id, "_history"]) => FhirRequest::History(InstancePath::parse(ty, id)?),
        ("GET", [ty, id, "_history", v]) => FhirRequest::VRead(InstancePath::parse(ty, id)?, parse_version_id(v)?),
        ("POST", [ty]) => FhirRequest::Create(Create {
            resource_type: TypePath::parse(ty)?,
            if_none_exist: optional_str(&request, "ifNoneExist")?
                .map(|c| form_urlencoded::parse(c.as_bytes()).into_owned().collect()),
            resource: entry["resource"].take(),
        }),
        ("PUT", [ty, id]) => {
            let path = InstancePath::parse(ty, id)?;
            FhirRequest::Update(Update { path, if_match: if_match()?, resource: entry["resource"].take() })
        }
        ("DELETE", [ty, id]) => {
            FhirRequest::Delete(Delete { path: InstancePath::parse(ty, id)?, if_match: if_match()? })
        }
        _ => return Err(FhirError::NotSupported(format!("{method} {url} is not supported in a batch"))),
    })
}

/// A string field of an entry's `request`.  One that is there but not a string is the client's
/// mistake, never an absent condition (an `ifMatch` of `1` must not make an update unconditional).
fn optional_str<'a>(request: &'a Value, field: &str) -> Result<Option<&'a str>, FhirError> {
    match &request[field] {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        _ => Err(FhirError::Invalid(format!("request.{field} must be a string, such as W/\"3\" or _id=x"))),
    }
}

/// One entry of a batch-response, as JSON text: `response.status`, `etag` and `location`, and
/// the resource (or Bundle) answered, or the OperationOutcome of a refusal.
fn entry_response(base: &str, result: Result<Outcome, FhirError>) -> String {
    let response = |status: u16, version: Option<&StoredResource>, location: bool| {
        let mut response = json!({ "status": status_line(status) });
        if let Some(v) = version {
            response["etag"] = json!(etag(v.version_id));
            if location {
                response["location"] = json!(format!("{base}/{}/{}/_history/{}", v.resource_type, v.id, v.version_id));
            }
        }
        json!({ "response": response })
    };
    match result {
        Ok(Outcome::Resource(v) | Outcome::Existing(v)) => with_resource(&response(200, Some(&v), false), &v.json),
        Ok(Outcome::Updated(v)) => with_resource(&response(200, Some(&v), true), &v.json),
        Ok(Outcome::Created(v)) => with_resource(&response(201, Some(&v), true), &v.json),
        Ok(Outcome::Deleted(v)) => response(204, v.as_ref(), false).to_string(),
        Ok(Outcome::Bundle(bundle)) => with_resource(&response(200, None, false), &bundle),
        Err(e) => {
            if let FhirError::Store { what, error } = &e {
                tracing::error!("batch entry: could not {what}: {error}");
            }
            let mut entry = response(e.status(), None, false);
            if let Some(v) = e.version_id() {
                entry["response"]["etag"] = json!(etag(v));
            }
            entry["response"]["outcome"] = e.operation_outcome();
            entry.to_string()
        }
    }
}
