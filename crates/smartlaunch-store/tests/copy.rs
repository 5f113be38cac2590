//! `smartlaunch migrate`'s copy of a SQLite sandbox into PostgreSQL (issue 10, item 4): a
//! seeded SQLite sandbox is copied into a PostgreSQL database created for the test, then read
//! back through the ports on PostgreSQL.

#[path = "support/postgres.rs"]
mod support;

use serde_json::json;
use smartlaunch_auth::client::{Client, ClientMetadata, TokenEndpointAuthMethod};
use smartlaunch_auth::inspect::{LaunchEvent, Step};
use smartlaunch_auth::key_encryption::{is_sealed_material, open_material, seal_material, KeyEncryptionKey};
use smartlaunch_auth::keys::KeyMaterial;
use smartlaunch_auth::secrets::random_token;
use smartlaunch_auth::store::rules::{grant, launch, refresh};
use smartlaunch_auth::store::{ClientStore, GrantStore, InspectorStore, KeyStore, LaunchStore, UserStore};
use smartlaunch_auth::users::User;
use smartlaunch_fhir::export::{ExportJob, ExportLevel, ExportParams, ExportSpec, ExportStore};
use smartlaunch_fhir::store::{Expected, ResourceStore};
use smartlaunch_store::{copy_sqlite_to_postgres, CopyError, LaunchLink, SqliteDb};
use sqlx::{Connection, PgConnection};
use support::{on_postgres, on_postgres_nodes};

const NOW: &str = "2026-01-02T03:04:05Z";

fn kek(byte: u8) -> KeyEncryptionKey {
    use base64::Engine;
    KeyEncryptionKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([byte; 32])).unwrap()
}
const LATER: &str = "2026-01-03T00:00:00Z";

fn app() -> Client {
    Client {
        client_id: "c".into(),
        metadata: ClientMetadata {
            client_name: "My app".into(),
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            token_endpoint_auth_method: TokenEndpointAuthMethod::None,
            scope: Some("launch openid offline_access patient/*.rs".into()),
            initiate_login_uri: None,
            logo_uri: None,
            jwks: None,
            jwks_uri: None,
        },
        secret_hash: Some("hash".into()),
        registration_token_hash: Some("reg".into()),
        created_at: 7,
    }
}

