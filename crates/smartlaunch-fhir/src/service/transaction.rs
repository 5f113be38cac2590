//! A transaction Bundle (R4 §3.1.0.11.2): all or nothing.  Its `urn:uuid:` references are
//! resolved to the ids the server assigns ([`prepare_transaction`]), every entry is checked by
//! the gate and against its `ifMatch` exactly as the direct interaction would be, and the writes
//! are applied in one store transaction.

use serde_json::{json, Value};
use smart_scopes::Interaction;

use super::error::FhirError;
use super::instance::precondition;
use super::request::InstancePath;
use super::text::{etag, status_line};
use super::{instant, Context, FhirService};
use crate::bundle::{prepare_transaction, EntryMethod};
use crate::store::{ResourceStore, StoreError, WriteError, WriteOp};

impl<S: ResourceStore> FhirService<'_, S> {
    pub(super) async fn transaction(&self, cx: &Context<'_>, entries: Vec<Value>) -> Result<String, FhirError> {
        let gate = self.gate(cx);
        // 1. Ids for creates, Bundle-local references resolved, every resource checked.
        let prepared = prepare_transaction(entries, self.new_id)
            .map_err(|(n, message)| FhirError::Invalid(message).in_entry(n))?;
        // 2. Every entry through the gate; the state each write expects.  The status of each
        // entry's write (`None`: a delete of something already gone, nothing to write), and the
        // writes themselves (moved, never copied: a Bundle may be 32 MiB).
        let mut plan: Vec<Option<u16>> = Vec::with_capacity(prepared.len());
        let mut ops: Vec<WriteOp> = Vec::with_capacity(prepared.len());
        for (n, entry) in prepared.into_iter().enumerate() {
            let path = InstancePath { resource_type: entry.resource_type, id: entry.id };
            let current = match entry.method {
                EntryMethod::Create => None,
                _ => self
                    .store
                    .read(&path.resource_type, &path.id)
                    .await
                    .map_err(FhirError::store("read the resource"))?,
            };
            let live = current.as_ref().filter(|c| !c.deleted);
            let (interaction, status) = match (entry.method, live) {
                (EntryMethod::Create, _) => (Interaction::Create, 201),
                (EntryMethod::Update, Some(_)) => (Interaction::Update, 200),
                (EntryMethod::Update, None) => (Interaction::Update, 201),
                (EntryMethod::Delete, _) => (Interaction::Delete, 204),
            };
            let checked = gate.replace(interaction, &path, current.as_ref()).and_then(|()| match &entry.resource {
                Some(resource) => gate.write(interaction, resource),
                None => Ok(()),
            });
            checked.map_err(|e| e.in_entry(n))?;
            let op = match (entry.method, entry.resource) {
                (EntryMethod::Delete, _) if live.is_none() => None,
                (EntryMethod::Delete, _) => {
                    let expected = precondition(entry.if_match, &path, live).map_err(|e| e.in_entry(n))?;
                    Some(WriteOp::Delete { resource_type: path.resource_type, id: path.id, expected })
                }
                (_, Some(resource)) => {
                    let expected = precondition(entry.if_match, &path, live).map_err(|e| e.in_entry(n))?;
                    Some(WriteOp::Put { resource, expected })
                }
                (_, None) => return Err(FhirError::Invalid("the entry has no resource".into()).in_entry(n)),
            };
            plan.push(op.is_some().then_some(status));
            ops.extend(op);
        }
        // 3. Everything in one store transaction.
        let written = self.store.transaction(&ops, &instant(cx)).await.map_err(|(n, e)| match e {
            WriteError::Conflict(_) => {
                FhirError::Conflict(format!("write {n}: the resource changed meanwhile; nothing was stored"))
            }
            WriteError::Store(error) => FhirError::Store { what: "store the transaction", error },
        })?;
        drop(ops);
        let mut written = written.into_iter();
        let mut response_entries = Vec::with_capacity(plan.len());
        for status in plan {
            let response = match status {
                None => json!({ "status": status_line(204) }),
                Some(status) => {
                    let Some(stored) = written.next() else {
                        let error = StoreError("the store answered fewer writes than it was given".into());
                        return Err(FhirError::Store { what: "store the transaction", error });
                    };
                    let mut response = json!({
                        "status": status_line(status),
                        "etag": etag(stored.version_id),
                        "lastModified": stored.last_updated,
                    });
                    if status != 204 {
                        response["location"] =
                            json!(format!("{}/{}/_history/{}", stored.resource_type, stored.id, stored.version_id));
                    }
                    response
                }
            };
            response_entries.push(json!({ "response": response }));
        }
        Ok(json!({ "resourceType": "Bundle", "type": "transaction-response", "entry": response_entries }).to_string())
    }
}
