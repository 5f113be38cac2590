//! What PostgreSQL's `PgDb` offers beside the ports, with the SQLite store's rules (issue 10,
//! item 4): the bulk writer of seeding and import, the EHR's data browser, the launcher's
//! launch links and the sandbox reset, on a real PostgreSQL database per test.

#[path = "support/postgres.rs"]
mod support;

use serde_json::{json, Value};
use smartlaunch_auth::client::{Client, ClientMetadata, TokenEndpointAuthMethod};
use smartlaunch_auth::keys::KeyMaterial;
use smartlaunch_auth::revocation::ALL_USERS;
use smartlaunch_auth::store::rules::{grant, refresh};
use smartlaunch_auth::store::{ClientStore, GrantStore, KeyStore, UserStore};
use smartlaunch_auth::users::User;
use smartlaunch_fhir::export::{ExportJob, ExportLevel, ExportParams, ExportSpec, ExportStore};
use smartlaunch_fhir::store::{Expected, ResourceStore};
use smartlaunch_store::{BulkBatch, LaunchLink, PgDb, MAX_LAUNCH_LINKS, RESET_TABLES};
use sqlx::{Connection, PgConnection};
use support::{on_postgres, on_postgres_nodes};

const NOW: &str = "2026-01-02T03:04:05Z";

fn patient(id: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": "Shaw"}]})
}

fn observation(id: &str, patient: &str, date: Option<&str>) -> Value {
    let mut o = json!({"resourceType": "Observation", "id": id, "status": "final",
                       "subject": {"reference": format!("Patient/{patient}")}});
    if let Some(date) = date {
        o["effectiveDateTime"] = json!(date);
    }
    o
}

fn app(id: &str) -> Client {
    Client {
        client_id: id.into(),
        metadata: ClientMetadata {
            client_name: format!("App {id}"),
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
        registration_token_hash: None,
        created_at: 1,
    }
}

fn user(name: &str) -> User {
    User {
        id: format!("user-{name}"),
        username: name.into(),
        password_hash: "x".into(),
        fhir_user: format!("Patient/{name}"),
        display_name: name.into(),
    }
}

async fn rows(url: &str, table: &str) -> i64 {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&mut conn).await.unwrap();
    n
}

/// Batches share one transaction, each all or nothing: a failing batch leaves nothing of its
/// own and keeps the others; nothing is visible before the commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bulk_writer_batches_are_all_or_nothing_in_one_transaction() {
    on_postgres(4, |db| async move {
        let mut writer = db.bulk_writer().await.unwrap();
        let batch = |values: Vec<Value>| BulkBatch::prepare(values, NOW).unwrap();
        assert_eq!(writer.put(batch(vec![patient("p1"), observation("o1", "p1", None)])).await.unwrap(), 2);
        // PostgreSQL refuses a NUL in text: the second resource fails the whole batch.
        assert!(writer.put(batch(vec![patient("p2"), patient("bad\u{0}id")])).await.is_err());
        assert_eq!(writer.put(batch(vec![patient("p3"), patient("p1")])).await.unwrap(), 2);
        assert_eq!(db.count().await.unwrap(), 0, "nothing before the commit");
        writer.commit().await.unwrap();
        assert_eq!(db.count().await.unwrap(), 3);
        assert!(db.read("Patient", "p2").await.unwrap().is_none(), "the failed batch left nothing");
        assert_eq!(db.read("Patient", "p1").await.unwrap().unwrap().version_id, 2, "stored twice: two versions");
    })
    .await;
}

/// The data browser counts and lists a compartment's live resources, newest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compartment_browser_counts_and_lists_live_resources_newest_first() {
    on_postgres(4, |db| async move {
        let resources = vec![
            patient("p1"),
            observation("o1", "p1", Some("2025-01-01")),
            observation("o2", "p1", Some("2025-03-01")),
            observation("o3", "p1", None),
            observation("o4", "p1", Some("2025-02-01")),
            observation("o5", "p2", Some("2025-02-01")),
        ];
        db.put_all(resources, NOW).await.unwrap();
        db.delete("Observation", "o4", Expected::Any, NOW).await.unwrap();
        let counts = db.compartment_counts("p1").await.unwrap();
        assert_eq!(counts, [("Observation".to_owned(), 3), ("Patient".to_owned(), 1)], "o4 deleted, o5 elsewhere");
        let listed = db.compartment_resources("p1", "Observation", 10).await.unwrap();
        let ids: Vec<&str> = listed.iter().filter_map(|l| l.resource["id"].as_str()).collect();
        assert_eq!(ids, ["o2", "o1", "o3"], "newest first, undated last (as on SQLite)");
        assert_eq!(listed[0].last_updated, NOW);
        assert_eq!(db.compartment_resources("p1", "Observation", 1).await.unwrap().len(), 1, "limit");
        assert!(db.compartment_counts("nobody").await.unwrap().is_empty());
    })
    .await;
}

