//! The storage ports of [`Db`], each method handed to the backend that is open: the auth
//! core's twelve ports, the FHIR [`ResourceStore`] and the Bulk Data [`ExportStore`].

use serde_json::Value;
use smartlaunch_auth::client::Client;
use smartlaunch_auth::inspect::{LaunchEvent, LaunchRecord};
use smartlaunch_auth::keys::KeyMaterial;
use smartlaunch_auth::launch::{BackendSession, Launch};
use smartlaunch_auth::retention::Purge;
use smartlaunch_auth::store::{
    ClientEntryRow, ClientStore, CodeGrant, CodeRedemption, CodeStore, FlowStore, Grant, GrantStore, HandTrace,
    Housekeeping, InspectorStore, KeyStore, LaunchRedemption, LaunchStore, PatientDirectory, PendingAuthorization,
    RefreshToken, Session, SessionStore, StoreResult, UserAuthorization, UserStore,
};
use smartlaunch_auth::users::User;
use smartlaunch_auth::UnixTime;
use smartlaunch_fhir::export::{
    ExportJob, ExportQuery, ExportSnapshot, ExportStore, JobOutcome, JobStatus, PastVersion,
};
use smartlaunch_fhir::search::query::SearchRequest;
use smartlaunch_fhir::search::Constraint;
use smartlaunch_fhir::store::{
    Expected, ResourceStore, SearchPage, StoreError, StoredResource, VersionPage, WriteError, WriteOp,
};

use super::Db;
use crate::{PgDb, SqliteDb};

/// Implements a port for [`Db`]: every method calls the same method of the open backend.
macro_rules! forward {
    (impl $port:ident { $(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)* }) => {
        impl $port for Db {
            $(async fn $name(&self $(, $arg: $ty)*) -> $ret {
                match self {
                    Db::Sqlite(db) => <SqliteDb as $port>::$name(db $(, $arg)*).await,
                    Db::Postgres(db) => <PgDb as $port>::$name(db $(, $arg)*).await,
                }
            })*
        }
    };
}

/// By hand: [`KeyStore::requires_sealed_keys`] is not async.
impl KeyStore for Db {
    async fn keys(&self) -> StoreResult<Option<KeyMaterial>> {
        match self {
            Db::Sqlite(db) => <SqliteDb as KeyStore>::keys(db).await,
            Db::Postgres(db) => <PgDb as KeyStore>::keys(db).await,
        }
    }

    async fn insert_keys_if_absent(&self, fresh: &KeyMaterial) -> StoreResult<KeyMaterial> {
        match self {
            Db::Sqlite(db) => <SqliteDb as KeyStore>::insert_keys_if_absent(db, fresh).await,
            Db::Postgres(db) => <PgDb as KeyStore>::insert_keys_if_absent(db, fresh).await,
        }
    }

    async fn all_keys(&self) -> StoreResult<Vec<(KeyMaterial, UnixTime)>> {
        match self {
            Db::Sqlite(db) => <SqliteDb as KeyStore>::all_keys(db).await,
            Db::Postgres(db) => <PgDb as KeyStore>::all_keys(db).await,
        }
    }

    async fn add_keys(&self, keys: &KeyMaterial, now: UnixTime) -> StoreResult<()> {
        match self {
            Db::Sqlite(db) => <SqliteDb as KeyStore>::add_keys(db, keys, now).await,
            Db::Postgres(db) => <PgDb as KeyStore>::add_keys(db, keys, now).await,
        }
    }

    async fn delete_key(&self, kid: &str) -> StoreResult<bool> {
        match self {
            Db::Sqlite(db) => <SqliteDb as KeyStore>::delete_key(db, kid).await,
            Db::Postgres(db) => <PgDb as KeyStore>::delete_key(db, kid).await,
        }
    }

    fn requires_sealed_keys(&self) -> bool {
        match self {
            Db::Sqlite(db) => <SqliteDb as KeyStore>::requires_sealed_keys(db),
            Db::Postgres(db) => <PgDb as KeyStore>::requires_sealed_keys(db),
        }
    }
}

forward!(impl ClientStore {
    fn insert_client(&self, client: &Client) -> StoreResult<()>;
    fn client(&self, client_id: &str) -> StoreResult<Option<Client>>;
    fn client_and_backend_session(&self, client_id: &str, now: UnixTime) -> StoreResult<Option<ClientEntryRow>>;
    fn clients(&self) -> StoreResult<Vec<Client>>;
    fn update_client(&self, client: &Client, spent_token_hash: Option<&str>) -> StoreResult<bool>;
    fn use_assertion_jti(&self, client_id: &str, jti: &str, expires_at: UnixTime, now: UnixTime) -> StoreResult<bool>;
    fn delete_client(&self, client_id: &str, now: UnixTime) -> StoreResult<bool>;
});

