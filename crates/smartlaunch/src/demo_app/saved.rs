//! What the Vitals demo app keeps across its restarts, in one file of its data directory
//! (mode 0600: it holds refresh tokens): each browser session's SMART session and the data it
//! last showed.  With `offline_access` the refresh token outlives the app's process, so a
//! browser that comes back after a restart sees its patient again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use smartlaunch_client::SavedSession;
use tokio::sync::Mutex;

use super::chart::Chart;

/// At most this many sessions are kept (the oldest go first).
const MAX_SESSIONS: usize = 200;
/// A saved session not used for this long is not resumed (seconds: 30 days).
const MAX_AGE: u64 = 30 * 24 * 3600;

/// The patient, as the banner shows them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PatientSummary {
    pub id: String,
    pub name: String,
    pub gender: Option<String>,
    pub birth_date: Option<String>,
}

/// What a page showed: enough to show it again without the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub patient: PatientSummary,
    pub charts: Vec<Chart>,
    /// When it was read from the server (`YYYY-MM-DD hh:mm UTC`).
    pub seen_at: String,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    session: SavedSession,
    snapshot: Option<Snapshot>,
    /// Unix seconds of the last save: the oldest entries go first.
    saved_at: u64,
}

/// The saved sessions, by browser session id.
pub struct Saved {
    path: PathBuf,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Saved {
    /// Reads `dir/sessions.json` (a missing or unreadable file is an empty start).
    pub fn open(dir: &Path) -> Saved {
        let path = dir.join("sessions.json");
        let entries = std::fs::read(&path)
            .ok()
            .and_then(|bytes| match serde_json::from_slice(&bytes) {
                Ok(entries) => Some(entries),
                Err(e) => {
                    tracing::warn!("{}: not readable ({e}); starting without saved sessions", path.display());
                    None
                }
            })
            .unwrap_or_default();
        Saved { path, entries: Mutex::new(entries) }
    }

    pub async fn session(&self, id: &str) -> Option<SavedSession> {
        let now = smartlaunch_client::unix_now();
        self.entries
            .lock()
            .await
            .get(id)
            .filter(|e| now.saturating_sub(e.saved_at) <= MAX_AGE)
            .map(|e| e.session.clone())
    }

    pub async fn snapshot(&self, id: &str) -> Option<Snapshot> {
        self.entries.lock().await.get(id).and_then(|e| e.snapshot.clone())
    }

    /// Saves a session and what it showed, and writes the file.
    pub async fn put(&self, id: &str, session: SavedSession, snapshot: Option<Snapshot>) {
        let mut entries = self.entries.lock().await;
        let snapshot = snapshot.or_else(|| entries.get(id).and_then(|e| e.snapshot.clone()));
        entries.insert(id.to_owned(), Entry { session, snapshot, saved_at: smartlaunch_client::unix_now() });
        while entries.len() > MAX_SESSIONS {
            let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.saved_at).map(|(k, _)| k.clone()) else { break };
            entries.remove(&oldest);
        }
        self.write(&entries);
    }

    pub async fn remove(&self, id: &str) {
        let mut entries = self.entries.lock().await;
        if entries.remove(id).is_some() {
            self.write(&entries);
        }
    }

    /// Writes the file whole: a temporary file of mode 0600, then renamed over the old one.
    fn write(&self, entries: &HashMap<String, Entry>) {
        let result = (|| -> std::io::Result<()> {
            let json = serde_json::to_vec(entries).map_err(std::io::Error::other)?;
            let tmp = self.path.with_extension("json.tmp");
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            // A file left by an earlier run keeps its mode on open: set it.
            #[cfg(unix)]
            file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            std::io::Write::write_all(&mut file, &json)?;
            std::fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = result {
            tracing::warn!("{}: could not save the sessions: {e}", self.path.display());
        }
    }
}
