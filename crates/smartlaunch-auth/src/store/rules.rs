//! The storage rules the security of the protocol core rests on, written once against the
//! ports and run against every store: [`MemoryStore`](super::memory::MemoryStore) in this
//! crate's tests, the SQLite store in `smartlaunch-store/tests/rules.rs` (ARCHITECTURE.md
//! "Tests": a double that drifts from the real store proves nothing).
//!
//! Each rule panics (it is an assertion) when the store breaks it, and returns a store error
//! when the store fails.  Racing rules spawn tasks: run them on a multi-threaded runtime.

use std::future::Future;

use super::{
    ClientStore, CodeGrant, CodeRedemption, CodeStore, Grant, GrantStore, Housekeeping, LaunchRedemption, LaunchStore,
    RefreshToken, StoreResult,
};
use crate::client::{Client, ClientMetadata, TokenEndpointAuthMethod};
use crate::error::StoreError;
use crate::launch::Launch;
use crate::retention::Retention;
use crate::UnixTime;

/// Runs `task` `n` times at once on clones of `store`; the results in spawn order.
async fn race<S, T, F, Fut>(store: &S, n: usize, task: F) -> StoreResult<Vec<T>>
where
    S: Clone + Send + 'static,
    T: Send + 'static,
    F: Fn(S, usize) -> Fut,
    Fut: Future<Output = StoreResult<T>> + Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(task(store.clone(), i))).collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.map_err(|e| StoreError(format!("task: {e}")))??);
    }
    Ok(out)
}

/// A code bound to client `c`.
pub fn code_grant(grant_id: &str) -> CodeGrant {
    CodeGrant {
        grant_id: grant_id.into(),
        client_id: "c".into(),
        redirect_uri: "http://127.0.0.1/cb".into(),
        code_challenge: "x".into(),
        aud: "http://127.0.0.1/fhir".into(),
        user_id: "u".into(),
        fhir_user: "Patient/p".into(),
        user_name: "P".into(),
        scope: "openid".into(),
        patient: None,
        encounter: None,
        nonce: None,
        session_id: None,
        auth_time: 0,
        context: Default::default(),
        simulate_error: None,
        trace: None,
    }
}

/// A stored grant of client `c` and user `u` with refresh tokens until `refresh_expires_at`.
pub fn grant(id: &str, refresh_expires_at: UnixTime) -> Grant {
    Grant {
        id: id.into(),
        client_id: "c".into(),
        user_id: "u".into(),
        fhir_user: "Patient/p".into(),
        scope: "offline_access".into(),
        patient: None,
        encounter: None,
        session_id: None,
        refresh_expires_at: Some(refresh_expires_at),
        created_at: 0,
        revoked_at: None,
        context: Default::default(),
        simulate_error: None,
        aud: "http://127.0.0.1/fhir".into(),
        trace: None,
    }
}

/// A refresh token of grant `grant_id` (client `c`).
pub fn refresh(token_hash: &str, grant_id: &str, expires_at: UnixTime) -> RefreshToken {
    RefreshToken {
        token_hash: token_hash.into(),
        grant_id: grant_id.into(),
        client_id: "c".into(),
        expires_at,
        used_at: None,
    }
}

/// An EHR launch of client `c`, live until `expires_at`.
pub fn launch(id_hash: &str, expires_at: UnixTime) -> Launch {
    Launch {
        id_hash: id_hash.into(),
        client_id: "c".into(),
        user_id: None,
        session_id: None,
        patient: Some("p".into()),
        patient_choices: Vec::new(),
        encounter: None,
        context: Default::default(),
        options: Default::default(),
        standalone: false,
        trace_id: format!("trace-{id_hash}"),
        reuse: Default::default(),
        created_at: 0,
        expires_at,
    }
}

/// Checklist item 31, RFC 6749 §4.1.2: a code is redeemed once, even by racing requests; every
/// later use is a replay naming the grant to revoke; an expired or unknown code is unknown.
pub async fn codes_are_single_use<S: CodeStore + Clone + 'static>(store: S) -> StoreResult<()> {
    store.insert_code("hash", &code_grant("g1"), 1_000).await?;
    let outcomes = race(&store, 16, |s, _| async move { s.redeem_code("hash", 10).await }).await?;
    let mut redeemed = 0;
    for outcome in outcomes {
        match outcome {
            CodeRedemption::Redeemed(g) => {
                assert_eq!(g.grant_id, "g1");
                redeemed += 1;
            }
            CodeRedemption::Replayed { grant_id } => assert_eq!(grant_id, "g1"),
            CodeRedemption::Unknown => panic!("a used code must be reported as replayed"),
        }
    }
    assert_eq!(redeemed, 1, "of racing redemptions exactly one wins");
    assert_eq!(store.redeem_code("hash", 20).await?, CodeRedemption::Replayed { grant_id: "g1".into() });

    store.insert_code("short", &code_grant("g2"), 100).await?;
    assert_eq!(store.redeem_code("short", 100).await?, CodeRedemption::Unknown, "expired at its expiry");
    assert_eq!(store.redeem_code("other", 10).await?, CodeRedemption::Unknown);
    Ok(())
}

