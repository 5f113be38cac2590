//! Search over HTTP (`GET /fhir/{type}`, `POST /fhir/{type}/_search`).  The service limits it
//! to what the token's scopes admit and to the response budget (`smartlaunch_fhir::service`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use smartlaunch_fhir::service::{FhirRequest, Search, TypePath};

use super::{body_rejected, respond, FhirCaller, Refusal};
use crate::server::App;

/// `Prefer: handling=strict`: unknown parameters are an error, not ignored (R4 §3.1.1.5.1).
fn strict(headers: &HeaderMap) -> bool {
    headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split([',', ';']).any(|p| p.trim() == "handling=strict"))
}

/// `GET /fhir/{type}`.
pub(crate) async fn search_get(
    State(app): State<App>,
    caller: FhirCaller,
    Path(ty): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Refusal> {
    let resource_type = TypePath::parse(&ty)?;
    let params = crate::web::form_pairs(query.unwrap_or_default().as_bytes());
    let search = Search::new(resource_type, params, strict(&headers));
    respond(&app, &caller, &headers, FhirRequest::Search(search)).await
}

/// `POST /fhir/{type}/_search` (a form body).
pub(crate) async fn search_post(
    State(app): State<App>,
    caller: FhirCaller,
    Path(ty): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Refusal> {
    let body = body.map_err(body_rejected)?;
    if !crate::web::is_form(&headers) {
        return Err(Refusal::UnsupportedMediaType(
            "POST _search takes Content-Type: application/x-www-form-urlencoded",
        ));
    }
    let resource_type = TypePath::parse(&ty)?;
    let search = Search::new(resource_type, crate::web::form_pairs(&body), strict(&headers));
    respond(&app, &caller, &headers, FhirRequest::Search(search)).await
}