forward!(impl UserStore {
    fn insert_user(&self, user: &User) -> StoreResult<bool>;
    fn user_by_username(&self, username: &str) -> StoreResult<Option<User>>;
    fn user(&self, id: &str) -> StoreResult<Option<User>>;
    fn users(&self) -> StoreResult<Vec<User>>;
    fn user_by_fhir_user(&self, fhir_user: &str) -> StoreResult<Option<User>>;
});

forward!(impl SessionStore {
    fn insert_session(&self, session: &Session) -> StoreResult<()>;
    fn session(&self, id_hash: &str, now: UnixTime) -> StoreResult<Option<Session>>;
    fn session_user(&self, id_hash: &str, now: UnixTime) -> StoreResult<Option<(Session, User)>>;
    fn delete_session(&self, id_hash: &str) -> StoreResult<()>;
});

forward!(impl LaunchStore {
    fn insert_launch(&self, launch: &Launch) -> StoreResult<()>;
    fn put_backend_session(&self, session: &BackendSession) -> StoreResult<()>;
    fn recent_backend_sessions(&self, limit: i64) -> StoreResult<Vec<BackendSession>>;
    fn recent_launches(&self, limit: i64) -> StoreResult<Vec<Launch>>;
    fn launch(&self, id_hash: &str) -> StoreResult<Option<(Launch, Option<UnixTime>)>>;
});

forward!(impl LaunchRedemption {
    fn use_launch(&self, id_hash: &str, now: UnixTime) -> StoreResult<bool>;
});

forward!(impl InspectorStore {
    fn record_event(&self, trace: &str, event: &LaunchEvent) -> StoreResult<()>;
    fn launch_by_trace(&self, trace: &str) -> StoreResult<Option<Launch>>;
    fn user_launches(&self, user_id: &str, limit: i64) -> StoreResult<Vec<Launch>>;
    fn set_trace_switch(&self, client_id: &str, until: Option<UnixTime>) -> StoreResult<()>;
    fn trace_switches(&self, now: UnixTime) -> StoreResult<Vec<(String, UnixTime)>>;
    fn insert_hand_trace(&self, trace: &HandTrace) -> StoreResult<()>;
    fn hand_trace(&self, trace_id: &str) -> StoreResult<Option<HandTrace>>;
    fn recent_hand_traces(&self, limit: i64) -> StoreResult<Vec<HandTrace>>;
    fn launch_events(&self, trace: &str) -> StoreResult<Vec<LaunchEvent>>;
    fn launch_record(&self, trace: &str) -> StoreResult<LaunchRecord>;
});

forward!(impl FlowStore {
    fn insert_pending(&self, pending: &PendingAuthorization) -> StoreResult<()>;
    fn pending(&self, id: &str, now: UnixTime) -> StoreResult<Option<PendingAuthorization>>;
    fn update_pending(&self, pending: &PendingAuthorization) -> StoreResult<()>;
    fn delete_pending(&self, id: &str) -> StoreResult<bool>;
    fn consent(&self, user_id: &str, client_id: &str) -> StoreResult<Option<String>>;
    fn put_consent(&self, user_id: &str, client_id: &str, scope: &str, now: UnixTime) -> StoreResult<()>;
});

forward!(impl CodeStore {
    fn insert_code(&self, code_hash: &str, grant: &CodeGrant, expires_at: UnixTime) -> StoreResult<()>;
    fn redeem_code(&self, code_hash: &str, now: UnixTime) -> StoreResult<CodeRedemption>;
});

forward!(impl GrantStore {
    fn insert_grant(&self, grant: &Grant, refresh: &RefreshToken) -> StoreResult<()>;
    fn grant(&self, id: &str) -> StoreResult<Option<Grant>>;
    fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>>;
    fn rotate_refresh(&self, old_hash: &str, new: &RefreshToken, now: UnixTime) -> StoreResult<bool>;
    fn revoke_grant(&self, grant_id: &str, now: UnixTime) -> StoreResult<()>;
    fn revoked_grants(&self, since: UnixTime) -> StoreResult<Vec<(String, UnixTime)>>;
    fn revoke_user_client(&self, user_id: &str, client_id: &str, now: UnixTime) -> StoreResult<()>;
    fn access_revocations(&self, since: UnixTime) -> StoreResult<Vec<(String, String, UnixTime)>>;
    fn user_authorizations(&self, user_id: &str, now: UnixTime) -> StoreResult<Vec<UserAuthorization>>;
});

forward!(impl PatientDirectory {
    fn patient_exists(&self, patient_id: &str) -> StoreResult<bool>;
    fn patient_encounters(&self, patient_id: &str) -> StoreResult<Vec<String>>;
});

forward!(impl Housekeeping {
    fn purge_expired(&self, purge: &Purge) -> StoreResult<()>;
});

