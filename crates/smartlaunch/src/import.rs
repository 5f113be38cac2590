//! `smartlaunch import`: loads FHIR Bundles (e.g. Synthea R4 output: transaction Bundles with
//! `urn:uuid:` references) and NDJSON files.  Each Bundle is all or nothing; NDJSON files are
//! stored in chunks, each chunk all or nothing.
//!
//! Two stages run side by side: a reader thread parses files and prepares their rows (index
//! values, compartments, stored JSON), while the writer stores the previous batch — on two
//! cores, preparing and writing take about as long as each other.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use smartlaunch_auth::secrets::random_hex;
use smartlaunch_fhir::bundle::{prepare_transaction, EntryMethod};
use smartlaunch_fhir::store::{Expected, ResourceStore, WriteOp};
use smartlaunch_store::{BulkBatch, Db, DbBulkWriter as BulkWriter};
use tokio::sync::mpsc;

/// Resources stored per database transaction for NDJSON files.
const NDJSON_CHUNK: usize = 2_000;

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub resources_by_type: BTreeMap<String, usize>,
    /// (file, what went wrong)
    pub errors: Vec<(PathBuf, String)>,
    pub files: usize,
    pub elapsed: Duration,
}

impl ImportReport {
    pub fn total(&self) -> usize {
        self.resources_by_type.values().sum()
    }
}

/// The files to import: the given files, and every `.json` / `.ndjson` below given directories.
fn collect(paths: &[PathBuf], out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for path in paths {
        if path.is_dir() {
            let mut children: Vec<PathBuf> =
                std::fs::read_dir(path)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
            children.sort();
            let files: Vec<PathBuf> = children
                .into_iter()
                .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "json" || e == "ndjson"))
                .collect();
            collect(&files, out)?;
        } else {
            out.push(path.clone());
        }
    }
    Ok(())
}

/// What the reader hands to the writer for one file.
enum Step {
    /// Resources to store in one transaction: a Bundle of creates and updates, or an NDJSON chunk.
    Batch(BulkBatch),
    /// A Bundle that also deletes: the transactional path.
    Ops(Vec<WriteOp>),
    /// The file is read; with what was wrong with it, if anything.
    End(Option<String>),
}

impl Step {
    /// How many resources the step writes.
    fn len(&self) -> usize {
        match self {
            Step::Batch(batch) => batch.len(),
            Step::Ops(ops) => ops.len(),
            Step::End(_) => 0,
        }
    }
}

/// Steps waiting for the writer: enough to keep it busy and to group, few enough to bound memory.
const QUEUE: usize = 16;

/// Resources the writer commits together (at most; a group ends when the queue is empty).
const GROUP_RESOURCES: usize = 5_000;

fn ops_of_bundle(bundle: Value) -> Result<Vec<WriteOp>, String> {
    let entries = match bundle {
        Value::Object(mut fields) => match fields.remove("entry") {
            Some(Value::Array(entries)) => entries,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let prepared = prepare_transaction(entries, || random_hex(16)).map_err(|(n, m)| format!("entry {n}: {m}"))?;
    Ok(prepared
        .into_iter()
        .map(|e| match (e.method, e.resource) {
            (EntryMethod::Delete, _) | (_, None) => {
                WriteOp::Delete { resource_type: e.resource_type, id: e.id, expected: Expected::Any }
            }
            (EntryMethod::Create, Some(resource)) => WriteOp::Put { resource, expected: Expected::Absent },
            (EntryMethod::Update, Some(resource)) => WriteOp::Put { resource, expected: Expected::Any },
        })
        .collect())
}

/// One resource of an NDJSON line (or a lone resource file), with an id assigned if it had none.
fn resource_of_line(line: &str) -> Result<Value, String> {
    let mut resource: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let ty = resource["resourceType"].as_str().unwrap_or_default().to_owned();
    if resource.get("id").is_none() {
        resource["id"] = Value::String(random_hex(16));
    }
    smartlaunch_fhir::validate::check_resource(&resource, &ty).map_err(|e| e.to_string())?;
    Ok(resource)
}

/// Puts go through the bulk writer; a Bundle that deletes takes the transactional path.
fn step_of_ops(ops: Vec<WriteOp>, now: &str) -> Result<Step, String> {
    if !ops.iter().all(|op| matches!(op, WriteOp::Put { .. })) {
        return Ok(Step::Ops(ops));
    }
    let resources = ops
        .into_iter()
        .filter_map(|op| match op {
            WriteOp::Put { resource, .. } => Some(resource),
            WriteOp::Delete { .. } => None,
        })
        .collect();
    BulkBatch::prepare(resources, now).map(Step::Batch).map_err(|e| e.to_string())
}

/// Reads one file and hands its steps to `send` (which says whether the writer still listens).
fn read_file(path: &Path, now: &str, send: &mut impl FnMut(Step) -> bool) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    if path.extension().is_some_and(|e| e == "ndjson") {
        let mut chunk = Vec::with_capacity(NDJSON_CHUNK);
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            chunk.push(resource_of_line(line).map_err(|e| format!("line {}: {e}", n + 1))?);
            if chunk.len() == NDJSON_CHUNK {
                let batch = BulkBatch::prepare(std::mem::take(&mut chunk), now).map_err(|e| e.to_string())?;
                if !send(Step::Batch(batch)) {
                    return Ok(());
                }
            }
        }
        if !chunk.is_empty() {
            send(Step::Batch(BulkBatch::prepare(chunk, now).map_err(|e| e.to_string())?));
        }
        return Ok(());
    }
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    let ops = if value["resourceType"] == "Bundle" && value["type"] != "searchset" && value["type"] != "history" {
        ops_of_bundle(value)?
    } else {
        vec![WriteOp::Put { resource: resource_of_line(&text)?, expected: Expected::Any }]
    };
    send(step_of_ops(ops, now)?);
    Ok(())
}

