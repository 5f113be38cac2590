//! vread and history (instance and type) over HTTP.  Every version a response shows is checked
//! by the service on its own (issue 7, item 5; `smartlaunch_fhir::service`).

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use smartlaunch_fhir::service::{parse_version_id, FhirRequest, InstancePath, TypePath};

use super::{respond, FhirCaller, Refusal};
use crate::server::App;

/// `GET /fhir/{type}/{id}/_history/{vid}`: vread (r), of a version the token may read.
pub(crate) async fn vread(
    State(app): State<App>,
    caller: FhirCaller,
    Path((ty, id, vid)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let path = InstancePath::parse(&ty, &id)?;
    let version = parse_version_id(&vid)?;
    respond(&app, &caller, &headers, FhirRequest::VRead(path, version)).await
}

/// `GET /fhir/{type}/{id}/_history`: instance history (r), newest first.
pub(crate) async fn history(
    State(app): State<App>,
    caller: FhirCaller,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let path = InstancePath::parse(&ty, &id)?;
    respond(&app, &caller, &headers, FhirRequest::History(path)).await
}

/// `GET /fhir/{type}/_history`: type history (s), paged by `_count` and `_offset`.
pub(crate) async fn type_history(
    State(app): State<App>,
    caller: FhirCaller,
    Path(ty): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Refusal> {
    let resource_type = TypePath::parse(&ty)?;
    let params = crate::web::form_pairs(query.unwrap_or_default().as_bytes());
    respond(&app, &caller, &headers, FhirRequest::TypeHistory(resource_type, params)).await
}