/// Checklist items 74, 76: a refresh token rotates once, even under racing requests; a losing
/// or replayed rotation stores nothing; revoking the grant ends the whole family.
pub async fn refresh_rotation_is_atomic<S: GrantStore + Clone + 'static>(store: S) -> StoreResult<()> {
    store.insert_grant(&grant("g", 1_000), &refresh("r0", "g", 1_000)).await?;
    let won = race(&store, 12, |s, i| async move {
        s.rotate_refresh("r0", &refresh(&format!("r{}", i + 1), "g", 1_000), 5).await
    })
    .await?;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "exactly one racing refresh wins");
    assert_eq!(store.refresh_token("r0").await?.map(|r| r.used_at), Some(Some(5)));
    for (i, w) in won.iter().enumerate() {
        let stored = store.refresh_token(&format!("r{}", i + 1)).await?;
        assert_eq!(stored.is_some(), *w, "a losing rotation stores nothing");
    }
    assert!(!store.rotate_refresh("r0", &refresh("late", "g", 1_000), 6).await?, "a used token never rotates again");
    assert!(store.refresh_token("late").await?.is_none());
    assert!(!store.rotate_refresh("unknown", &refresh("x", "g", 1_000), 6).await?);

    store.revoke_grant("g", 7).await?;
    assert_eq!(store.grant("g").await?.and_then(|g| g.revoked_at), Some(7));
    assert_eq!(store.revoked_grants(7).await?, vec![("g".to_string(), 7)]);
    let winner = won.iter().position(|w| *w).map(|i| format!("r{}", i + 1)).unwrap_or_default();
    assert!(store.refresh_token(&winner).await?.is_none(), "revoking a grant ends its refresh-token family");
    assert!(store.refresh_token("r0").await?.is_none());

    // A grant without refresh tokens lives only in its access tokens: its revocation is kept.
    store.revoke_grant("unstored", 50).await?;
    assert_eq!(store.revoked_grants(50).await?, vec![("unstored".to_string(), 50)]);
    Ok(())
}

/// Checklist item 49: a client assertion's `jti` is accepted once while it lives, even under
/// racing requests; another client's identical `jti` is its own; after expiry it is free.
pub async fn assertion_jti_is_used_once<S: ClientStore + Clone + 'static>(store: S) -> StoreResult<()> {
    let fresh = race(&store, 16, |s, _| async move { s.use_assertion_jti("c", "jti", 300, 10).await }).await?;
    assert_eq!(fresh.iter().filter(|f| **f).count(), 1, "of racing uses of one jti exactly one is fresh");
    assert!(!store.use_assertion_jti("c", "jti", 400, 299).await?, "a replay before expiry is refused");
    assert!(store.use_assertion_jti("other", "jti", 300, 10).await?, "jtis are per client");
    assert!(store.use_assertion_jti("c", "jti", 700, 300).await?, "an expired record no longer blocks");
    Ok(())
}

/// Checklist item 26: a single-use `launch` id is used once, even under racing requests, and
/// never after it expired; the use is recorded (to tell "used" from "unknown").
pub async fn launch_is_used_once<S: LaunchStore + LaunchRedemption + Clone + 'static>(store: S) -> StoreResult<()> {
    let l = launch("launch-hash", 300);
    store.insert_launch(&l).await?;
    let used = race(&store, 16, |s, _| async move { s.use_launch("launch-hash", 10).await }).await?;
    assert_eq!(used.iter().filter(|u| **u).count(), 1, "of racing uses exactly one wins");
    assert_eq!(store.launch("launch-hash").await?, Some((l, Some(10))));

    store.insert_launch(&launch("expired", 100)).await?;
    assert!(!store.use_launch("expired", 100).await?, "an expired launch is not used");
    assert!(!store.use_launch("unknown", 10).await?);
    Ok(())
}

