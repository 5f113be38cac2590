//! The machine's ceilings the launch figures are compared with (issue 10, "Benchmarks"):
//! RS256 signatures per second (an id_token per `openid` launch), measured here with the
//! server's own signing code, and the summary that puts each scenario against its ceiling.

use std::time::{Duration, Instant};

use smartlaunch_auth::keys::{IdTokenClaims, KeyMaterial, SigningKeys};

use crate::Scenario;

/// id_tokens signed per second with a fresh RSA-2048 key on every core (one thread per core,
/// for `seconds`), through [`SigningKeys::sign_id_token`]: the code and the crypto backend
/// (aws-lc-rs) the server signs with, on claims the size of a launch's id_token.
pub(crate) fn rs256_per_sec(seconds: u64) -> anyhow::Result<f64> {
    let keys = SigningKeys::load(&KeyMaterial::generate()).map_err(anyhow::Error::msg)?;
    let claims = IdTokenClaims {
        iss: "http://127.0.0.1:18080".into(),
        sub: "4RzbK6TBJ8Wg1e0XWbA9yQ".into(),
        aud: "0f9a8a1c-0d6c-4d0e-9b1b-6b1e0b6f8a55".into(),
        exp: 1_800_000_000,
        iat: 1_799_996_400,
        auth_time: 1_799_996_400,
        nonce: None,
        fhir_user: Some("http://127.0.0.1:18080/fhir/Practitioner/prac-001".into()),
        name: Some("Dr. Casey Clinician".into()),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let signed: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        std::hint::black_box(keys.sign_id_token(&claims));
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    });
    Ok(signed as f64 / started.elapsed().as_secs_f64())
}

/// The rates measured in one run, by scenario.
#[derive(Default)]
pub(crate) struct Rates {
    measured: Vec<(Scenario, f64)>,
    /// RS256 signatures per second on all cores, when measured.
    pub(crate) rs256: Option<f64>,
}

impl Rates {
    pub(crate) fn record(&mut self, scenario: Scenario, per_sec: f64) {
        self.measured.push((scenario, per_sec));
    }

    fn of(&self, scenario: Scenario) -> Option<f64> {
        self.measured.iter().find(|(s, _)| *s == scenario).map(|(_, r)| *r)
    }

    /// The acceptance ratios of issue 10 that this run's scenarios allow.
    pub(crate) fn summary(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let pct = |a: f64, b: f64| 100.0 * a / b;
        if let (Some(sandbox), Some(session)) = (self.of(Scenario::Sandbox), self.of(Scenario::Launch)) {
            lines.push(format!(
                "sandbox launch {sandbox:.0}/s = {:.0}% of the signed-in path ({session:.0}/s)",
                pct(sandbox, session)
            ));
        }
        if let Some(rs256) = self.rs256 {
            for (scenario, name) in
                [(Scenario::LaunchOpenid, "launch+openid"), (Scenario::SandboxOpenid, "sandbox+openid")]
            {
                if let Some(rate) = self.of(scenario) {
                    lines.push(format!(
                        "{name} {rate:.0}/s = {:.0}% of the RS256 ceiling ({rs256:.0} signatures/s)",
                        pct(rate, rs256)
                    ));
                }
            }
        }
        if let (Some(read), Some(bare)) = (self.of(Scenario::Read), self.of(Scenario::Bare)) {
            lines
                .push(format!("Patient read {read:.0}/s = {:.0}% of the bare endpoint ({bare:.0}/s)", pct(read, bare)));
        }
        lines
    }
}
