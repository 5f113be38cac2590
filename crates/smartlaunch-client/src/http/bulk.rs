//! A FHIR Bulk Data Access 2.0 `$export` client: kick-off, status polling that honours
//! `Retry-After`, and NDJSON downloads streamed line by line.

use std::time::{Duration, SystemTime};

use futures_util::{Stream, StreamExt};
use reqwest::header::{ACCEPT, CONTENT_LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use super::FhirClient;
use crate::Error;

/// The longest an NDJSON line may be (a resource larger than this is refused, not buffered).
const MAX_LINE: usize = 64 * 1024 * 1024;
/// Polling waits at least this long, and at most `MAX_WAIT`, whatever `Retry-After` says.
const MIN_WAIT: Duration = Duration::from_millis(500);
const MAX_WAIT: Duration = Duration::from_secs(120);

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    path: String,
    params: Vec<(String, String)>,
}

impl ExportRequest {
    /// `[base]/$export`: the whole server.
    pub fn system() -> ExportRequest {
        ExportRequest { path: "$export".into(), params: Vec::new() }
    }

    /// `[base]/Patient/$export`: every patient's compartment.
    pub fn patients() -> ExportRequest {
        ExportRequest { path: "Patient/$export".into(), params: Vec::new() }
    }

    /// `[base]/Group/{id}/$export`: the group's members.
    pub fn group(id: &str) -> ExportRequest {
        ExportRequest { path: format!("Group/{id}/$export"), params: Vec::new() }
    }

    /// `_type`: only these resource types.
    pub fn types<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, types: I) -> Self {
        let list: Vec<String> = types.into_iter().map(|t| t.as_ref().to_owned()).collect();
        self.params.push(("_type".into(), list.join(",")));
        self
    }

    /// `_since`: only resources changed after this FHIR instant.
    pub fn since(mut self, instant: &str) -> Self {
        self.params.push(("_since".into(), instant.to_owned()));
        self
    }
}

/// One file of a manifest.
#[derive(Debug, Clone, Deserialize)]
pub struct ExportFile {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub url: String,
    #[serde(default)]
    pub count: Option<u64>,
}

/// The completed export's manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportManifest {
    pub transaction_time: String,
    pub request: String,
    #[serde(default)]
    pub requires_access_token: bool,
    #[serde(default)]
    pub output: Vec<ExportFile>,
    #[serde(default)]
    pub error: Vec<ExportFile>,
}

/// Where a poll found the export.
#[derive(Debug)]
pub enum ExportStatus {
    /// Still running: `X-Progress`, and how long the server asked to wait.
    InProgress {
        progress: Option<String>,
        retry_after: Duration,
    },
    Complete(ExportManifest),
}

/// A started export.
pub struct ExportJob {
    fhir: FhirClient,
    /// The status URL (`Content-Location` of the kick-off).
    pub status_url: String,
}

/// `Retry-After` as delta-seconds or an HTTP-date (RFC 9110 §10.2.3), within the bounds.
pub(crate) fn retry_after(value: Option<&str>, now: SystemTime) -> Duration {
    let wait = value.and_then(|v| {
        let v = v.trim();
        v.parse::<u64>()
            .ok()
            .map(Duration::from_secs)
            .or_else(|| httpdate::parse_http_date(v).ok().map(|at| at.duration_since(now).unwrap_or(Duration::ZERO)))
    });
    wait.unwrap_or(Duration::from_secs(2)).clamp(MIN_WAIT, MAX_WAIT)
}

impl FhirClient {
    /// Kicks off an export (`Prefer: respond-async`) and returns the job to poll.
    pub async fn export(&self, request: &ExportRequest) -> Result<ExportJob, Error> {
        let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&request.params).finish();
        let url = format!("{}/{}{}{query}", self.base(), request.path, if query.is_empty() { "" } else { "?" });
        let r = self
            .send(|h| h.get(&url).header(ACCEPT, "application/fhir+json").header("Prefer", "respond-async"))
            .await?;
        if r.status() != StatusCode::ACCEPTED {
            return Err(Error::Export(format!("the kick-off answered {}, not 202 Accepted", r.status())));
        }
        let status_url = r
            .headers()
            .get(CONTENT_LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Export("the kick-off's answer has no Content-Location".into()))?;
        Ok(ExportJob { fhir: self.clone(), status_url: self.own_url(status_url)? })
    }
}

