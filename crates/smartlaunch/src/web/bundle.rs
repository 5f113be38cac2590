//! `POST /fhir` with a `batch` or `transaction` Bundle.  The service runs it
//! (`smartlaunch_fhir::service`): a batch entry by entry, each through the same interaction and
//! access checks as a direct request; a transaction all or nothing.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::server::App;
use crate::web::fhir::{service, FhirBody, FhirCaller, Refusal, FHIR_JSON};

/// `POST /fhir`.
pub(crate) async fn post(State(app): State<App>, caller: FhirCaller, body: FhirBody) -> Result<Response, Refusal> {
    let bundle = body.json()?;
    drop(body);
    let response = service(&app).bundle(&caller.context(&app), bundle).await?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))], response).into_response())
}