forward!(impl ResourceStore {
    fn search(&self, resource_type: &str, request: &SearchRequest, access: &[Constraint]) -> Result<SearchPage, StoreError>;
    fn matches(&self, resource_type: &str, id: &str, access: &[Constraint]) -> Result<bool, StoreError>;
    fn read(&self, resource_type: &str, id: &str) -> Result<Option<StoredResource>, StoreError>;
    fn vread(&self, resource_type: &str, id: &str, version_id: i64) -> Result<Option<StoredResource>, StoreError>;
    fn type_history(&self, resource_type: &str, access: &[Constraint], count: i64, offset: i64, max_bytes: usize) -> Result<VersionPage, StoreError>;
    fn history(&self, resource_type: &str, id: &str, max_bytes: usize) -> Result<VersionPage, StoreError>;
    fn put(&self, resource: &Value, expected: Expected, now: &str) -> Result<StoredResource, WriteError>;
    fn delete(&self, resource_type: &str, id: &str, expected: Expected, now: &str) -> Result<StoredResource, WriteError>;
    fn transaction(&self, ops: &[WriteOp], now: &str) -> Result<Vec<StoredResource>, (usize, WriteError)>;
    fn put_all(&self, resources: Vec<Value>, now: &str) -> Result<usize, StoreError>;
    fn count(&self) -> Result<i64, StoreError>;
    fn search_patients(&self, name: &str, offset: i64, limit: i64) -> Result<(Vec<Value>, i64), StoreError>;
    fn encounters_of(&self, patient_id: &str) -> Result<Vec<Value>, StoreError>;
});

/// The export ports without the snapshot (which [`ExportStore`] for [`Db`] adds by hand).
macro_rules! forward_exports {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(async fn $name(&self $(, $arg: $ty)*) -> $ret {
            match self {
                Db::Sqlite(db) => <SqliteDb as ExportStore>::$name(db $(, $arg)*).await,
                Db::Postgres(db) => <PgDb as ExportStore>::$name(db $(, $arg)*).await,
            }
        })*
    };
}

impl ExportStore for Db {
    forward_exports! {
        fn insert_export_job(&self, job: &ExportJob, max_per_client: i64, max_total: i64) -> Result<bool, StoreError>;
        fn export_job(&self, id: &str) -> Result<Option<ExportJob>, StoreError>;
        fn active_export_jobs(&self) -> Result<Vec<ExportJob>, StoreError>;
        fn export_job_ids(&self) -> Result<Vec<String>, StoreError>;
        fn set_export_progress(&self, id: &str, progress: &str) -> Result<bool, StoreError>;
        fn finish_export_job(&self, id: &str, status: JobStatus, outcome: Option<&JobOutcome>, error: Option<&str>, expires_at: i64) -> Result<bool, StoreError>;
        fn delete_export_job(&self, id: &str) -> Result<bool, StoreError>;
        fn purge_export_jobs(&self, now: i64) -> Result<Vec<String>, StoreError>;
    }

    type Snapshot = Snapshot;

    async fn export_snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(match self {
            Db::Sqlite(db) => Snapshot::Sqlite(db.export_snapshot().await?),
            Db::Postgres(db) => Snapshot::Postgres(db.export_snapshot().await?),
        })
    }
}

/// One export job's consistent view ([`ExportStore::export_snapshot`]) on the open backend.
pub enum Snapshot {
    Sqlite(<SqliteDb as ExportStore>::Snapshot),
    Postgres(<PgDb as ExportStore>::Snapshot),
}

impl ExportSnapshot for Snapshot {
    async fn resource_types(&mut self) -> Result<Vec<String>, StoreError> {
        match self {
            Snapshot::Sqlite(s) => s.resource_types().await,
            Snapshot::Postgres(s) => s.resource_types().await,
        }
    }

    async fn page(
        &mut self,
        query: &ExportQuery<'_>,
        after_id: &str,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        match self {
            Snapshot::Sqlite(s) => s.page(query, after_id, limit).await,
            Snapshot::Postgres(s) => s.page(query, after_id, limit).await,
        }
    }

    async fn changed_after(
        &mut self,
        resource_type: &str,
        until: &str,
        after_id: &str,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        match self {
            Snapshot::Sqlite(s) => s.changed_after(resource_type, until, after_id, limit).await,
            Snapshot::Postgres(s) => s.changed_after(resource_type, until, after_id, limit).await,
        }
    }

    async fn version_at(
        &mut self,
        resource_type: &str,
        id: &str,
        until: &str,
    ) -> Result<Option<PastVersion>, StoreError> {
        match self {
            Snapshot::Sqlite(s) => s.version_at(resource_type, id, until).await,
            Snapshot::Postgres(s) => s.version_at(resource_type, id, until).await,
        }
    }
}