/// The reader stage: every file in order, then the channel closes.
fn read_files(files: &[PathBuf], now: &str, to_writer: &mpsc::Sender<(usize, Step)>) {
    for (n, file) in files.iter().enumerate() {
        let mut send = |step| to_writer.blocking_send((n, step)).is_ok();
        let outcome = read_file(file, now, &mut send).err();
        if !send(Step::End(outcome)) {
            return;
        }
    }
}

/// Batches written in one open transaction, with what each file's batch stored (counted once
/// the transaction commits).
struct Group {
    writer: BulkWriter,
    pending: Vec<(usize, BTreeMap<String, usize>)>,
}

/// The writer stage's bookkeeping: what is stored, what failed.
struct Writer<'a> {
    db: &'a Db,
    now: &'a str,
    files: &'a [PathBuf],
    report: ImportReport,
    /// Files with an error: their remaining steps are skipped.
    failed: HashSet<usize>,
}

impl Writer<'_> {
    fn fail(&mut self, file: usize, error: String) {
        if self.failed.insert(file) {
            self.report.errors.push((self.files[file].clone(), error));
        }
    }

    fn count(&mut self, stored: BTreeMap<String, usize>) {
        for (ty, n) in stored {
            *self.report.resources_by_type.entry(ty).or_default() += n;
        }
    }

    /// Writes a group of steps: consecutive batches share one transaction (a savepoint each).
    async fn write_group(&mut self, group: Vec<(usize, Step)>) {
        let mut open: Option<Group> = None;
        for (file, step) in group {
            if self.failed.contains(&file) {
                if matches!(step, Step::End(_)) {
                    self.report.files += 1;
                }
                continue;
            }
            match step {
                Step::Batch(batch) => {
                    if open.is_none() {
                        match self.db.bulk_writer().await {
                            Ok(writer) => open = Some(Group { writer, pending: Vec::new() }),
                            Err(e) => {
                                self.fail(file, e.to_string());
                                continue;
                            }
                        }
                    }
                    let group = open.as_mut().expect("opened above");
                    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
                    for ty in batch.resource_types() {
                        *stored.entry(ty.to_owned()).or_default() += 1;
                    }
                    match group.writer.put(batch).await {
                        Ok(_) => group.pending.push((file, stored)),
                        Err(e) => self.fail(file, e.to_string()),
                    }
                }
                Step::Ops(ops) => {
                    self.commit(open.take()).await;
                    match self.db.transaction(&ops, self.now).await {
                        Ok(written) => {
                            let mut stored = BTreeMap::new();
                            for w in written.into_iter().filter(|w| !w.deleted) {
                                *stored.entry(w.resource_type).or_default() += 1;
                            }
                            self.count(stored);
                        }
                        Err((n, e)) => self.fail(file, format!("write {n}: {e}")),
                    }
                }
                Step::End(outcome) => {
                    self.report.files += 1;
                    if let Some(e) = outcome {
                        self.fail(file, e);
                    }
                }
            }
        }
        self.commit(open.take()).await;
    }

    /// Commits an open group; if that fails, every file in it failed.
    async fn commit(&mut self, open: Option<Group>) {
        let Some(Group { writer, pending }) = open else { return };
        match writer.commit().await {
            Ok(()) => pending.into_iter().for_each(|(_, stored)| self.count(stored)),
            Err(e) => pending.into_iter().for_each(|(file, _)| self.fail(file, format!("commit: {e}"))),
        }
    }
}

/// Imports files and directories; `progress` is called after each group of writes.
pub async fn import_paths(
    db: &Db,
    paths: &[PathBuf],
    now: &str,
    mut progress: impl FnMut(&ImportReport),
) -> ImportReport {
    let started = Instant::now();
    let mut report = ImportReport::default();
    let mut files = Vec::new();
    if let Err(e) = collect(paths, &mut files) {
        report.errors.push((PathBuf::new(), e.to_string()));
    }
    let files = std::sync::Arc::new(files);
    let (to_writer, mut from_reader) = mpsc::channel(QUEUE);
    let reader = {
        let (files, now) = (files.clone(), now.to_owned());
        tokio::task::spawn_blocking(move || read_files(&files, &now, &to_writer))
    };
    let mut writer = Writer { db, now, files: &files, report, failed: HashSet::new() };
    while let Some(first) = from_reader.recv().await {
        let mut size = first.1.len();
        let mut group = vec![first];
        while size < GROUP_RESOURCES {
            match from_reader.try_recv() {
                Ok(next) => {
                    size += next.1.len();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        writer.write_group(group).await;
        writer.report.elapsed = started.elapsed();
        progress(&writer.report);
    }
    let mut report = writer.report;
    if let Err(e) = reader.await {
        report.errors.push((PathBuf::new(), format!("the reader stopped: {e}")));
    }
    report.elapsed = started.elapsed();
    report
}