impl ExportJob {
    /// Asks once where the export is.
    pub async fn poll(&self) -> Result<ExportStatus, Error> {
        let r = self.fhir.send(|h| h.get(&self.status_url).header(ACCEPT, "application/json")).await?;
        if r.status() == StatusCode::ACCEPTED {
            let header = |name| r.headers().get(name).and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok());
            return Ok(ExportStatus::InProgress {
                progress: header("x-progress").map(str::to_owned),
                retry_after: retry_after(header(RETRY_AFTER.as_str()), SystemTime::now()),
            });
        }
        let body = super::read_limited(r, 8 * super::SMALL_BODY).await?;
        let manifest =
            serde_json::from_slice(&body).map_err(|e| Error::Export(format!("the manifest does not parse: {e}")))?;
        Ok(ExportStatus::Complete(manifest))
    }

    /// Polls until the export completes, waiting as long as each `Retry-After` asks, for at
    /// most six hours.
    pub async fn wait(&self) -> Result<ExportManifest, Error> {
        self.wait_at_most(Duration::from_secs(6 * 3600)).await
    }

    /// Polls until the export completes or `limit` has passed (a server that never finishes
    /// cannot keep the app polling for ever).
    pub async fn wait_at_most(&self, limit: Duration) -> Result<ExportManifest, Error> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match self.poll().await? {
                ExportStatus::Complete(m) => return Ok(m),
                ExportStatus::InProgress { retry_after, .. } => {
                    if tokio::time::Instant::now() + retry_after > deadline {
                        return Err(Error::Export(format!("not complete after {} s", limit.as_secs())));
                    }
                    tokio::time::sleep(retry_after).await
                }
            }
        }
    }

    /// Cancels the export (`DELETE` on the status URL).
    pub async fn cancel(&self) -> Result<(), Error> {
        self.fhir.send(|h| h.request(Method::DELETE, &self.status_url)).await.map(|_| ())
    }

    /// The resources of one output file, streamed line by line (the file is never held whole).
    pub async fn download(
        &self,
        manifest: &ExportManifest,
        file: &ExportFile,
    ) -> Result<impl Stream<Item = Result<Value, Error>> + Send + 'static, Error> {
        let accept = "application/fhir+ndjson";
        let response = if manifest.requires_access_token {
            let url = self.fhir.own_url(&file.url)?;
            self.fhir.send(|h| h.get(&url).header(ACCEPT, accept)).await?
        } else {
            // No token is sent to a file the server says needs none (it may be elsewhere), and
            // only over https (or on loopback).
            if !crate::issuer::is_https_or_loopback(&file.url) {
                return Err(Error::Export(format!("the file {} is not at an https URL", file.url)));
            }
            let r = self.fhir.http().get(&file.url).header(ACCEPT, accept).send().await?;
            if !r.status().is_success() {
                return Err(Error::Export(format!("the file {} answered {}", file.url, r.status())));
            }
            r
        };
        Ok(ndjson(response.bytes_stream()))
    }
}

/// Splits a byte stream into NDJSON lines and parses each.
fn ndjson(
    bytes: impl Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
) -> impl Stream<Item = Result<Value, Error>> + Send + 'static {
    let bytes = Box::pin(bytes);
    // `scanned`: how much of `buf` is known to hold no newline, so a long line arriving in
    // small chunks is scanned once, not once per chunk.
    let start = (bytes, Vec::<u8>::new(), false, 0usize);
    futures_util::stream::try_unfold(start, |(mut bytes, mut buf, mut ended, mut scanned)| async move {
        loop {
            let unscanned = buf.get(scanned..).unwrap_or_default();
            if let Some(end) = unscanned.iter().position(|b| *b == b'\n').map(|i| i + scanned) {
                scanned = 0;
                let line: Vec<u8> = buf.drain(..=end).collect();
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                let value = serde_json::from_slice(line)
                    .map_err(|e| Error::Export(format!("an NDJSON line does not parse: {e}")))?;
                return Ok(Some((value, (bytes, buf, ended, scanned))));
            }
            scanned = buf.len();
            if ended {
                let rest = std::mem::take(&mut buf);
                scanned = 0;
                let rest = rest.trim_ascii();
                if rest.is_empty() {
                    return Ok(None);
                }
                let value = serde_json::from_slice(rest)
                    .map_err(|e| Error::Export(format!("an NDJSON line does not parse: {e}")))?;
                return Ok(Some((value, (bytes, buf, ended, scanned))));
            }
            match bytes.next().await {
                Some(chunk) => {
                    buf.extend_from_slice(&chunk?);
                    if buf.len() > MAX_LINE {
                        return Err(Error::Export(format!("an NDJSON line is longer than {MAX_LINE} bytes")));
                    }
                }
                None => ended = true,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_a_date_within_bounds() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(Some("3"), now), Duration::from_secs(3));
        assert_eq!(retry_after(Some("0"), now), MIN_WAIT);
        assert_eq!(retry_after(Some("86400"), now), MAX_WAIT);
        let in_five = httpdate::fmt_http_date(now + Duration::from_secs(5));
        assert_eq!(retry_after(Some(&in_five), now), Duration::from_secs(5));
        assert_eq!(retry_after(Some("soon"), now), Duration::from_secs(2));
        assert_eq!(retry_after(None, now), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn ndjson_lines_split_across_chunks_are_joined() {
        let chunks: Vec<reqwest::Result<bytes::Bytes>> = vec![
            Ok(bytes::Bytes::from_static(b"{\"id\":\"1\"}\n{\"id\"")),
            Ok(bytes::Bytes::from_static(b":\"2\"}\n\n{\"id\":\"3\"}")),
        ];
        let values: Vec<Value> = ndjson(futures_util::stream::iter(chunks)).map(|r| r.unwrap()).collect().await;
        let ids: Vec<&str> = values.iter().map(|v| v["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["1", "2", "3"]);
    }
}
