//! The FHIR REST service (R4 §3.1.0, "RESTful API"): every interaction's rules — read, vread,
//! create (conditional with `If-None-Exist`), update (update-as-create, `If-Match`), delete,
//! history (instance and type), search, batch and transaction — with typed requests in and
//! typed outcomes out, and no HTTP.  The HTTP layer parses a request into a [`FhirRequest`]
//! (or a Bundle), calls one function here and renders the [`Outcome`] or [`FhirError`].
//!
//! Authorization is decided in one place, the gate (`gate.rs`), which every path goes through:
//! direct requests, batch entries, transaction entries, each version of a history and each
//! search match or included resource.  The time of a write and the ids of created resources
//! are injected ([`Context::now`], [`FhirService::new`]), so the rules are unit-tested against an
//! in-memory store without a server.

mod batch;
mod error;
mod gate;
mod history;
mod instance;
mod request;
mod search;
mod text;
mod transaction;

#[cfg(test)]
mod memory;
#[cfg(test)]
mod tests;

pub use error::{operation_outcome, FhirError};
pub use request::{
    parse_if_match, parse_version_id, Create, Delete, FhirRequest, InstancePath, Search, TypePath, Update,
};
pub use text::{bundle_with_entries, etag, with_resource};

use crate::access::Requester;
use crate::store::{ResourceStore, StoredResource};
use gate::Gate;

/// Who asks, through which FHIR base, and when: what every interaction is given.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The validated token's scopes and launch context.
    pub requester: Requester<'a>,
    /// The FHIR base the request came in through (`fullUrl`s, links and `Location` use it).
    pub base: &'a str,
    /// The time, in Unix seconds (the injected clock): a write's `meta.lastUpdated`.
    pub now: i64,
}

/// What a successful interaction answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// 200: a version (read, vread), with its `ETag` and `Last-Modified`.
    Resource(StoredResource),
    /// 201 with `Location`: a new resource (create, update-as-create).
    Created(StoredResource),
    /// 200 with `Location`: a new version of a live resource (update).
    Updated(StoredResource),
    /// 200: the one resource a conditional create's `If-None-Exist` matched; nothing written.
    Existing(StoredResource),
    /// 204: the deletion's version, or `None` when there was nothing live to delete.
    Deleted(Option<StoredResource>),
    /// 200: a Bundle (searchset, history), as JSON text.
    Bundle(String),
}

/// The FHIR REST service over a resource store.  `new_id` gives the id of each created
/// resource (random in the server, predictable in tests).
pub struct FhirService<'a, S> {
    store: &'a S,
    new_id: &'a (dyn Fn() -> String + Send + Sync),
}

impl<'a, S: ResourceStore> FhirService<'a, S> {
    pub fn new(store: &'a S, new_id: &'a (dyn Fn() -> String + Send + Sync)) -> FhirService<'a, S> {
        FhirService { store, new_id }
    }

    /// Runs one interaction.
    pub async fn handle(&self, cx: &Context<'_>, request: FhirRequest) -> Result<Outcome, FhirError> {
        match request {
            FhirRequest::Read(path) => self.read(cx, &path).await.map(Outcome::Resource),
            FhirRequest::VRead(path, version) => self.vread(cx, &path, version).await.map(Outcome::Resource),
            FhirRequest::History(path) => self.history(cx, &path).await.map(Outcome::Bundle),
            FhirRequest::TypeHistory(ty, params) => self.type_history(cx, &ty, &params).await.map(Outcome::Bundle),
            FhirRequest::Search(search) => self.search(cx, search).await.map(Outcome::Bundle),
            FhirRequest::Create(create) => self.create(cx, create).await,
            FhirRequest::Update(update) => self.update(cx, update).await,
            FhirRequest::Delete(delete) => self.delete(cx, delete).await.map(Outcome::Deleted),
        }
    }

    fn gate<'c>(&'c self, cx: &Context<'c>) -> Gate<'c, S> {
        Gate { store: self.store, who: cx.requester }
    }
}

/// A write's `meta.lastUpdated`: the injected time as a FHIR instant.
fn instant(cx: &Context<'_>) -> String {
    crate::export::instant_of(cx.now)
}
