//! The one place where the service decides what a token may do (spec digest §1.8, checklist
//! items 77–81; issue 7, items 4 and 5).  Every interaction — direct, in a batch, in a
//! transaction — asks the gate before it shows or writes anything:
//! - a read is decided on the stored version's compartments, and granular scopes
//!   (`patient/Observation.rs?category=…`) on the store's search index;
//! - every version a vread or history shows is decided on that version's own JSON (a deletion
//!   on the version it deleted);
//! - a write is decided on the resource's own patient reference, for the version it replaces
//!   and for the new content (nothing may move out of reach);
//! - a search (and each `_include` type) runs under the scopes' constraints, never widened;
//! - a resource that does not exist is a 404 only when the token could have touched it.

use serde_json::{json, Value};
use smart_scopes::Interaction;

use super::error::FhirError;
use super::request::InstancePath;
use crate::access::{constraints, may, may_read_version, may_write, Denied, Requester};
use crate::search::Constraint;
use crate::store::{ResourceStore, StoreError, StoredResource};

/// The access decisions of one request: the requester, and the store for granular reads.
pub(crate) struct Gate<'a, S> {
    pub store: &'a S,
    pub who: Requester<'a>,
}

impl<S: ResourceStore> Gate<'_, S> {
    /// May the token read the current version `stored` (read)?  Granular scopes are evaluated
    /// against the stored resource's search index; a deletion only by its compartments.
    pub async fn read(&self, stored: &StoredResource) -> Result<(), FhirError> {
        let ty = &stored.resource_type;
        match may(&self.who, Interaction::Read, ty, &stored.compartments) {
            Ok(()) => Ok(()),
            Err(Denied::OutsideGrant) if !stored.deleted => {
                let access = constraints(&self.who, Interaction::Read, ty)?;
                match self.store.matches(ty, &stored.id, &access).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(Denied::OutsideGrant.into()),
                    Err(e) => Err(FhirError::store("check the access")(e)),
                }
            }
            Err(d) => Err(d.into()),
        }
    }

    /// May the token see this version (vread and instance history: read; type history:
    /// search)?  Decided on the version's own JSON; a deletion on the version before it
    /// (`older`, when the caller has it, else read from the store).  A deletion whose earlier
    /// version cannot be found is shown only to tokens that reach everything of the type.
    pub async fn version(
        &self,
        interaction: Interaction,
        v: &StoredResource,
        older: Option<&StoredResource>,
    ) -> Result<Result<(), Denied>, FhirError> {
        let fetched;
        let judged: Option<&str> = if !v.deleted {
            Some(&v.json)
        } else if let Some(o) = older.filter(|o| o.version_id == v.version_id - 1) {
            Some(&o.json)
        } else {
            let before = self.store.vread(&v.resource_type, &v.id, v.version_id - 1).await;
            fetched = before.map_err(FhirError::store("read the history"))?.filter(|o| !o.deleted);
            fetched.as_ref().map(|o| o.json.as_str())
        };
        let resource = judged
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_else(|| json!({ "resourceType": v.resource_type, "id": v.id }));
        Ok(may_read_version(&self.who, interaction, &resource))
    }

    /// The refusal for a resource (or version) that does not exist: 403 when the token could
    /// not have touched it anyway (no scope for the type, or another patient's `Patient/{id}`),
    /// so that existence does not leak; 404 with `message` otherwise.
    pub fn missing(&self, interaction: Interaction, path: &InstancePath, message: String) -> FhirError {
        let ty = path.resource_type.as_str();
        let no_scope = self.who.scopes.grants(ty, interaction).next().is_none();
        match may(&self.who, interaction, ty, &presumed_compartments(path)) {
            Err(d) if no_scope || ty == "Patient" => d.into(),
            _ => FhirError::NotFound(message),
        }
    }

    /// May the token write this content (create, and the new version of an update)?  Decided
    /// on the resource's own patient reference ([`may_write`]).
    pub fn write(&self, interaction: Interaction, resource: &Value) -> Result<(), FhirError> {
        Ok(may_write(&self.who, interaction, resource)?)
    }

    /// May the token replace (update) or delete the state `current` of `path`?  A live version
    /// is judged as a write of its stored JSON; a deletion by the compartments it was deleted
    /// from (recreating it is no way into another patient's id and history); nothing, for a
    /// delete, by the compartments the id would be in (a patient's own `Patient/{id}`).
    pub fn replace(
        &self,
        interaction: Interaction,
        path: &InstancePath,
        current: Option<&StoredResource>,
    ) -> Result<(), FhirError> {
        match current {
            Some(live) if !live.deleted => {
                let old: Value = serde_json::from_str(&live.json)
                    .map_err(|e| FhirError::store("read the stored resource")(StoreError(e.to_string())))?;
                self.write(interaction, &old)
            }
            Some(gone) => Ok(may(&self.who, interaction, &path.resource_type, &gone.compartments)?),
            None if interaction == Interaction::Delete => {
                Ok(may(&self.who, interaction, &path.resource_type, &presumed_compartments(path))?)
            }
            None => Ok(()),
        }
    }

    /// The constraints a search (or type history, or `_include`) of `resource_type` runs
    /// under: a union, one per granting scope (403 when none grants it).
    pub fn search(&self, interaction: Interaction, resource_type: &str) -> Result<Vec<Constraint>, FhirError> {
        Ok(constraints(&self.who, interaction, resource_type)?)
    }

    /// The constraints of a conditional create's `If-None-Exist` search: it needs a search
    /// scope on the type.
    pub fn condition(&self, resource_type: &str) -> Result<Vec<Constraint>, FhirError> {
        constraints(&self.who, Interaction::Search, resource_type)
            .map_err(|_| FhirError::ConditionNeedsSearch { resource_type: resource_type.to_owned() })
    }
}

/// Whether the constraints admit every resource of the type (a count of them leaks nothing).
pub(crate) fn unrestricted(access: &[Constraint]) -> bool {
    access.iter().any(|c| c.compartment.is_none() && c.filter.is_empty())
}

/// The compartments a not-yet-stored resource would be in: a `Patient/{id}` is in its own, so
/// that a patient token asking for another patient's id gets 403 whether or not it exists.
fn presumed_compartments(path: &InstancePath) -> Vec<String> {
    if path.resource_type == "Patient" {
        vec![path.id.clone()]
    } else {
        Vec::new()
    }
}
