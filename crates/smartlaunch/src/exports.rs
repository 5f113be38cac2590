//! Runs Bulk Data export jobs off the request path (`smartlaunch_fhir::export` plans them):
//! at most [`MAX_CONCURRENT_JOBS`] at once, each reading one database snapshot page by page and
//! writing `{data_dir}/exports/{job}/{Type}.ndjson`.  Jobs live in the database: a job a stopped
//! server left queued or running is started again from the beginning at the next start (same
//! `transactionTime`, so the same data), and housekeeping deletes expired jobs with their files.
//!
//! On PostgreSQL several nodes share the jobs: a node runs a job only under its claim
//! ([`Db::claim_export_job`]), so a job runs on one node at a time, and a job whose node
//! died (its claim ended with its connection) is taken up by a running node at its next
//! housekeeping tick ([`Exports::take_up_orphans`]), or by the next node that starts.  The
//! files stay in the node's `--data` directory: nodes behind one load balancer need that
//! directory shared (one network volume mounted by all) for a download to work from any node
//! (docs/DESIGN.md "PostgreSQL").

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use smartlaunch_fhir::export::{
    error_file, excluded_outcome, is_file_name, is_job_id, plan, ExportJob, ExportQuery, ExportSnapshot, ExportStore,
    FileEntry, JobOutcome, JobStatus, Plan, TypePlan, ERROR_FILE, MAX_CONCURRENT_JOBS,
};
use smartlaunch_fhir::store::StoreError;
use smartlaunch_store::Db;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;

/// Resources read per query (one page of the snapshot).
const PAGE: i64 = 1_000;

/// Why a job stopped before its end.
enum Stop {
    /// Cancelled (DELETE) or purged: its files go.
    Cancelled,
    /// The server is stopping: the job stays active, to run again at the next start.
    ShuttingDown,
    /// A failure: the job is marked failed with this reason.
    Failed(String),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Stop {
        Stop::Failed(e.to_string())
    }
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Stop {
        Stop::Failed(format!("writing the files: {e}"))
    }
}

/// The export jobs of this server.
pub(crate) struct Exports {
    db: Db,
    clock: Arc<dyn Clock>,
    /// `{data_dir}/exports`.
    root: PathBuf,
    permits: Arc<Semaphore>,
    /// The jobs running now, each with whether it was cancelled.
    running: Mutex<HashMap<String, bool>>,
    /// The jobs this node queued or runs (from [`Exports::spawn`] to the end of the run): a
    /// job is never queued twice on one node.
    pending: Mutex<HashSet<String>>,
    shutting_down: AtomicBool,
    /// Every job task this node spawned, so that [`Exports::shut_down`] can wait for them: a
    /// job still writing after its server stopped would write into the files of the job's
    /// next run.
    tasks: TaskTracker,
}