fn link(n: i64) -> LaunchLink {
    LaunchLink { id_hash: format!("h{n:04}"), name: format!("Link {n}"), form: format!("n={n}"), created_at: n }
}

/// Links round-trip, list newest first, delete once, and at most [`MAX_LAUNCH_LINKS`] stay —
/// also when two nodes save at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn launch_links_keep_the_newest_hundred_across_nodes() {
    on_postgres_nodes(2, 12, |nodes, url| async move {
        let db = &nodes[0];
        for n in 0..MAX_LAUNCH_LINKS - 5 {
            db.insert_launch_link(&link(n)).await.unwrap();
        }
        assert_eq!(db.launch_link("h0003").await.unwrap(), Some(link(3)));
        assert!(db.launch_link("nope").await.unwrap().is_none());
        let tasks: Vec<_> = (0..20)
            .map(|k| {
                let node = nodes[k % 2].clone();
                tokio::spawn(async move { node.insert_launch_link(&link(1_000 + k as i64)).await.unwrap() })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let all = nodes[1].launch_links().await.unwrap();
        assert_eq!(all.len() as i64, MAX_LAUNCH_LINKS);
        assert_eq!(rows(&url, "launch_links").await, MAX_LAUNCH_LINKS);
        assert_eq!(all[0], link(1_019), "newest first");
        assert!(db.launch_link("h0014").await.unwrap().is_none(), "the oldest went");
        assert!(db.launch_link("h0015").await.unwrap().is_some());
        assert!(db.delete_launch_link("h0015").await.unwrap());
        assert!(!db.delete_launch_link("h0015").await.unwrap(), "deleted once");
    })
    .await;
}

fn export_job(id: u32, client: &str) -> ExportJob {
    let spec = ExportSpec {
        level: ExportLevel::System,
        params: ExportParams { types: None, since: None, type_filters: Vec::new() },
        scope: "system/*.rs".into(),
        members: Vec::new(),
    };
    ExportJob::new(format!("{id:032x}"), client.into(), "http://x/fhir/$export".into(), spec, 100)
}

/// The reset empties every table of [`RESET_TABLES`], puts the demo data and users back,
/// reports the removed apps and jobs, records the apps' tokens as revoked, and keeps the keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_sandbox_empties_the_sandbox_and_restores_the_demo_in_one_transaction() {
    on_postgres_nodes(1, 4, |nodes, url| async move {
        let db: PgDb = nodes[0].clone();
        let keys = db.insert_keys_if_absent(&KeyMaterial::generate()).await.unwrap();
        db.put_all(vec![patient("added"), observation("o1", "added", None)], NOW).await.unwrap();
        db.insert_client(&app("c")).await.unwrap();
        db.insert_user(&user("someone")).await.unwrap();
        db.insert_grant(&grant("g1", 5_000), &refresh("r1", "g1", 5_000)).await.unwrap();
        db.insert_launch_link(&link(1)).await.unwrap();
        assert!(db.insert_export_job(&export_job(7, "c"), 5, 50).await.unwrap());

        let demo = vec![patient("demo")];
        let report = db.reset_sandbox(demo, &[user("clinician")], 1_234, NOW).await.unwrap();
        assert_eq!(report.clients, ["c"]);
        assert_eq!(report.export_jobs, [format!("{:032x}", 7)]);
        let refilled = ["users", "search_index", "resource_compartments", "resource_versions", "resources"];
        for table in RESET_TABLES.iter().filter(|t| !refilled.contains(t)) {
            assert_eq!(rows(&url, table).await, 0, "{table} emptied");
        }
        assert_eq!(db.count().await.unwrap(), 1);
        assert!(db.read("Patient", "added").await.unwrap().is_none());
        assert_eq!(db.read("Patient", "demo").await.unwrap().unwrap().version_id, 1, "a fresh history");
        assert!(db.user_by_username("someone").await.unwrap().is_none());
        assert!(db.user_by_username("clinician").await.unwrap().is_some());
        assert!(db.refresh_token("r1").await.unwrap().is_none());
        let revoked = db.access_revocations(0).await.unwrap();
        assert_eq!(revoked, [(ALL_USERS.to_owned(), "c".to_owned(), 1_234)], "the app's tokens stay dead");
        assert_eq!(db.keys().await.unwrap(), Some(keys), "the signing keys stay");
    })
    .await;
}
