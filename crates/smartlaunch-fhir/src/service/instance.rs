//! The instance interactions (R4 §3.1.0.2–3.1.0.7): read and vread (r), create (c, conditional
//! with `If-None-Exist`), update (u, and update-as-create; `If-Match` makes it conditional)
//! and delete (d).  Each asks the gate first; a write is stored only if the state it was
//! decided on is still the current one (optimistic locking in the store).

use serde_json::Value;
use smart_scopes::Interaction;

use super::error::FhirError;
use super::request::{Create, Delete, InstancePath, Update};
use super::text::identity;
use super::{instant, Context, FhirService, Outcome};
use crate::search::query;
use crate::store::{Expected, ResourceStore, StoredResource, WriteError};
use crate::validate::{check_resource, check_update_id};

/// The one `If-Match` rule (R4 §3.1.0.4.2, "managing resource contention"), for updates and
/// deletes, direct or in a transaction: what the write expects to find, given the `if_match`
/// version sent and the `live` current version.  A mismatch, or an `If-Match` for nothing, is
/// a 412; otherwise the write expects exactly the version its access was decided on.
pub(crate) fn precondition(
    if_match: Option<i64>,
    path: &InstancePath,
    live: Option<&StoredResource>,
) -> Result<Expected, FhirError> {
    match (if_match, live) {
        (Some(v), Some(c)) if v != c.version_id => {
            Err(FhirError::VersionMismatch { if_match: v, current: c.version_id })
        }
        (Some(_), None) => {
            Err(FhirError::NothingToMatch { resource_type: path.resource_type.clone(), id: path.id.clone() })
        }
        (_, Some(c)) => Ok(Expected::Version(c.version_id)),
        (None, None) => Ok(Expected::Absent),
    }
}

/// The refusal of a write whose expected state changed before it was stored.
fn changed(what: &str) -> impl FnOnce(WriteError) -> FhirError + '_ {
    move |e| match e {
        WriteError::Conflict(_) => FhirError::Conflict(format!("the resource changed while it was being {what}")),
        WriteError::Store(e) => FhirError::Store { what: "store the resource", error: e },
    }
}

impl<S: ResourceStore> FhirService<'_, S> {
    /// read (r): the current version if the token may read it (granular scopes included); 410
    /// for a deletion; 404 (or 403, see the gate) for nothing.
    pub async fn read(&self, cx: &Context<'_>, path: &InstancePath) -> Result<StoredResource, FhirError> {
        let gate = self.gate(cx);
        let (ty, id) = (&path.resource_type, &path.id);
        match self.store.read(ty, id).await.map_err(FhirError::store("read the resource"))? {
            Some(stored) => {
                gate.read(&stored).await?;
                shown(stored)
            }
            None => Err(gate.missing(Interaction::Read, path, format!("{ty}/{id} does not exist"))),
        }
    }

    /// vread (r): one version, if the token may read that version (decided on its own JSON).
    pub async fn vread(
        &self,
        cx: &Context<'_>,
        path: &InstancePath,
        version: i64,
    ) -> Result<StoredResource, FhirError> {
        let gate = self.gate(cx);
        let (ty, id) = (&path.resource_type, &path.id);
        let found = self.store.vread(ty, id, version).await.map_err(FhirError::store("read the version"))?;
        let Some(stored) = found else {
            return Err(gate.missing(Interaction::Read, path, format!("{ty}/{id} has no version {version}")));
        };
        gate.version(Interaction::Read, &stored, None).await??;
        shown(stored)
    }

    /// create (c), with a server-assigned id.  With `If-None-Exist`: no match creates, one
    /// match answers it (nothing written), more are a 412 (R4 §3.1.0.8).
    pub async fn create(&self, cx: &Context<'_>, request: Create) -> Result<Outcome, FhirError> {
        let gate = self.gate(cx);
        let Create { resource_type, mut resource, if_none_exist } = request;
        let ty = resource_type.as_str();
        check_resource(&resource, ty)?;
        resource["id"] = Value::String((self.new_id)());
        gate.write(Interaction::Create, &resource)?;
        if let Some(condition) = if_none_exist {
            let mut search =
                query::parse(ty, &condition, true).map_err(|e| FhirError::Invalid(format!("If-None-Exist: {e}")))?;
            search.count = 2;
            let access = gate.condition(ty)?;
            let page =
                self.store.search(ty, &search, &access).await.map_err(FhirError::store("evaluate If-None-Exist"))?;
            match page.total {
                0 => {}
                1 => {
                    let existing = identity(page.resources.first().map_or("", String::as_str)).id;
                    let found = self.store.read(ty, &existing).await.map_err(FhirError::store("read the resource"))?;
                    return match found {
                        Some(stored) => Ok(Outcome::Existing(stored)),
                        None => Err(FhirError::Conflict("the matching resource vanished; retry".into())),
                    };
                }
                _ => return Err(FhirError::Duplicate),
            }
        }
        let stored = self.store.put(&resource, Expected::Absent, &instant(cx)).await.map_err(changed("created"))?;
        Ok(Outcome::Created(stored))
    }

    /// update (u), or update-as-create when there is no live resource.  The version replaced
    /// and the new content must both be within reach; `If-Match` must name the current version.
    pub async fn update(&self, cx: &Context<'_>, request: Update) -> Result<Outcome, FhirError> {
        let gate = self.gate(cx);
        let Update { path, resource, if_match } = request;
        check_resource(&resource, &path.resource_type)?;
        check_update_id(&resource, &path.id)?;
        let stored =
            self.store.read(&path.resource_type, &path.id).await.map_err(FhirError::store("read the resource"))?;
        gate.replace(Interaction::Update, &path, stored.as_ref())?;
        let live = stored.filter(|c| !c.deleted);
        gate.write(Interaction::Update, &resource)?;
        let expected = precondition(if_match, &path, live.as_ref())?;
        let written = self.store.put(&resource, expected, &instant(cx)).await.map_err(|e| match e {
            WriteError::Conflict(_) => FhirError::Conflict(
                "the resource changed while it was being updated; read it again and retry (use If-Match)".into(),
            ),
            e => changed("updated")(e),
        })?;
        Ok(if live.is_some() { Outcome::Updated(written) } else { Outcome::Created(written) })
    }

    /// delete (d): a new, deleted version (`None` when nothing live was there: deleting again
    /// is harmless, whatever `If-Match` says).
    pub async fn delete(&self, cx: &Context<'_>, request: Delete) -> Result<Option<StoredResource>, FhirError> {
        let gate = self.gate(cx);
        let Delete { path, if_match } = request;
        let current =
            self.store.read(&path.resource_type, &path.id).await.map_err(FhirError::store("read the resource"))?;
        gate.replace(Interaction::Delete, &path, current.as_ref())?;
        let Some(live) = current.filter(|c| !c.deleted) else {
            return Ok(None);
        };
        let expected = precondition(if_match, &path, Some(&live))?;
        let deleted = self.store.delete(&path.resource_type, &path.id, expected, &instant(cx)).await;
        deleted.map(Some).map_err(|e| match e {
            WriteError::Store(error) => FhirError::Store { what: "delete the resource", error },
            e => changed("deleted")(e),
        })
    }
}

/// A version the token may see: 410 when it is a deletion.
fn shown(stored: StoredResource) -> Result<StoredResource, FhirError> {
    if stored.deleted {
        Err(FhirError::Gone { resource_type: stored.resource_type, id: stored.id, version_id: stored.version_id })
    } else {
        Ok(stored)
    }
}