impl Exports {
    /// Opens the exports directory, removes what no job owns, and starts again every job left
    /// queued or running.
    pub(crate) async fn open(db: Db, data_dir: &Path, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<Exports>> {
        let root = data_dir.join("exports");
        tokio::fs::create_dir_all(&root).await?;
        let exports = Arc::new(Exports {
            db,
            clock,
            root,
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_JOBS)),
            running: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashSet::new()),
            shutting_down: AtomicBool::new(false),
            tasks: TaskTracker::new(),
        });
        let owned: HashSet<String> = exports.db.export_job_ids().await?.into_iter().collect();
        let mut entries = tokio::fs::read_dir(&exports.root).await?;
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !owned.contains(&name) {
                remove_dir(&entry.path()).await;
            }
        }
        for job in exports.db.active_export_jobs().await? {
            tracing::info!("export job {}: started again after a restart", job.id);
            exports.spawn(job.id);
        }
        Ok(exports)
    }

    /// The directory of a job (`id` is checked by [`is_job_id`] first).
    fn dir(&self, id: &str) -> Option<PathBuf> {
        is_job_id(id).then(|| self.root.join(id))
    }

    /// The path of one file of a job, if both names are well-formed.
    pub(crate) fn file(&self, id: &str, name: &str) -> Option<PathBuf> {
        self.dir(id).filter(|_| is_file_name(name)).map(|d| d.join(name))
    }

    /// Queues a stored job to run, unless this node has it queued or running already.
    pub(crate) fn spawn(self: &Arc<Self>, id: String) {
        if !self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone()) {
            return;
        }
        let this = self.clone();
        self.tasks.spawn(async move {
            if let Ok(_permit) = this.permits.clone().acquire_owned().await {
                this.run(&id).await;
            }
            this.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        });
    }

    /// Queues every active job this node does not run: on PostgreSQL, a job whose node died
    /// mid-run (its claim ended with its connection) would otherwise wait for a node to start;
    /// a job another node runs is skipped at once (its claim is held).  Housekeeping calls it.
    pub(crate) async fn take_up_orphans(self: &Arc<Self>) {
        if self.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        match self.db.active_export_jobs().await {
            Ok(jobs) => jobs.into_iter().for_each(|job| self.spawn(job.id)),
            Err(e) => tracing::warn!("housekeeping of export jobs: {e}"),
        }
    }

    /// Cancels a job (already deleted from the database): a running one stops at its next
    /// page, a queued one finds nothing to run; its files are deleted.
    pub(crate) async fn cancel(&self, id: &str) {
        if let Some(cancelled) = self.running.lock().unwrap_or_else(|p| p.into_inner()).get_mut(id) {
            *cancelled = true;
        }
        if let Some(dir) = self.dir(id) {
            remove_dir(&dir).await;
        }
    }

    /// Stops the running jobs at their next page, leaving them to run again at the next start,
    /// and waits until every job task has ended (none touches its files afterwards).
    pub(crate) async fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.permits.close();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Deletes the jobs that expired and their files.
    pub(crate) async fn purge_expired(&self, now: i64) {
        match self.db.purge_export_jobs(now).await {
            Ok(ids) => {
                for id in ids {
                    self.cancel(&id).await;
                }
            }
            Err(e) => tracing::warn!("housekeeping of export jobs: {e}"),
        }
    }

    fn check(&self, id: &str) -> Result<(), Stop> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(Stop::ShuttingDown);
        }
        if self.running.lock().unwrap_or_else(|p| p.into_inner()).get(id).copied().unwrap_or(true) {
            return Err(Stop::Cancelled);
        }
        Ok(())
    }

    async fn run(&self, id: &str) {
        let claim = match self.db.claim_export_job(id).await {
            Ok(Some(claim)) => claim,
            // Another node runs it (or it ended meanwhile).
            Ok(None) => return,
            Err(e) => return tracing::error!("export job {id}: claiming it: {e}"),
        };
        self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), false);
        self.run_job(id).await;
        self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        if let Err(e) = claim.release().await {
            tracing::warn!("export job {id}: releasing its claim: {e}");
        }
    }

    async fn run_job(&self, id: &str) {
        let Some(dir) = self.dir(id) else { return };
        let job = match self.db.export_job(id).await {
            Ok(Some(job)) if job.status == JobStatus::Active => job,
            Ok(_) => return,
            Err(e) => return tracing::error!("export job {id}: {e}"),
        };
        // A job that ran before a restart begins again: its partial files go first.
        remove_dir(&dir).await;
        let result = match tokio::fs::create_dir_all(&dir).await {
            Ok(()) => self.export(&job, &dir).await,
            Err(e) => Err(Stop::Failed(format!("creating the job's directory: {e}"))),
        };
        let now = self.clock.now();
        let finished = match result {
            Ok(outcome) => {
                self.db
                    .finish_export_job(id, JobStatus::Completed, Some(&outcome), None, ExportJob::finished_expiry(now))
                    .await
            }
            Err(Stop::ShuttingDown) => return,
            Err(Stop::Cancelled) => Ok(false),
            Err(Stop::Failed(why)) => {
                tracing::error!("export job {id} failed: {why}");
                remove_dir(&dir).await;
                let message = format!("the export failed: {why}");
                self.db
                    .finish_export_job(id, JobStatus::Failed, None, Some(&message), ExportJob::finished_expiry(now))
                    .await
            }
        };
        if !matches!(finished, Ok(true)) {
            // Cancelled or purged meanwhile (or the database failed): nothing may stay behind.
            remove_dir(&dir).await;
        }
    }

    async fn export(&self, job: &ExportJob, dir: &Path) -> Result<JobOutcome, Stop> {
        let mut snapshot = self.db.export_snapshot().await?;
        let present = snapshot.resource_types().await?;
        let plan = plan(&job.spec, &present).map_err(|e| Stop::Failed(e.to_string()))?;
        let mut outcome = JobOutcome::default();
        let mut written = 0u64;
        for (n, t) in plan.types.iter().enumerate() {
            self.check(&job.id)?;
            let progress = format!(
                "exporting {} (type {} of {}); {written} resources written",
                t.resource_type,
                n + 1,
                plan.types.len()
            );
            if !self.db.set_export_progress(&job.id, &progress).await? {
                return Err(Stop::Cancelled);
            }
            let count = self.export_type(&mut snapshot, job, &plan, t, dir).await?;
            written += count;
            if count > 0 {
                let file = format!("{}.ndjson", t.resource_type);
                outcome.output.push(FileEntry { resource_type: t.resource_type.clone(), file, count });
            }
        }
        if !plan.excluded.is_empty() {
            let mut out = create(&dir.join(ERROR_FILE)).await?;
            for e in &plan.excluded {
                out.write_all(excluded_outcome(e).as_bytes()).await?;
                out.write_all(b"\n").await?;
            }
            finish(out).await?;
            outcome.error.push(error_file(plan.excluded.len() as u64));
        }
        Ok(outcome)
    }

    /// Writes one type's file; returns how many resources it holds (none: no file).
    async fn export_type(
        &self,
        snapshot: &mut <Db as ExportStore>::Snapshot,
        job: &ExportJob,
        plan: &Plan,
        t: &TypePlan,
        dir: &Path,
    ) -> Result<u64, Stop> {
        let path = dir.join(format!("{}.ndjson", t.resource_type));
        let mut out = create(&path).await?;
        let (until, since) = (job.transaction_time.as_str(), job.spec.params.since.as_deref());
        let query = ExportQuery {
            resource_type: &t.resource_type,
            access: &t.access,
            compartment: &plan.compartment,
            since,
            until,
        };
        let mut count = 0u64;
        // Pass 1: the resources unchanged since transactionTime, filtered by the database.
        let mut after = String::new();
        loop {
            self.check(&job.id)?;
            let page = snapshot.page(&query, &after, PAGE).await?;
            for (id, json) in &page {
                out.write_all(json.as_bytes()).await?;
                out.write_all(b"\n").await?;
                after.clone_from(id);
            }
            count += page.len() as u64;
            if (page.len() as i64) < PAGE {
                break;
            }
        }
        // Pass 2: those changed after it, as they were then, judged on that version's JSON.
        let mut after = String::new();
        loop {
            self.check(&job.id)?;
            let ids = snapshot.changed_after(&t.resource_type, until, &after, PAGE).await?;
            for id in &ids {
                let Some(version) = snapshot.version_at(&t.resource_type, id, until).await? else { continue };
                if version.deleted {
                    continue;
                }
                let Ok(resource) = serde_json::from_str::<Value>(&version.json) else { continue };
                if t.admits(&plan.compartment, since, &resource, &version.last_updated) {
                    out.write_all(version.json.as_bytes()).await?;
                    out.write_all(b"\n").await?;
                    count += 1;
                }
            }
            if let Some(last) = ids.last() {
                after.clone_from(last);
            }
            if (ids.len() as i64) < PAGE {
                break;
            }
        }
        finish(out).await?;
        if count == 0 {
            tokio::fs::remove_file(&path).await?;
        }
        Ok(count)
    }
}

