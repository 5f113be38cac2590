//! Bulk Data export jobs and reads (issue 8, item 4), as the same test functions on SQLite and
//! on PostgreSQL, and the claim that lets exactly one of several PostgreSQL nodes run a job
//! (issue 10, item 5).

#[path = "support/postgres.rs"]
mod postgres_support;
#[path = "support/sqlite.rs"]
mod sqlite_support;

use postgres_support::{on_postgres, on_postgres_nodes};
use serde_json::{json, Value};
use smartlaunch_fhir::export::{
    Compartment, ExportJob, ExportLevel, ExportParams, ExportQuery, ExportSnapshot, ExportSpec, ExportStore,
    JobOutcome, JobStatus, COMPLETED_JOB_LIFETIME,
};
use smartlaunch_fhir::search::query::parse_filter;
use smartlaunch_fhir::search::Constraint;
use smartlaunch_fhir::store::{Expected, ResourceStore};
use sqlite_support::on_sqlite;

/// What the rules need of a backend.
trait Store: ExportStore + ResourceStore + Clone {}
impl<S: ExportStore + ResourceStore + Clone> Store for S {}

/// Each rule as a test on SQLite and one on PostgreSQL: `sqlite::rule` and `postgres::rule`.
macro_rules! on_both {
    ($($rule:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $rule() {
                    super::on_sqlite(super::$rule::<smartlaunch_store::SqliteDb>).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $rule() {
                    super::on_postgres(20, super::$rule::<smartlaunch_store::PgDb>).await
                }
            )*
        }
    };
}

on_both!(
    active_export_jobs_are_limited_per_client_even_when_kicked_off_concurrently,
    export_jobs_expire_an_hour_after_they_finish_or_a_day_after_they_start,
    export_pages_follow_ids_filters_compartments_and_one_snapshot,
);

fn job(n: u32, client: &str, now: i64) -> ExportJob {
    let spec = ExportSpec {
        level: ExportLevel::Group("g".into()),
        params: ExportParams {
            types: Some(vec!["Patient".into()]),
            since: None,
            type_filters: vec!["Patient?gender=female".into()],
        },
        scope: "system/*.rs".into(),
        members: vec!["p1".into()],
    };
    ExportJob::new(format!("{n:032x}"), client.into(), "http://x/fhir/Group/g/$export".into(), spec, now)
}

async fn active_export_jobs_are_limited_per_client_even_when_kicked_off_concurrently<S: Store>(db: S) {
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let db = db.clone();
            tokio::spawn(async move { db.insert_export_job(&job(n, "a", 100), 5, 8).await.unwrap() })
        })
        .collect();
    let mut stored = 0;
    for t in tasks {
        stored += usize::from(t.await.unwrap());
    }
    assert_eq!(stored, 5, "exactly the limit");
    assert!(db.insert_export_job(&job(100, "b", 100), 5, 8).await.unwrap(), "another client has its own");
    for n in 101..103 {
        assert!(db.insert_export_job(&job(n, "c", 100), 5, 8).await.unwrap());
    }
    assert!(!db.insert_export_job(&job(103, "d", 100), 5, 8).await.unwrap(), "8 active in all");
    // A finished job frees its slot; the record round-trips.
    let first = db.active_export_jobs().await.unwrap().into_iter().find(|j| j.client_id == "a").unwrap();
    assert_eq!(first, job(u32::from_str_radix(&first.id, 16).unwrap(), "a", 100));
    assert!(db.finish_export_job(&first.id, JobStatus::Failed, None, Some("x"), 200).await.unwrap());
    assert!(db.insert_export_job(&job(104, "a", 100), 5, 8).await.unwrap());
    assert!(!db.finish_export_job(&first.id, JobStatus::Completed, None, None, 200).await.unwrap(), "finished once");
}

async fn export_jobs_expire_an_hour_after_they_finish_or_a_day_after_they_start<S: Store>(db: S) {
    let (done, stuck) = (job(1, "a", 1_000), job(2, "a", 1_000));
    for j in [&done, &stuck] {
        assert!(db.insert_export_job(j, 5, 50).await.unwrap());
    }
    let outcome = JobOutcome::default();
    let finished = ExportJob::finished_expiry(2_000);
    assert!(db.set_export_progress(&done.id, "half way").await.unwrap());
    assert!(db.finish_export_job(&done.id, JobStatus::Completed, Some(&outcome), None, finished).await.unwrap());
    let stored = db.export_job(&done.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.outcome, stored.expires_at),
        (JobStatus::Completed, Some(outcome), 2_000 + COMPLETED_JOB_LIFETIME)
    );
    assert!(!db.set_export_progress(&done.id, "again").await.unwrap(), "a finished job makes no progress");
    assert_eq!(db.purge_export_jobs(finished - 1).await.unwrap(), Vec::<String>::new());
    assert_eq!(db.purge_export_jobs(finished).await.unwrap(), std::slice::from_ref(&done.id));
    assert!(db.export_job(&done.id).await.unwrap().is_none());
    assert_eq!(db.purge_export_jobs(stuck.expires_at).await.unwrap(), std::slice::from_ref(&stuck.id), "stuck a day");
    assert!(!db.set_export_progress(&stuck.id, "x").await.unwrap(), "a purged job stops at its next page");
    assert!(db.export_job_ids().await.unwrap().is_empty());
}

fn obs(id: &str, patient: &str, category: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final", "subject": {"reference": format!("Patient/{patient}")},
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}]})
}

async fn all_pages(snapshot: &mut impl ExportSnapshot, q: &ExportQuery<'_>, limit: i64) -> Vec<String> {
    let (mut ids, mut after) = (Vec::new(), String::new());
    loop {
        let page = snapshot.page(q, &after, limit).await.unwrap();
        ids.extend(page.iter().map(|(id, _)| id.clone()));
        match page.last() {
            Some((id, _)) if page.len() as i64 == limit => after = id.clone(),
            _ => return ids,
        }
    }
}