/// RFC 7592: a client update with a registration token wins once among racing requests; a
/// spent or wrong token changes nothing.
pub async fn client_update_is_conditional<S: ClientStore + Clone + 'static>(store: S) -> StoreResult<()> {
    let client = Client {
        client_id: "c".into(),
        metadata: ClientMetadata {
            client_name: "old".into(),
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            grant_types: vec!["authorization_code".into()],
            token_endpoint_auth_method: TokenEndpointAuthMethod::None,
            scope: None,
            initiate_login_uri: None,
            logo_uri: None,
            jwks: None,
            jwks_uri: None,
        },
        secret_hash: None,
        registration_token_hash: Some("t0".into()),
        created_at: 0,
    };
    store.insert_client(&client).await?;
    let won = race(&store, 8, |s, i| {
        let mut next = client.clone();
        next.metadata.client_name = format!("new {i}");
        next.registration_token_hash = Some(format!("t{}", i + 1));
        async move { s.update_client(&next, Some("t0")).await }
    })
    .await?;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "of updates racing with one token exactly one wins");
    let stored = store.client("c").await?.ok_or_else(|| StoreError("client vanished".into()))?;
    let winner = won.iter().position(|w| *w).unwrap_or_default();
    assert_eq!(stored.registration_token_hash, Some(format!("t{}", winner + 1)));
    assert_eq!(stored.metadata.client_name, format!("new {winner}"));
    assert!(!store.update_client(&client, Some("t0")).await?, "a spent token is refused");
    assert!(!store.update_client(&Client { client_id: "none".into(), ..client }, None).await?);
    Ok(())
}

/// Housekeeping deletes what expired and keeps what lives: a used code stays until its expiry
/// (so a replay still revokes), an expired one goes.
pub async fn purge_keeps_what_lives<S>(store: S) -> StoreResult<()>
where
    S: CodeStore + GrantStore + LaunchStore + LaunchRedemption + ClientStore + Housekeeping,
{
    // Written in time order, as the server writes them (SQLite purges a time-ordered prefix).
    store.insert_code("gone", &code_grant("g2"), 50).await?;
    store.insert_code("used", &code_grant("g1"), 200).await?;
    assert!(matches!(store.redeem_code("used", 10).await?, CodeRedemption::Redeemed(_)));
    store.insert_grant(&grant("g", 1_000), &refresh("live", "g", 1_000)).await?;
    store.insert_grant(&grant("h", 90), &refresh("old", "h", 90)).await?;
    store.insert_launch(&launch("l", 100 + 3600)).await?;
    assert!(store.use_assertion_jti("c", "jti", 90, 10).await?);

    store.purge_expired(&Retention::default().purge(100)).await?;
    assert_eq!(store.redeem_code("used", 101).await?, CodeRedemption::Replayed { grant_id: "g1".into() });
    assert_eq!(store.redeem_code("gone", 10).await?, CodeRedemption::Unknown, "an expired code is purged");
    assert!(store.refresh_token("live").await?.is_some());
    assert!(store.refresh_token("old").await?.is_none(), "an expired refresh token is purged");
    assert!(store.launch("l").await?.is_some(), "a launch is kept past expiry to say why it fails");
    assert!(store.use_assertion_jti("c", "jti", 400, 100).await?, "an expired jti record is purged");

    // Past the launch's expiry plus the hour an expired launch is kept.
    store.purge_expired(&Retention::default().purge(100 + 3600 + 3600)).await?;
    assert!(store.launch("l").await?.is_none());
    assert_eq!(store.redeem_code("used", 10).await?, CodeRedemption::Unknown, "a used code goes at expiry");
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The rules against the double (`smartlaunch-store/tests/rules.rs` runs them on SQLite).
    use super::super::memory::MemoryStore;
    use super::super::rules;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn codes_are_single_use() {
        rules::codes_are_single_use(MemoryStore::default()).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn refresh_rotation_is_atomic() {
        rules::refresh_rotation_is_atomic(MemoryStore::default()).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn assertion_jti_is_used_once() {
        rules::assertion_jti_is_used_once(MemoryStore::default()).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn launch_is_used_once() {
        rules::launch_is_used_once(MemoryStore::default()).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn client_update_is_conditional() {
        rules::client_update_is_conditional(MemoryStore::default()).await.unwrap();
    }

    #[tokio::test]
    async fn purge_keeps_what_lives() {
        rules::purge_keeps_what_lives(MemoryStore::default()).await.unwrap();
    }
}
