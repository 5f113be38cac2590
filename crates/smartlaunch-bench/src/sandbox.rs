//! The sandbox path: a developer-launcher simulation (issue 10, "Benchmarks").  Each worker
//! creates a standalone simulation with the launcher, as a developer does in the browser
//! (`provider-standalone`, skip sign-in, skip consent; the inspector records every request of
//! it), then loops authorize → code → token at the simulation's FHIR base with no session
//! cookie: the launcher vouches for the user.

use anyhow::Context;
use reqwest::header::COOKIE;
use serde_json::Value;

use crate::{between, code_of, random, set_cookie, Bench};

/// The user the launcher's simulations vouch for.
const SANDBOX_USER: &str = "clinician";
/// The patient in the simulations' context.
const SANDBOX_PATIENT: &str = "pat-001";

impl Bench {
    /// Creates a simulation with the launcher's form (its double-submit token included) and
    /// returns its FHIR base (`…/sim/{id}/fhir`).
    pub(crate) async fn simulation(&self) -> anyhow::Result<String> {
        let launcher = format!("{}/launcher", self.args.base);
        let r = self.http.get(&launcher).send().await?.error_for_status()?;
        let form_cookie = set_cookie(&r, "smartlaunch_csrf=").context("the launcher set no form cookie")?;
        let page = r.text().await?;
        let csrf = between(&page, "name=\"csrf\" value=\"", '"').context("no launcher form")?.to_owned();
        let page = self
            .http
            .post(&launcher)
            .header(COOKIE, form_cookie)
            .form(&[
                ("csrf", csrf.as_str()),
                ("launch_type", "provider-standalone"),
                ("client_id", self.client_id.as_str()),
                ("user", SANDBOX_USER),
                ("patient", SANDBOX_PATIENT),
                ("skip_sign_in", "on"),
                ("skip_consent", "on"),
            ])
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let base = between(&page, "id=\"fhir_base\" value=\"", '"')
            .with_context(|| format!("the launcher made no simulation: {}", first_problem(&page)))?
            .replace("&#x2f;", "/");
        anyhow::ensure!(base.contains("/sim/"), "not a simulation's FHIR base: {base}");
        Ok(base)
    }

    /// One launch of a simulation: authorize (no cookie: the launcher vouches for the user and
    /// skips consent) → code → token.
    pub(crate) async fn sandbox_launch(&self, sim_base: &str, scope: &str) -> anyhow::Result<Value> {
        let verifier = random(32);
        let r = self.http.get(self.authorize_url_for(sim_base, scope, &verifier)).send().await?;
        let code = code_of(&r)?;
        self.redeem(&code, &verifier).await
    }
}

/// The launcher's problem line, for an error message.
fn first_problem(page: &str) -> String {
    between(page, "role=\"alert\">", '<').unwrap_or("no problem shown").trim().to_owned()
}