async fn export_pages_follow_ids_filters_compartments_and_one_snapshot<S: Store>(db: S) {
    let (t1, t2, t3) = ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z");
    for (n, p) in [(1, "p1"), (2, "p2"), (3, "p1"), (4, "p3"), (5, "p1")] {
        let category = if n % 2 == 1 { "laboratory" } else { "vital-signs" };
        db.put(&obs(&format!("o{n}"), p, category), Expected::Absent, t1).await.unwrap();
    }
    db.put(&obs("o6", "p2", "laboratory"), Expected::Absent, t2).await.unwrap();
    let everything = [Constraint::everything()];
    let labs = [Constraint {
        compartment: None,
        filter: parse_filter("Observation", &[("category".into(), "laboratory".into())]).unwrap(),
    }];
    let mut s = db.export_snapshot().await.unwrap();
    assert_eq!(s.resource_types().await.unwrap(), ["Observation"]);
    let q = |access, compartment, since, until| ExportQuery {
        resource_type: "Observation",
        access,
        compartment,
        since,
        until,
    };
    let all = Compartment::All;
    assert_eq!(all_pages(&mut s, &q(&everything, &all, None, t3), 2).await, ["o1", "o2", "o3", "o4", "o5", "o6"]);
    assert_eq!(all_pages(&mut s, &q(&everything, &all, None, t1), 4).await, ["o1", "o2", "o3", "o4", "o5"], "until");
    assert_eq!(all_pages(&mut s, &q(&everything, &all, Some(t2), t3), 2).await, ["o6"], "since, inclusive");
    assert_eq!(all_pages(&mut s, &q(&labs, &all, None, t3), 2).await, ["o1", "o3", "o5", "o6"]);
    let members = Compartment::Patients(vec!["p1".into(), "p3".into()]);
    assert_eq!(all_pages(&mut s, &q(&labs, &members, None, t3), 10).await, ["o1", "o3", "o5"]);
    let nobody = Compartment::Patients(vec![]);
    assert_eq!(all_pages(&mut s, &q(&everything, &nobody, None, t3), 10).await, Vec::<String>::new());
    assert_eq!(all_pages(&mut s, &q(&everything, &Compartment::AnyPatient, None, t3), 10).await.len(), 6);
    assert_eq!(s.changed_after("Observation", t1, "", 10).await.unwrap(), ["o6"]);

    // Written after the snapshot's first read: the snapshot does not see it, a new one does.
    let mut o1 = obs("o1", "p1", "vital-signs");
    o1["status"] = json!("amended");
    db.put(&o1, Expected::Version(1), t3).await.unwrap();
    db.delete("Observation", "o2", Expected::Version(1), t3).await.unwrap();
    assert_eq!(all_pages(&mut s, &q(&everything, &all, None, t2), 10).await, ["o1", "o2", "o3", "o4", "o5", "o6"]);
    drop(s);
    let mut s = db.export_snapshot().await.unwrap();
    assert_eq!(all_pages(&mut s, &q(&everything, &all, None, t2), 10).await, ["o3", "o4", "o5", "o6"]);
    assert_eq!(s.changed_after("Observation", t2, "", 10).await.unwrap(), ["o1", "o2"], "deleted ones too");
    let past = s.version_at("Observation", "o1", t2).await.unwrap().unwrap();
    assert_eq!((past.last_updated.as_str(), past.deleted), (t1, false));
    assert_eq!(serde_json::from_str::<Value>(&past.json).unwrap()["status"], "final", "as it was then");
    assert!(s.version_at("Observation", "o1", "2025-01-01T00:00:00Z").await.unwrap().is_none(), "not yet created");
    drop(s);
}

/// Racing claims of one job from two nodes (many tasks each): exactly one wins, the job stays
/// claimed while its node holds it, and once released another node may claim it — unless it
/// was finished meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_one_node_claims_an_export_job() {
    const RACERS: usize = 16;
    on_postgres_nodes(2, RACERS as u32, |nodes, _| async move {
        let j = job(1, "a", 100);
        assert!(nodes[0].insert_export_job(&j, 5, 50).await.unwrap());
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(RACERS));
        let tasks: Vec<_> = (0..RACERS)
            .map(|n| {
                let (node, start, id) = (nodes[n % 2].clone(), start.clone(), j.id.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    node.claim_export_job(&id).await.unwrap()
                })
            })
            .collect();
        let mut claims = Vec::new();
        for t in tasks {
            claims.extend(t.await.unwrap());
        }
        assert_eq!(claims.len(), 1, "exactly one node runs the job");
        for node in &nodes {
            assert!(node.claim_export_job(&j.id).await.unwrap().is_none(), "held");
        }
        claims.pop().unwrap().release().await.unwrap();
        let again = nodes[1].claim_export_job(&j.id).await.unwrap().expect("released: another node may run it");
        // A claim dropped without release (a node gone) ends with its connection.
        drop(again);
        let mut claimed = None;
        for _ in 0..100 {
            claimed = nodes[0].claim_export_job(&j.id).await.unwrap();
            if claimed.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let claim = claimed.expect("the dropped claim ended");
        assert!(nodes[0].finish_export_job(&j.id, JobStatus::Completed, None, None, 200).await.unwrap());
        claim.release().await.unwrap();
        assert!(nodes[1].claim_export_job(&j.id).await.unwrap().is_none(), "a finished job is not run again");
        assert!(nodes[1].claim_export_job("no-such-job").await.unwrap().is_none());
    })
    .await;
}
