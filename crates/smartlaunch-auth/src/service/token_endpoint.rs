//! The token endpoint: client authentication, the `authorization_code` and `refresh_token`
//! grants, and token minting (spec digest §1.5–1.7, checklist items 41–76).

use std::sync::Arc;

use smart_scopes::{Scope, ScopeSet};

use crate::client::Client;
use crate::error::TokenError;
use crate::inspect::{backend_token_event, mask, token_outcome, Flag, LaunchEvent, Step, TokenContext};
use crate::keys::{AccessClaims, IdTokenClaims};
use crate::launch::{BackendSession, SimulatedError};
use crate::pkce;
use crate::secrets::{hash_token, random_token};
use crate::store::{AuthStore, CodeGrant, CodeRedemption, Grant, RefreshToken};
use crate::token::{BasicCredentials, TokenRequest, TokenResponse};
use crate::{AuthService, UnixTime};

impl<S: AuthStore> AuthService<S> {
    /// `POST /auth/token`.  A request of a client with a live backend-service session (the
    /// developer launcher) is recorded for its inspector, every check of its assertion listed.
    pub async fn token(
        &self,
        req: TokenRequest,
        basic: Option<BasicCredentials>,
        now: UnixTime,
    ) -> Result<TokenResponse, TokenError> {
        let auth = self.authenticate(&req, basic, now).await;
        let session = auth.named.as_ref().and_then(|c| c.live_session(now));
        let mut simulated = false;
        let result = match auth.result {
            Ok(client) => self.grant(client, session.as_deref(), &req, &mut simulated, now).await,
            Err(e) => Err(e),
        };
        if let Some(session) = &session {
            let event = LaunchEvent { simulated, ..backend_token_event(&req, auth.method, &auth.report, &result, now) };
            self.record(&session.trace_id, event).await;
        }
        result
    }

    /// The grant, for an authenticated client; `simulated` is set when a backend session's
    /// simulated error answered.
    async fn grant(
        &self,
        client: Option<Arc<Client>>,
        session: Option<&BackendSession>,
        req: &TokenRequest,
        simulated: &mut bool,
        now: UnixTime,
    ) -> Result<TokenResponse, TokenError> {
        if client.is_some()
            && session.and_then(|s| s.simulate_error) == Some(SimulatedError::BackendInvalidClientAssertion)
        {
            *simulated = true;
            return Err(TokenError::InvalidClient(
                "the client assertion is not valid (simulated by the developer launcher)".into(),
            ));
        }
        match req.grant_type.as_deref() {
            Some("authorization_code") => {
                let client = client.ok_or_else(|| {
                    TokenError::InvalidClient("no client identified: public apps send client_id; confidential apps authenticate with HTTP Basic, client_secret_post or a private_key_jwt client_assertion".into())
                })?;
                self.exchange_code(&client, req, now).await
            }
            Some("refresh_token") => self.refresh(client, req, now).await,
            Some("client_credentials") => {
                let client = client.ok_or_else(|| {
                    TokenError::InvalidClient("a backend service authenticates: send client_assertion_type and client_assertion (private_key_jwt)".into())
                })?;
                self.client_credentials(&client, session, req, simulated, now).await
            }
            None | Some("") => Err(TokenError::InvalidRequest("grant_type is required".into())),
            Some(other) => Err(TokenError::UnsupportedGrantType(format!(
                "grant_type `{}` is not supported; use `authorization_code`, `refresh_token` or `client_credentials`",
                other.chars().take(64).collect::<String>()
            ))),
        }
    }

