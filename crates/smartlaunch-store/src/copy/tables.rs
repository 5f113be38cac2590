//! What `smartlaunch migrate` copies: every table of the schema (SQLite migrations 0001–0008,
//! `migrations/postgres/0001_schema.sql`) with the type of each column on PostgreSQL.  A
//! migration that adds a table or a column adds it here too; a test compares this list with
//! the PostgreSQL schema.

/// How a column is read from SQLite and written to PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// TEXT on both.
    Text,
    /// INTEGER / BIGINT.
    Int,
    /// REAL / DOUBLE PRECISION.
    Real,
    /// BLOB / BYTEA.
    Blob,
    /// 0 or 1 on SQLite, BOOLEAN on PostgreSQL.
    Bool,
}

/// One table and its columns.
#[derive(Debug)]
pub(crate) struct Table {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Kind)],
}

use Kind::{Blob, Bool, Int, Real, Text};

/// Every table, in no particular order (the schema has no foreign keys).
pub(crate) const TABLES: &[Table] = &[
    Table {
        name: "signing_keys",
        columns: &[("kid", Text), ("rsa_pkcs8", Blob), ("hmac_secret", Blob), ("created_at", Int)],
    },
    Table {
        name: "clients",
        columns: &[
            ("client_id", Text),
            ("metadata", Text),
            ("secret_hash", Text),
            ("created_at", Int),
            ("registration_token_hash", Text),
        ],
    },
    Table {
        name: "users",
        columns: &[
            ("id", Text),
            ("username", Text),
            ("password_hash", Text),
            ("fhir_user", Text),
            ("display_name", Text),
        ],
    },
    Table {
        name: "sessions",
        columns: &[("id_hash", Text), ("user_id", Text), ("csrf", Text), ("created_at", Int), ("expires_at", Int)],
    },
    Table { name: "pending_authorizations", columns: &[("id", Text), ("request", Text), ("expires_at", Int)] },
    Table {
        name: "consents",
        columns: &[("user_id", Text), ("client_id", Text), ("scope", Text), ("updated_at", Int)],
    },
    Table {
        name: "authorization_codes",
        columns: &[
            ("code_hash", Text),
            ("grant_id", Text),
            ("client_id", Text),
            ("data", Text),
            ("expires_at", Int),
            ("used_at", Int),
        ],
    },
    Table {
        name: "grants",
        columns: &[
            ("id", Text),
            ("client_id", Text),
            ("user_id", Text),
            ("fhir_user", Text),
            ("scope", Text),
            ("patient", Text),
            ("encounter", Text),
            ("session_id", Text),
            ("refresh_expires_at", Int),
            ("created_at", Int),
            ("revoked_at", Int),
            ("context", Text),
            ("simulate_error", Text),
            ("aud", Text),
            ("trace", Text),
        ],
    },
    Table { name: "revocations", columns: &[("grant_id", Text), ("revoked_at", Int)] },
    Table { name: "access_revocations", columns: &[("user_id", Text), ("client_id", Text), ("revoked_at", Int)] },
    Table {
        name: "refresh_tokens",
        columns: &[
            ("token_hash", Text),
            ("grant_id", Text),
            ("client_id", Text),
            ("expires_at", Int),
            ("used_at", Int),
        ],
    },
    Table {
        name: "resources",
        columns: &[
            ("resource_type", Text),
            ("id", Text),
            ("version_id", Int),
            ("last_updated", Text),
            ("deleted", Bool),
            ("sort_key", Text),
            ("content", Text),
        ],
    },
    Table {
        name: "resource_versions",
        columns: &[
            ("resource_type", Text),
            ("id", Text),
            ("version_id", Int),
            ("last_updated", Text),
            ("deleted", Bool),
            ("content", Text),
        ],
    },
    Table { name: "resource_compartments", columns: &[("patient_id", Text), ("resource_type", Text), ("id", Text)] },
    Table {
        name: "search_index",
        columns: &[
            ("resource_type", Text),
            ("id", Text),
            ("param", Text),
            ("system", Text),
            ("code", Text),
            ("value_text", Text),
            ("value_exact", Text),
            ("date_low", Int),
            ("date_high", Int),
            ("ref_type", Text),
            ("ref_id", Text),
            ("value_num", Real),
        ],
    },
    Table {
        name: "launches",
        columns: &[
            ("id_hash", Text),
            ("client_id", Text),
            ("data", Text),
            ("created_at", Int),
            ("expires_at", Int),
            ("used_at", Int),
        ],
    },
    Table { name: "launch_events", columns: &[("seq", Int), ("trace_id", Text), ("at", Int), ("event", Text)] },
    Table { name: "launch_traces", columns: &[("trace_id", Text), ("recorded", Int), ("last_at", Int)] },
    Table { name: "client_assertion_jtis", columns: &[("client_id", Text), ("jti_hash", Text), ("expires_at", Int)] },
    Table {
        name: "export_jobs",
        columns: &[
            ("id", Text),
            ("client_id", Text),
            ("request_url", Text),
            ("spec", Text),
            ("status", Text),
            ("transaction_time", Text),
            ("progress", Text),
            ("outcome", Text),
            ("error", Text),
            ("created_at", Int),
            ("expires_at", Int),
        ],
    },
    Table {
        name: "backend_sessions",
        columns: &[
            ("client_id", Text),
            ("trace_id", Text),
            ("simulate_error", Text),
            ("created_at", Int),
            ("expires_at", Int),
        ],
    },
    Table { name: "launch_links", columns: &[("id_hash", Text), ("name", Text), ("form", Text), ("created_at", Int)] },
    Table { name: "trace_switches", columns: &[("client_id", Text), ("expires_at", Int)] },
    Table {
        name: "hand_traces",
        columns: &[("trace_id", Text), ("client_id", Text), ("created_at", Int), ("expires_at", Int)],
    },
];

/// The identity columns whose sequence must go past the copied values: (table, column).
pub(crate) const IDENTITIES: &[(&str, &str)] = &[("launch_events", "seq")];
