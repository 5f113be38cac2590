//! The FHIR REST API (spec digest §1.8): every request carries a bearer token checked for
//! signature, expiry, audience and revocation (401, the [`FhirCaller`] extractor); each
//! handler parses its request into a typed [`FhirRequest`], calls the FHIR service
//! (`smartlaunch_fhir::service`, where every interaction's rules and every access decision
//! live) and renders its answer ([`render`]).  Bulk Data export (`$export`) is in [`export`].

mod caller;
mod export;
mod history;
mod render;
mod search;

pub(crate) use caller::{body_rejected, check_body_type, service, FhirBase, FhirBody, FhirCaller};
pub(crate) use export::{
    cancel as export_cancel, file as export_file, group_get as export_group_get, group_post as export_group_post,
    patient_get as export_patient_get, patient_post as export_patient_post, status as export_status,
    system_get as export_system_get, system_post as export_system_post,
};
pub(crate) use history::{history, type_history, vread};
pub(crate) use render::{content_type, outcome, Refusal, FHIR_JSON};
pub(crate) use search::{search_get, search_post};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use smartlaunch_fhir::capability::{capability_statement, OAuthUris};
use smartlaunch_fhir::service::{parse_if_match, Create, Delete, FhirRequest, InstancePath, TypePath, Update};

use crate::server::App;

/// Calls the service for `request` and renders its answer.
pub(crate) async fn respond(
    app: &App,
    caller: &FhirCaller,
    headers: &HeaderMap,
    request: FhirRequest,
) -> Result<Response, Refusal> {
    let outcome = service(app).handle(&caller.context(app), request).await?;
    Ok(render::answer(headers, &caller.base.0, outcome))
}

/// `If-Match: W/"3"` → 3 (400 when it is not an ETag).
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, Refusal> {
    let value = headers.get(header::IF_MATCH).map(|v| parse_if_match(v.to_str().unwrap_or_default()));
    Ok(value.transpose()?)
}

/// `GET /fhir/metadata`.
pub(crate) async fn metadata(State(app): State<App>, base: FhirBase, headers: HeaderMap) -> Response {
    let c = &app.auth.config;
    let (authorize, token, register) = (c.authorize_endpoint(), c.token_endpoint(), c.registration_endpoint());
    let (introspect, revoke, manage) = (c.introspection_endpoint(), c.revocation_endpoint(), c.management_endpoint());
    let body = capability_statement(
        env!("CARGO_PKG_VERSION"),
        &base.0,
        &OAuthUris {
            authorize: &authorize,
            token: &token,
            register: &register,
            introspect: &introspect,
            revoke: &revoke,
            manage: &manage,
        },
        &app.started_at,
    );
    ([(header::CONTENT_TYPE, content_type(&headers))], body.to_string()).into_response()
}

/// `GET /fhir/{type}/{id}`: read (r).
pub(crate) async fn read(
    State(app): State<App>,
    caller: FhirCaller,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let path = InstancePath::parse(&ty, &id)?;
    respond(&app, &caller, &headers, FhirRequest::Read(path)).await
}

/// `POST /fhir/{type}`: create (c), with a server-assigned id; conditional with
/// `If-None-Exist: <search>`.
pub(crate) async fn create(
    State(app): State<App>,
    caller: FhirCaller,
    Path(ty): Path<String>,
    headers: HeaderMap,
    body: FhirBody,
) -> Result<Response, Refusal> {
    let resource_type = TypePath::parse(&ty)?;
    check_body_type(&headers)?;
    let resource = body.json()?;
    drop(body);
    let if_none_exist = headers.get("if-none-exist").map(|c| crate::web::form_pairs(c.as_bytes()));
    let request = FhirRequest::Create(Create { resource_type, resource, if_none_exist });
    respond(&app, &caller, &headers, request).await
}

/// `PUT /fhir/{type}/{id}`: update (u), or update-as-create (u) when there is none; `If-Match`
/// makes it conditional (412 on a mismatch).
pub(crate) async fn update(
    State(app): State<App>,
    caller: FhirCaller,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: FhirBody,
) -> Result<Response, Refusal> {
    let path = InstancePath::parse(&ty, &id)?;
    check_body_type(&headers)?;
    let if_match = if_match(&headers)?;
    let resource = body.json()?;
    drop(body);
    respond(&app, &caller, &headers, FhirRequest::Update(Update { path, resource, if_match })).await
}

/// `DELETE /fhir/{type}/{id}`: delete (d).
pub(crate) async fn delete(
    State(app): State<App>,
    caller: FhirCaller,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let path = InstancePath::parse(&ty, &id)?;
    let if_match = if_match(&headers)?;
    respond(&app, &caller, &headers, FhirRequest::Delete(Delete { path, if_match })).await
}