/// A sandbox as a server leaves it: the demo data (one resource with a second version and one
/// deleted), keys, an app, a user, a grant with its refresh token, a launch with inspector
/// events, a launch link and an export job.
async fn seeded_sqlite(dir: &std::path::Path) -> KeyMaterial {
    let db = SqliteDb::open_dir(dir).await.unwrap();
    let keys = db.insert_keys_if_absent(&KeyMaterial::generate()).await.unwrap();
    db.put_all(smartlaunch_fhir::demo::generate().resources, NOW).await.unwrap();
    let mut patient = db.read("Patient", "pat-001").await.unwrap().map(|r| r.json);
    let mut updated: serde_json::Value = serde_json::from_str(patient.get_or_insert_default()).unwrap();
    updated["gender"] = json!("other");
    db.put(&updated, Expected::Version(1), LATER).await.unwrap();
    db.put(&json!({"resourceType": "Basic", "id": "gone", "code": {"text": "x"}}), Expected::Absent, NOW)
        .await
        .unwrap();
    db.delete("Basic", "gone", Expected::Any, LATER).await.unwrap();
    db.insert_client(&app()).await.unwrap();
    let user = User {
        id: "u".into(),
        username: "someone".into(),
        password_hash: "h".into(),
        fhir_user: "Patient/pat-001".into(),
        display_name: "Some One".into(),
    };
    db.insert_user(&user).await.unwrap();
    db.insert_grant(&grant("g1", 9_000_000_000), &refresh("r1", "g1", 9_000_000_000)).await.unwrap();
    db.insert_launch(&launch("l1", 9_000_000_000)).await.unwrap();
    for n in 0..3 {
        db.record_event("trace-l1", &LaunchEvent::new(Step::Fhir, format!("GET /n={n}"), "200 OK", 10 + n))
            .await
            .unwrap();
    }
    let link = LaunchLink { id_hash: "lh".into(), name: "Mine".into(), form: "a=1".into(), created_at: 5 };
    db.insert_launch_link(&link).await.unwrap();
    let spec = ExportSpec {
        level: ExportLevel::System,
        params: ExportParams { types: None, since: None, type_filters: Vec::new() },
        scope: "system/*.rs".into(),
        members: Vec::new(),
    };
    let job = ExportJob::new("0".repeat(32), "c".into(), "http://x/fhir/$export".into(), spec, 100);
    assert!(db.insert_export_job(&job, 5, 50).await.unwrap());
    // Closing writes the inspector's queued events.
    db.close().await;
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sqlite_sandbox_copied_into_postgres_reads_the_same_through_the_ports() {
    let dir = std::env::temp_dir().join(format!("smartlaunch-copy-test-{}", random_token(8)));
    let keys = seeded_sqlite(&dir).await;
    let from = SqliteDb::open_dir(&dir).await.unwrap();
    let source = from.clone();
    on_postgres(4, |to| async move {
        let report = copy_sqlite_to_postgres(&source, &to, &kek(1)).await.unwrap();
        let resources = source.count().await.unwrap();
        assert_eq!(report.rows("resources") as i64, resources);
        assert_eq!(to.count().await.unwrap(), resources);
        assert!(report.rows("search_index") > report.rows("resources"), "the search index came along");
        assert_eq!(report.rows("launch_events"), 3);

        // A resource, its history, a deleted one, a search and a compartment.
        let patient = to.read("Patient", "pat-001").await.unwrap().unwrap();
        assert_eq!(patient, source.read("Patient", "pat-001").await.unwrap().unwrap());
        assert_eq!(patient.version_id, 2);
        assert_eq!(to.history("Patient", "pat-001", usize::MAX).await.unwrap().total, 2);
        assert!(to.read("Basic", "gone").await.unwrap().unwrap().deleted, "deleted stays deleted");
        assert_eq!(to.search_patients("", 0, 5).await.unwrap().1, source.search_patients("", 0, 5).await.unwrap().1);
        assert_eq!(
            to.compartment_counts("pat-001").await.unwrap(),
            source.compartment_counts("pat-001").await.unwrap()
        );

        // The auth state: keys, the app, the user, a redeemable refresh token, the launch.
        // Review (issue 10): plaintext on SQLite, sealed with the key encryption key on PostgreSQL.
        let copied = to.keys().await.unwrap().unwrap();
        assert!(is_sealed_material(&copied), "sealed at rest");
        assert_eq!(open_material(Some(&kek(1)), &copied).unwrap(), keys, "the same keys");
        assert_eq!(to.client("c").await.unwrap(), Some(app()));
        assert_eq!(to.user_by_username("someone").await.unwrap().map(|u| u.id).as_deref(), Some("u"));
        assert!(to.rotate_refresh("r1", &refresh("r2", "g1", 9_000_000_000), 100).await.unwrap(), "redeemable");
        assert!(!to.rotate_refresh("r1", &refresh("r3", "g1", 9_000_000_000), 100).await.unwrap(), "once");
        assert!(to.launch_by_trace("trace-l1").await.unwrap().is_some());
        assert_eq!(to.launch_link("lh").await.unwrap().map(|l| l.form).as_deref(), Some("a=1"));
        assert_eq!(to.export_job(&"0".repeat(32)).await.unwrap().map(|j| j.client_id).as_deref(), Some("c"));

        // The inspector's events, and the next one numbered after them.
        to.record_event("trace-l1", &LaunchEvent::new(Step::Fhir, "GET /next", "200 OK", 20)).await.unwrap();
        let record = to.launch_record("trace-l1").await.unwrap();
        let paths: Vec<&str> = record.events.iter().map(|e| e.request.as_str()).collect();
        assert_eq!(paths, ["GET /n=0", "GET /n=1", "GET /n=2", "GET /next"]);

        // A second copy finds the database in use and writes nothing.
        let again = copy_sqlite_to_postgres(&source, &to, &kek(1)).await;
        assert!(matches!(again, Err(CopyError::TargetNotEmpty { .. })), "{again:?}");
        assert_eq!(to.count().await.unwrap(), resources);
    })
    .await;
    from.close().await;
    std::fs::remove_dir_all(&dir).ok();
}

/// Review (issue 10): keys a SQLite server sealed with its key encryption key are copied as
/// they are with that key, and refused with another (nothing is written).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_sealed_on_sqlite_are_kept_with_their_key_and_refused_with_another() {
    let dir = std::env::temp_dir().join(format!("smartlaunch-copy-test-{}", random_token(8)));
    let from = SqliteDb::open_dir(&dir).await.unwrap();
    let plain = KeyMaterial::generate();
    let sealed = from.insert_keys_if_absent(&seal_material(Some(&kek(2)), &plain).unwrap()).await.unwrap();
    let source = from.clone();
    on_postgres(4, |to| async move {
        let refused = copy_sqlite_to_postgres(&source, &to, &kek(1)).await;
        assert!(
            matches!(&refused, Err(CopyError::KeySealedWithAnotherKey { kid }) if *kid == plain.kid),
            "{refused:?}"
        );
        assert!(refused.unwrap_err().to_string().contains("SMARTLAUNCH_KEY_ENCRYPTION_KEY"));
        assert_eq!(to.keys().await.unwrap(), None, "nothing written");
        copy_sqlite_to_postgres(&source, &to, &kek(2)).await.unwrap();
        assert_eq!(to.keys().await.unwrap(), Some(sealed), "kept as it was");
    })
    .await;
    from.close().await;
    std::fs::remove_dir_all(&dir).ok();
}

/// A PostgreSQL schema with a column the copy does not know is refused, not half copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_that_would_leave_a_column_behind_is_refused() {
    let dir = std::env::temp_dir().join(format!("smartlaunch-copy-test-{}", random_token(8)));
    let from = SqliteDb::open_dir(&dir).await.unwrap();
    let source = from.clone();
    on_postgres_nodes(1, 2, |nodes, url| async move {
        let mut conn = PgConnection::connect(&url).await.unwrap();
        sqlx::query("ALTER TABLE clients ADD COLUMN added_later TEXT").execute(&mut conn).await.unwrap();
        let refused = copy_sqlite_to_postgres(&source, &nodes[0], &kek(1)).await;
        assert!(
            matches!(&refused, Err(CopyError::SchemaMismatch { table, column }) if table == "clients" && column == "added_later"),
            "{refused:?}"
        );
    })
    .await;
    from.close().await;
    std::fs::remove_dir_all(&dir).ok();
}
