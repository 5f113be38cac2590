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
/// The largest FHIR response read (a page of a search, a resource).
const MAX_BODY: usize = 32 * 1024 * 1024;
/// A search stops after this many pages, or at a page whose `next` is itself.
const MAX_PAGES: usize = 10_000;

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
        FhirClient { base, http, source, patient }
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
        own_url(&self.base, url)
    }

    /// `{base}/{type}/{id}`, refusing a type or id that would change the path (FHIR ids are
    /// `[A-Za-z0-9-.]{1,64}`).
    fn instance_url(&self, resource_type: &str, id: &str) -> Result<String, Error> {
        let id_ok = !id.is_empty()
            && id.len() <= 64
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            && id != "."
            && id != "..";
        let type_ok = !resource_type.is_empty() && resource_type.chars().all(|c| c.is_ascii_alphabetic());
        if !id_ok || !type_ok {
            return Err(Error::Config(format!("{resource_type}/{id} is not a FHIR resource type and id")));
        }
        Ok(format!("{}/{resource_type}/{id}", self.base))
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
        let body = super::read_limited(response, super::SMALL_BODY).await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Err(Error::Fhir { status, issues: outcome_issues(&body) })
    }

    async fn json(&self, response: Response) -> Result<Value, Error> {
        let body = super::read_limited(response, MAX_BODY).await?;
        serde_json::from_slice(&body).map_err(|e| Error::BadResponse(format!("not FHIR JSON: {e}")))
    }

    async fn get_json(&self, url: &str) -> Result<Value, Error> {
        let r = self.send(|h| h.get(url).header(ACCEPT, FHIR_JSON)).await?;
        self.json(r).await
    }

    /// Reads `{type}/{id}`.
    pub async fn read(&self, resource_type: &str, id: &str) -> Result<Value, Error> {
        self.get_json(&self.instance_url(resource_type, id)?).await
    }

    /// Reads a relative reference such as `Patient/123` (an `Observation.subject`, a
    /// `fhirUser`), or an absolute one on this server.
    pub async fn resolve(&self, reference: &str) -> Result<Value, Error> {
        if reference.contains("://") {
            let url = self.own_url(reference)?;
            return self.get_json(&url).await;
        }
        let (resource_type, id) =
            reference.split_once('/').ok_or_else(|| Error::Config(format!("{reference} is not Type/id")))?;
        self.get_json(&self.instance_url(resource_type, id)?).await
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
            (Some(first), VecDeque::new(), client, 0usize),
            |(mut next, mut buffered, client, mut pages): (Option<String>, VecDeque<Value>, FhirClient, usize)| async move {
                loop {
                    if let Some(resource) = buffered.pop_front() {
                        return Ok(Some((resource, (next, buffered, client, pages))));
                    }
                    let Some(url) = next.take() else { return Ok(None) };
                    pages += 1;
                    if pages > MAX_PAGES {
                        return Err(Error::BadResponse(format!("the search goes on past {MAX_PAGES} pages")));
                    }
                    let bundle = client.get_json(&url).await?;
                    next = next_link(&bundle).map(|u| client.own_url(u)).transpose()?;
                    if next.as_deref() == Some(url.as_str()) {
                        return Err(Error::BadResponse("a page's next link is the page itself".into()));
                    }
                    let matches = bundle.get("entry").and_then(Value::as_array).into_iter().flatten().filter(|e| {
                        e.pointer("/search/mode").and_then(Value::as_str).is_none_or(|mode| mode == "match")
                    });
                    buffered.extend(matches.filter_map(|e| e.get("resource").cloned()));
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
        let url = self.instance_url(resource_type, id)?;
        let r = self.send(|h| with_body(h.put(&url), resource)).await?;
        self.stored(r).await
    }

    /// Deletes `{type}/{id}`.
    pub async fn delete(&self, resource_type: &str, id: &str) -> Result<(), Error> {
        let url = self.instance_url(resource_type, id)?;
        self.send(|h| h.request(Method::DELETE, &url).header(ACCEPT, FHIR_JSON)).await.map(|_| ())
    }

    /// The resource a create or update answered with, or read from its `Location`.
    async fn stored(&self, r: Response) -> Result<Value, Error> {
        let location = r.headers().get(LOCATION).and_then(|l| l.to_str().ok()).map(str::to_owned);
        let body = super::read_limited(r, MAX_BODY).await?;
        if !body.is_empty() {
            return serde_json::from_slice(&body).map_err(|e| Error::BadResponse(format!("not FHIR JSON: {e}")));
        }
        match location {
            Some(l) => {
                let current = l.split("/_history/").next().unwrap_or(&l);
                let url =
                    if current.contains("://") { self.own_url(current)? } else { format!("{}/{current}", self.base) };
                self.get_json(&url).await
            }
            None => Ok(Value::Null),
        }
    }
}

/// `url`, when it is on the server of `base` (same origin, under the base path once `..` and
/// `%2e%2e` segments are resolved by parsing), else [`Error::ForeignUrl`].
fn own_url(base: &str, url: &str) -> Result<String, Error> {
    let foreign = || Error::ForeignUrl(url.to_owned());
    let parsed = Url::parse(url).map_err(|_| foreign())?;
    let base = Url::parse(base).map_err(|_| foreign())?;
    let base_path = base.path().trim_end_matches('/');
    let path = parsed.path();
    let under_base = path == base_path || path.strip_prefix(base_path).is_some_and(|rest| rest.starts_with('/'));
    if parsed.origin() != base.origin() || !under_base || url.contains('\\') {
        return Err(foreign());
    }
    Ok(parsed.to_string())
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

#[cfg(test)]
mod tests {
    use super::own_url;

    #[test]
    fn only_urls_under_the_fhir_base_of_its_origin_are_sent_the_token() {
        let base = "https://ehr.example/tenant-a/fhir";
        for ok in [
            "https://ehr.example/tenant-a/fhir/Observation?page=2",
            "https://ehr.example/tenant-a/fhir",
            "https://ehr.example:443/tenant-a/fhir/Patient/1",
        ] {
            assert!(own_url(base, ok).is_ok(), "{ok}");
        }
        for foreign in [
            "https://evil.example/tenant-a/fhir/Observation",
            "http://ehr.example/tenant-a/fhir/Observation",
            "https://ehr.example/tenant-a/fhir2/Observation",
            "https://ehr.example/tenant-a/fhir/../../tenant-b/fhir/Patient",
            "https://ehr.example/tenant-a/fhir/%2e%2e/%2e%2e/tenant-b/fhir",
            "https://ehr.example/tenant-a/fhir/..",
            "https://ehr.example/tenant-b/fhir/Patient",
            "/tenant-a/fhir/Patient",
        ] {
            assert!(own_url(base, foreign).is_err(), "{foreign}");
        }
    }
}