    /// The `authorization_code` grant (checklist items 29, 31, 42).
    async fn exchange_code(
        &self,
        client: &Client,
        req: &TokenRequest,
        now: UnixTime,
    ) -> Result<TokenResponse, TokenError> {
        if !client.allows_grant("authorization_code") {
            return Err(TokenError::UnauthorizedClient(
                "this client is not registered for the authorization_code grant".into(),
            ));
        }
        let code = req
            .code
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| TokenError::InvalidRequest("code is required".into()))?;
        let redirect_uri = req.redirect_uri.as_deref().ok_or_else(|| {
            TokenError::InvalidRequest("redirect_uri is required and must equal the one sent to authorize".into())
        })?;
        if code.len() > 256 {
            return Err(TokenError::InvalidGrant("the code is unknown, expired or already used".into()));
        }
        // Consume first, atomically: a racing second redemption finds nothing.
        let cg = match self.store.redeem_code(&hash_token(code), now).await? {
            CodeRedemption::Redeemed(cg) => *cg,
            CodeRedemption::Unknown => {
                return Err(TokenError::InvalidGrant("the code is unknown, expired or already used".into()))
            }
            CodeRedemption::Replayed { grant_id } => {
                self.revoke_grant(&grant_id, now).await?;
                return Err(TokenError::InvalidGrant(
                    "the code was already used; the tokens issued for it have been revoked".into(),
                ));
            }
        };
        let trace = cg.trace.clone();
        let mut simulated = false;
        let result = self.issue_for_code(client, req, redirect_uri, cg, &mut simulated, now).await;
        if let Some(trace) = trace {
            let mut details = vec![
                ("grant_type".to_owned(), "authorization_code".to_owned()),
                ("client_id".to_owned(), client.client_id.clone()),
                ("code".to_owned(), mask(code)),
                ("redirect_uri".to_owned(), redirect_uri.to_owned()),
                (
                    "code_verifier".to_owned(),
                    req.code_verifier
                        .as_deref()
                        .map_or_else(|| "missing".to_owned(), |v| format!("sent ({} characters)", v.len())),
                ),
            ];
            if let Ok(r) = &result {
                details.push(("granted scope".to_owned(), r.scope.clone()));
            }
            let event = LaunchEvent {
                simulated,
                context: result.as_ref().ok().map(TokenContext::of),
                ..token_event(Step::Token, details, &result, Vec::new(), now)
            };
            self.record(&trace, event).await;
        }
        result
    }

    /// The checks after a code was redeemed, and the tokens.
    async fn issue_for_code(
        &self,
        client: &Client,
        req: &TokenRequest,
        redirect_uri: &str,
        cg: CodeGrant,
        simulated: &mut bool,
        now: UnixTime,
    ) -> Result<TokenResponse, TokenError> {
        if cg.client_id != client.client_id {
            return Err(TokenError::InvalidGrant("the code was issued to another client".into()));
        }
        if cg.redirect_uri != redirect_uri {
            return Err(TokenError::InvalidGrant(
                "redirect_uri differs from the one in the authorization request".into(),
            ));
        }
        pkce::verify(&cg.code_challenge, req.code_verifier.as_deref())
            .map_err(|m| TokenError::InvalidGrant(m.into()))?;
        let note = "(simulated by the developer launcher)";
        *simulated = matches!(
            cg.simulate_error,
            Some(
                SimulatedError::TokenInvalidClientSecret
                    | SimulatedError::TokenInvalidCode
                    | SimulatedError::TokenInvalidScope
            )
        );
        match cg.simulate_error {
            Some(SimulatedError::TokenInvalidClientSecret) => {
                return Err(TokenError::InvalidClient(format!("the client secret is not valid {note}")))
            }
            Some(SimulatedError::TokenInvalidCode) => {
                return Err(TokenError::InvalidGrant(format!("the code is unknown, expired or already used {note}")))
            }
            Some(SimulatedError::TokenInvalidScope) => {
                return Err(TokenError::InvalidScope(format!("the granted scope is invalid {note}")))
            }
            _ => {}
        }

        let scope = ScopeSet::parse(&cg.scope).map_err(|e| TokenError::ServerError(e.to_string()))?;
        let refresh_expires_at = if scope.contains(&Scope::OfflineAccess) {
            Some(now + self.config.offline_lifetime)
        } else if scope.contains(&Scope::OnlineAccess) {
            Some(now + self.config.session_lifetime)
        } else {
            None
        };
        let grant = Grant {
            id: cg.grant_id.clone(),
            client_id: client.client_id.clone(),
            user_id: cg.user_id.clone(),
            fhir_user: cg.fhir_user.clone(),
            scope: cg.scope.clone(),
            patient: cg.patient.clone(),
            encounter: cg.encounter.clone(),
            session_id: cg.session_id.clone(),
            refresh_expires_at,
            created_at: now,
            revoked_at: None,
            context: cg.context.clone(),
            simulate_error: cg.simulate_error,
            aud: cg.aud.clone(),
            trace: cg.trace.clone(),
        };
        let refresh_token = refresh_expires_at.map(|_| random_token(32));
        if let Some(token) = &refresh_token {
            self.store.insert_grant(&grant, &self.refresh_record(token, &grant)).await?;
        }

        let id_token = scope.contains(&Scope::OpenId).then(|| {
            self.signing_keys().sign_id_token(&IdTokenClaims {
                iss: self.config.issuer().to_owned(),
                sub: cg.user_id.clone(),
                aud: client.client_id.clone(),
                exp: now + self.config.access_token_lifetime,
                iat: now,
                auth_time: cg.auth_time,
                nonce: cg.nonce.clone(),
                fhir_user: scope.contains(&Scope::FhirUser).then(|| format!("{}/{}", cg.aud, cg.fhir_user)),
                name: Some(cg.user_name.clone()),
            })
        });
        let mut response = self.access_token_response(&grant, &scope, now);
        response.refresh_token = refresh_token;
        response.id_token = id_token;
        Ok(response)
    }

    /// The `refresh_token` grant: bound to its client, rotated on every use, reuse revokes the
    /// family, scope may narrow but never widen (checklist items 71–76).
    async fn refresh(
        &self,
        client: Option<Arc<Client>>,
        req: &TokenRequest,
        now: UnixTime,
    ) -> Result<TokenResponse, TokenError> {
        let token = req
            .refresh_token
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| TokenError::InvalidRequest("refresh_token is required".into()))?;
        let unknown = || TokenError::InvalidGrant("the refresh token is unknown, expired or revoked".into());
        if token.len() > 256 {
            return Err(unknown());
        }
        let old_hash = hash_token(token);
        let record = self.store.refresh_token(&old_hash).await?.ok_or_else(unknown)?;
        // The grant is read once, here: its trace is needed to record even a refused refresh.
        let grant = self.store.grant(&record.grant_id).await?;
        let trace = grant.as_ref().and_then(|g| g.trace.clone());
        let mut notes = RefreshNotes::default();
        let result = self.rotate(client, req, record, grant, &mut notes, now).await;
        if let Some(trace) = trace {
            let mut details = vec![("refresh_token".to_owned(), mask(token))];
            if let Some(scope) = &req.scope {
                details.push(("scope".to_owned(), scope.clone()));
            }
            let mut flags = Vec::new();
            if notes.reused {
                flags.push(Flag::refresh_reused());
            }
            if let Some((sent_by, issued_to)) = &notes.other_client {
                details.push(("client_id".to_owned(), sent_by.clone()));
                flags.push(Flag::refresh_other_client(sent_by, issued_to));
            }
            let event =
                LaunchEvent { simulated: notes.simulated, ..token_event(Step::Refresh, details, &result, flags, now) };
            self.record(&trace, event).await;
        }
        result
    }

    /// The checks on a found refresh token, and its rotation.
    async fn rotate(
        &self,
        client: Option<Arc<Client>>,
        req: &TokenRequest,
        record: RefreshToken,
        grant: Option<Grant>,
        notes: &mut RefreshNotes,
        now: UnixTime,
    ) -> Result<TokenResponse, TokenError> {
        let unknown = || TokenError::InvalidGrant("the refresh token is unknown, expired or revoked".into());
        let client = match client {
            Some(c) if c.client_id != record.client_id => {
                notes.other_client = Some((c.client_id.clone(), record.client_id.clone()));
                return Err(TokenError::InvalidGrant("the refresh token was issued to another client".into()));
            }
            Some(c) => c,
            None => {
                let c = self.client(&record.client_id, now).await?.ok_or_else(unknown)?;
                if c.is_confidential() {
                    return Err(TokenError::InvalidClient(
                        "this client is confidential: authenticate to refresh".into(),
                    ));
                }
                c
            }
        };
        if !client.allows_grant("refresh_token") {
            return Err(TokenError::UnauthorizedClient(
                "this client is not registered for the refresh_token grant".into(),
            ));
        }
        if record.used_at.is_some() {
            notes.reused = true;
            self.revoke_grant(&record.grant_id, now).await?;
            return Err(TokenError::InvalidGrant(
                "the refresh token was already used; for safety this authorization is now revoked — sign in again"
                    .into(),
            ));
        }
        if record.expires_at <= now {
            return Err(TokenError::InvalidGrant("the refresh token has expired; sign in again".into()));
        }
        let grant = grant.ok_or_else(unknown)?;
        if grant.revoked_at.is_some() {
            return Err(unknown());
        }
        if grant.simulate_error == Some(SimulatedError::TokenExpiredRefreshToken) {
            notes.simulated = true;
            return Err(TokenError::InvalidGrant(
                "the refresh token has expired; sign in again (simulated by the developer launcher)".into(),
            ));
        }
        if let Some(session) = &grant.session_id {
            if self.store.session(session, now).await?.is_none() {
                return Err(TokenError::InvalidGrant(
                    "online_access ended: the user signed out or the session expired".into(),
                ));
            }
        }
        let granted = ScopeSet::parse(&grant.scope).map_err(|e| TokenError::ServerError(e.to_string()))?;
        let scope = match req.scope.as_deref().map(str::trim) {
            None | Some("") => granted,
            Some(s) => {
                let asked = ScopeSet::parse(s).map_err(|e| TokenError::InvalidScope(e.to_string()))?;
                if !asked.is_subset_of(&granted) {
                    return Err(TokenError::InvalidScope(format!(
                        "a refresh may only narrow the original grant ({granted}); it cannot add scopes"
                    )));
                }
                asked
            }
        };
        let new_token = random_token(32);
        let new_record = self.refresh_record(&new_token, &grant);
        if !self.store.rotate_refresh(&record.token_hash, &new_record, now).await? {
            notes.reused = true;
            self.revoke_grant(&record.grant_id, now).await?;
            return Err(TokenError::InvalidGrant(
                "the refresh token was already used; for safety this authorization is now revoked — sign in again"
                    .into(),
            ));
        }
        let mut response = self.access_token_response(&grant, &scope, now);
        response.refresh_token = Some(new_token);
        Ok(response)
    }

    fn refresh_record(&self, token: &str, grant: &Grant) -> RefreshToken {
        RefreshToken {
            token_hash: hash_token(token),
            grant_id: grant.id.clone(),
            client_id: grant.client_id.clone(),
            expires_at: grant.refresh_expires_at.unwrap_or(grant.created_at),
            used_at: None,
        }
    }

    fn access_token_response(&self, grant: &Grant, scope: &ScopeSet, now: UnixTime) -> TokenResponse {
        let lifetime = self.config.access_token_lifetime;
        let claims = AccessClaims {
            iss: self.config.issuer().to_owned(),
            // Grants stored before the FHIR base was recorded are for our own base.
            aud: if grant.aud.is_empty() { self.config.fhir_base() } else { grant.aud.clone() },
            sub: grant.user_id.clone(),
            client_id: grant.client_id.clone(),
            scope: scope.to_string(),
            grant: grant.id.clone(),
            patient: grant.patient.clone(),
            encounter: grant.encounter.clone(),
            fhir_user: Some(grant.fhir_user.clone()).filter(|f| !f.is_empty()),
            iat: now,
            exp: now + lifetime,
            jti: random_token(12),
            context: (!grant.context.is_empty()).then(|| Box::new(grant.context.clone())),
            simulate_error: grant
                .simulate_error
                .filter(|e| matches!(e, SimulatedError::FhirInvalidToken | SimulatedError::FhirExpiredToken)),
            trace: grant.trace.clone(),
        };
        TokenResponse {
            access_token: self.signing_keys().sign_access_token(&claims),
            token_type: "Bearer",
            expires_in: lifetime,
            scope: claims.scope,
            refresh_token: None,
            id_token: None,
            patient: claims.patient,
            encounter: claims.encounter,
            context: grant.context.clone(),
        }
    }
}

/// What a refresh found, for the inspector.
#[derive(Debug, Default)]
struct RefreshNotes {
    /// The answer was the launcher's simulated `token_expired_refresh_token`.
    simulated: bool,
    /// The refresh token had been used before.
    reused: bool,
    /// Sent by (the first), issued to (the second) another client.
    other_client: Option<(String, String)>,
}

/// The inspector's record of a token-endpoint request.
fn token_event(
    step: Step,
    details: Vec<(String, String)>,
    result: &Result<TokenResponse, TokenError>,
    flags: Vec<Flag>,
    now: UnixTime,
) -> LaunchEvent {
    LaunchEvent { details, flags, ..LaunchEvent::new(step, "POST /auth/token", token_outcome(result), now) }
}
