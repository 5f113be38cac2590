//! FHIR R4 REST calls with the session's token (FHIR R4 §3.1.0 "RESTful API"): read, search
//! with a paging stream, create, update and delete, the context patient as the default
//! compartment, and OperationOutcomes as typed errors.  A 401 refreshes the token once and
//! retries.

use std::collections::VecDeque;

use futures_util::Stream;
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use url::Url;

use super::{BackendService, Session};
use crate::error::outcome_issues;
use crate::resource::next_link;
use crate::Error;

const FHIR_JSON: &str = "application/fhir+json";

#[derive(Clone)]
enum TokenSource {
    User(Session),
    Backend(BackendService),
}

impl TokenSource {
    async fn bearer(&self) -> Result<(String, u64), Error> {
        match self {
            TokenSource::User(s) => s.bearer().await,
            TokenSource::Backend(b) => b.bearer().await,
        }
    }

    /// A new token after the server refused the one of `generation`.
    async fn after_401(&self, generation: u64) -> Result<(String, u64), Error> {
        match self {
            TokenSource::User(s) => s.refresh_after(generation).await,
            TokenSource::Backend(b) => b.renew_after(generation).await,
        }
    }
}

/// Calls one FHIR server with a session's (or a backend service's) token.  Cheap to clone.
#[derive(Clone)]
pub struct FhirClient {
    base: String,
    origin: url::Origin,
    http: reqwest::Client,
    source: TokenSource,
    patient: Option<String>,
}

impl FhirClient {
    pub(crate) fn for_session(session: Session) -> FhirClient {
        let base = session.context().fhir_base.clone();
        let patient = session.context().patient.clone();
        FhirClient::new(base, session.inner.http.clone(), TokenSource::User(session), patient)
    }

    pub(crate) fn for_backend(backend: BackendService, base: String, http: reqwest::Client) -> FhirClient {
        FhirClient::new(base, http, TokenSource::Backend(backend), None)
    }

    fn new(base: String, http: reqwest::Client, source: TokenSource, patient: Option<String>) -> FhirClient {
        let origin = Url::parse(&base).map(|u| u.origin()).unwrap_or_else(|_| url::Origin::new_opaque());
        FhirClient { base, origin, http, source, patient }
    }

    /// The FHIR base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Checks that `url` is on this FHIR server (same origin, under the base path) before the
    /// token is sent to it.
    pub(crate) fn own_url(&self, url: &str) -> Result<String, Error> {
        let parsed = Url::parse(url).map_err(|_| Error::ForeignUrl(url.to_owned()))?;
        let under_base =
            url.strip_prefix(&self.base).is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']));
        if parsed.origin() != self.origin || !under_base || url.contains("/../") {
            return Err(Error::ForeignUrl(url.to_owned()));
        }
        Ok(url.to_owned())
    }

    /// Sends a request built by `build` with a bearer token; after a 401 refreshes once and
    /// sends it again.  Error statuses become [`Error::Fhir`].
    pub(crate) async fn send(&self, build: impl Fn(&reqwest::Client) -> RequestBuilder) -> Result<Response, Error> {
        let (token, generation) = self.source.bearer().await?;
        let response = build(&self.http).bearer_auth(&token).send().await?;
        let response = if response.status() == StatusCode::UNAUTHORIZED {
            match self.source.after_401(generation).await {
                Ok((token, _)) => build(&self.http).bearer_auth(&token).send().await?,
                Err(Error::Expired) => response,
                Err(e) => return Err(e),
            }
        } else {
            response
        };
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        Err(Error::Fhir { status, issues: outcome_issues(&body) })
    }

    async fn json(&self, response: Response) -> Result<Value, Error> {
        response.json().await.map_err(|e| Error::BadResponse(format!("not FHIR JSON: {e}")))
    }

    async fn get_json(&self, url: &str) -> Result<Value, Error> {
        let r = self.send(|h| h.get(url).header(ACCEPT, FHIR_JSON)).await?;
        self.json(r).await
    }

    /// Reads `{type}/{id}`.
    pub async fn read(&self, resource_type: &str, id: &str) -> Result<Value, Error> {
        self.get_json(&format!("{}/{resource_type}/{id}", self.base)).await
    }

    /// Reads a relative reference such as `Patient/123` (an `Observation.subject`, a
    /// `fhirUser`), or an absolute one on this server.
    pub async fn resolve(&self, reference: &str) -> Result<Value, Error> {
        if reference.contains("://") {
            let url = self.own_url(reference)?;
            return self.get_json(&url).await;
        }
        self.get_json(&format!("{}/{reference}", self.base)).await
    }