async fn create(path: &Path) -> std::io::Result<BufWriter<tokio::fs::File>> {
    Ok(BufWriter::with_capacity(256 * 1024, tokio::fs::File::create(path).await?))
}

/// Flushes a file and makes it durable before the job is reported complete.
async fn finish(mut out: BufWriter<tokio::fs::File>) -> std::io::Result<()> {
    out.flush().await?;
    out.get_ref().sync_all().await
}

async fn remove_dir(dir: &Path) {
    if let Err(e) = tokio::fs::remove_dir_all(dir).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("removing {}: {e}", dir.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use smartlaunch_fhir::export::{ExportLevel, ExportParams, ExportSpec};
    use smartlaunch_store::DatabaseConfig;

    use super::*;
    use crate::clock::SystemClock;

    /// A server's stop waits for its export tasks: a job task alive after the stop would go on
    /// writing into the job's directory while the next server on the same data runs the job
    /// again (a download then served a file with a half-written line).
    #[tokio::test]
    async fn shutting_down_waits_until_every_job_task_has_ended() {
        let dir = std::env::temp_dir().join(format!("smartlaunch-exports-{}", uuid::Uuid::new_v4().simple()));
        let db = Db::open(&DatabaseConfig::choose(None, &dir, 2).unwrap()).await.unwrap();
        let exports = Exports::open(db.clone(), &dir, Arc::new(SystemClock::default())).await.unwrap();
        let spec = ExportSpec {
            level: ExportLevel::System,
            params: ExportParams::default(),
            scope: "system/*.rs".into(),
            members: vec![],
        };
        for n in 0..3 {
            let job =
                ExportJob::new(format!("{n}").repeat(32), "c".into(), "http://x/fhir/$export".into(), spec.clone(), 1);
            assert!(db.insert_export_job(&job, 100, 100).await.unwrap());
            exports.spawn(job.id);
        }
        exports.shut_down().await;
        assert!(exports.pending.lock().unwrap().is_empty(), "a job task outlived the shut-down");
        exports.take_up_orphans().await;
        assert!(exports.pending.lock().unwrap().is_empty(), "a job was queued after the shut-down");
        db.close().await;
        std::fs::remove_dir_all(&dir).ok();
    }
}
