//! `smartlaunch import`: loads FHIR Bundles (e.g. Synthea R4 output: transaction Bundles with
//! `urn:uuid:` references) and NDJSON files.  Each Bundle is all or nothing; NDJSON files are
//! stored in chunks, each chunk all or nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use smartlaunch_auth::secrets::random_hex;
use smartlaunch_fhir::bundle::{prepare_transaction, EntryMethod};
use smartlaunch_fhir::store::{Expected, ResourceStore, WriteOp};
use smartlaunch_store::Db;

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

/// Writes ops in one transaction and counts them by type.  Puts only (the usual case) go
/// through the bulk writer.
async fn store(db: &Db, ops: Vec<WriteOp>, now: &str, report: &mut ImportReport) -> Result<(), String> {
    if ops.iter().all(|op| matches!(op, WriteOp::Put { .. })) {
        let resources: Vec<Value> = ops
            .into_iter()
            .filter_map(|op| match op {
                WriteOp::Put { resource, .. } => Some(resource),
                WriteOp::Delete { .. } => None,
            })
            .collect();
        db.put_all(&resources, now).await.map_err(|e| e.to_string())?;
        for r in &resources {
            *report.resources_by_type.entry(r["resourceType"].as_str().unwrap_or_default().to_owned()).or_default() +=
                1;
        }
        return Ok(());
    }
    let written = db.transaction(&ops, now).await.map_err(|(n, e)| format!("write {n}: {e}"))?;
    for w in written {
        *report.resources_by_type.entry(w.resource_type).or_default() += 1;
    }
    Ok(())
}

fn ops_of_bundle(bundle: Value) -> Result<Vec<WriteOp>, String> {
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
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

fn op_of_line(line: &str) -> Result<WriteOp, String> {
    let mut resource: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let ty = resource["resourceType"].as_str().unwrap_or_default().to_owned();
    if resource.get("id").is_none() {
        resource["id"] = Value::String(random_hex(16));
    }
    smartlaunch_fhir::validate::check_resource(&resource, &ty).map_err(|e| e.to_string())?;
    Ok(WriteOp::Put { resource, expected: Expected::Any })
}

async fn import_file(
    db: &Db,
    path: &Path,
    now: &str,
    report: &mut ImportReport,
    progress: &mut impl FnMut(&ImportReport),
) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    if path.extension().is_some_and(|e| e == "ndjson") {
        let mut chunk = Vec::with_capacity(NDJSON_CHUNK);
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            chunk.push(op_of_line(line).map_err(|e| format!("line {}: {e}", n + 1))?);
            if chunk.len() == NDJSON_CHUNK {
                store(db, std::mem::take(&mut chunk), now, report).await?;
                progress(report);
            }
        }
        return store(db, chunk, now, report).await;
    }
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    let ops = if value["resourceType"] == "Bundle" && value["type"] != "searchset" && value["type"] != "history" {
        ops_of_bundle(value)?
    } else {
        vec![op_of_line(&text)?]
    };
    store(db, ops, now, report).await
}

/// Imports files and directories; `progress` is called after each file or chunk.
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
    for file in files {
        report.files += 1;
        if let Err(e) = import_file(db, &file, now, &mut report, &mut progress).await {
            report.errors.push((file, e));
        }
        report.elapsed = started.elapsed();
        progress(&report);
    }
    report.elapsed = started.elapsed();
    report
}