    fn search_url(&self, resource_type: &str, params: &[(&str, &str)]) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        format!("{}/{resource_type}?{query}", self.base)
    }

    /// One page of a search: the searchset Bundle.
    pub async fn search_page(&self, resource_type: &str, params: &[(&str, &str)]) -> Result<Value, Error> {
        self.get_json(&self.search_url(resource_type, params)).await
    }

    /// The next page of a searchset Bundle, if it has one.
    pub async fn next_page(&self, bundle: &Value) -> Result<Option<Value>, Error> {
        match next_link(bundle) {
            Some(url) => Ok(Some(self.get_json(&self.own_url(url)?).await?)),
            None => Ok(None),
        }
    }

    /// Every matching resource of a search, page after page, as a stream (included resources
    /// are left out).  A page is fetched only when the previous one has been consumed.
    pub fn search(
        &self,
        resource_type: &str,
        params: &[(&str, &str)],
    ) -> impl Stream<Item = Result<Value, Error>> + Send + 'static {
        let first = self.search_url(resource_type, params);
        let client = self.clone();
        futures_util::stream::try_unfold(
            (Some(first), VecDeque::new(), client),
            |(mut next, mut buffered, client): (Option<String>, VecDeque<Value>, FhirClient)| async move {
                loop {
                    if let Some(resource) = buffered.pop_front() {
                        return Ok(Some((resource, (next, buffered, client))));
                    }
                    let Some(url) = next.take() else { return Ok(None) };
                    let bundle = client.get_json(&url).await?;
                    next = next_link(&bundle).map(|u| client.own_url(u)).transpose()?;
                    let matches = bundle.get("entry").and_then(Value::as_array).into_iter().flatten().filter(|e| {
                        e.pointer("/search/mode").and_then(Value::as_str).is_none_or(|mode| mode == "match")
                    });
                    buffered.extend(matches.filter_map(|e| e.get("resource").cloned()));
                    if buffered.is_empty() && next.is_none() {
                        return Ok(None);
                    }
                }
            },
        )
    }

    /// The patient in context (the default compartment).
    pub fn patient_id(&self) -> Result<&str, Error> {
        self.patient.as_deref().ok_or(Error::NoPatient)
    }

    /// Reads the patient in context.
    pub async fn read_patient(&self) -> Result<Value, Error> {
        let id = self.patient_id()?.to_owned();
        self.read("Patient", &id).await
    }

    /// Searches within the context patient's compartment: `patient=<id>` is added (`_id` for
    /// Patient itself).
    pub fn search_patient(
        &self,
        resource_type: &str,
        params: &[(&str, &str)],
    ) -> Result<impl Stream<Item = Result<Value, Error>> + Send + 'static, Error> {
        let patient = self.patient_id()?;
        let key = if resource_type == "Patient" { "_id" } else { "patient" };
        let mut all = vec![(key, patient)];
        all.extend_from_slice(params);
        Ok(self.search(resource_type, &all))
    }

    /// Creates a resource (`POST {type}`) and returns it as stored.
    pub async fn create(&self, resource: &Value) -> Result<Value, Error> {
        let resource_type = resource_type_of(resource)?;
        let url = format!("{}/{resource_type}", self.base);
        let r = self.send(|h| with_body(h.post(&url), resource)).await?;
        self.stored(r).await
    }

    /// Updates a resource (`PUT {type}/{id}`, the id from the resource) and returns it.
    pub async fn update(&self, resource: &Value) -> Result<Value, Error> {
        let resource_type = resource_type_of(resource)?;
        let id = resource
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Config("an update needs the resource's id".into()))?;
        let url = format!("{}/{resource_type}/{id}", self.base);
        let r = self.send(|h| with_body(h.put(&url), resource)).await?;
        self.stored(r).await
    }

    /// Deletes `{type}/{id}`.
    pub async fn delete(&self, resource_type: &str, id: &str) -> Result<(), Error> {
        let url = format!("{}/{resource_type}/{id}", self.base);
        self.send(|h| h.request(Method::DELETE, &url).header(ACCEPT, FHIR_JSON)).await.map(|_| ())
    }

    /// The resource a create or update answered with, or read from its `Location`.
    async fn stored(&self, r: Response) -> Result<Value, Error> {
        let location = r.headers().get(LOCATION).and_then(|l| l.to_str().ok()).map(str::to_owned);
        let body = r.bytes().await?;
        if !body.is_empty() {
            return serde_json::from_slice(&body).map_err(|e| Error::BadResponse(format!("not FHIR JSON: {e}")));
        }
        match location {
            Some(l) => self.resolve(l.split("/_history/").next().unwrap_or(&l)).await,
            None => Ok(Value::Null),
        }
    }
}

fn with_body(request: RequestBuilder, resource: &Value) -> RequestBuilder {
    request
        .header(ACCEPT, FHIR_JSON)
        .header(CONTENT_TYPE, FHIR_JSON)
        .header("Prefer", "return=representation")
        .body(resource.to_string())
}

fn resource_type_of(resource: &Value) -> Result<&str, Error> {
    resource
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Config("the resource has no resourceType".into()))
}
