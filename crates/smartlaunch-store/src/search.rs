//! FHIR search as SQL over `resources`, `resource_compartments` and `search_index`.
//!
//! One clause drives the query through an index (a compartment, a reference, an `_id`, a
//! token…): `r.id IN (SELECT …)`; every other clause is a correlated `EXISTS` probe on the
//! candidate's own index rows, so a search costs about as much as the driving clause's rows.

use smartlaunch_fhir::search::extract::{IndexEntry, IndexValue};
use smartlaunch_fhir::search::params::Kind;
use smartlaunch_fhir::search::query::{Clause, ClauseValue, Modifier, Prefix, SearchRequest, Target};
use smartlaunch_fhir::search::Constraint;
use smartlaunch_fhir::store::StoreError;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, Sqlite, Transaction};

/// A bind value.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
    Float(f64),
    Null,
}

/// SQL text with its binds, built left to right.
#[derive(Default)]
pub(crate) struct Sql {
    pub text: String,
    pub binds: Vec<Bind>,
}

impl Sql {
    pub fn push(&mut self, s: &str) -> &mut Sql {
        self.text.push_str(s);
        self
    }

    pub fn bind(&mut self, b: Bind) -> &mut Sql {
        self.text.push('?');
        self.binds.push(b);
        self
    }

    fn text(&mut self, s: &str) -> &mut Sql {
        self.bind(Bind::Text(s.to_owned()))
    }

    pub fn arguments(&self) -> SqliteArguments<'static> {
        let mut args = SqliteArguments::default();
        for b in &self.binds {
            add(&mut args, b.clone());
        }
        args
    }

    /// The text and the arguments, without copying the bound values.
    pub fn into_parts(self) -> (String, SqliteArguments<'static>) {
        let mut args = SqliteArguments::default();
        for b in self.binds {
            add(&mut args, b);
        }
        (self.text, args)
    }

    pub fn arguments_vec(&self) -> Vec<Bind> {
        self.binds.clone()
    }
}

/// Appends one bind to sqlx arguments.
pub(crate) fn add(args: &mut SqliteArguments<'static>, bind: Bind) {
    // Encoding a String, i64 or f64 for SQLite cannot fail.
    let _ = match bind {
        Bind::Text(t) => args.add(t),
        Bind::Int(i) => args.add(i),
        Bind::Float(f) => args.add(f),
        Bind::Null => args.add(None::<String>),
    };
}

fn escape_like(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

/// The condition on index row `i` for one value of a clause.
fn value_sql(sql: &mut Sql, modifier: Modifier, value: &ClauseValue) {
    match value {
        ClauseValue::Id(_) => {}
        ClauseValue::Token { system, code } => {
            // `code IS NOT NULL` lets SQLite use the partial token index.
            sql.push("(i.code IS NOT NULL");
            if let Some(code) = code {
                sql.push(" AND i.code = ").text(code);
            }
            match system {
                None => {}
                Some(None) => {
                    sql.push(" AND (i.system IS NULL OR i.system = '')");
                }
                Some(Some(s)) => {
                    sql.push(" AND i.system = ").text(s);
                }
            }
            sql.push(")");
        }
        ClauseValue::String(s) => match modifier {
            Modifier::Exact => {
                sql.push("i.value_exact = ").text(s);
            }
            Modifier::Contains => {
                sql.push("i.value_text LIKE ").text(&format!("%{}%", escape_like(s))).push(" ESCAPE '\\'");
            }
            _ => {
                sql.push("i.value_text IS NOT NULL AND i.value_text LIKE ")
                    .text(&format!("{}%", escape_like(s)))
                    .push(" ESCAPE '\\'");
            }
        },
        ClauseValue::Date { prefix, low, high } => {
            // R4 date semantics: the target range [date_low, date_high] against [low, high].
            let (l, h) = (Bind::Int(*low), Bind::Int(*high));
            sql.push("i.date_low IS NOT NULL AND ");
            match prefix {
                Prefix::Eq => sql.push("(i.date_low >= ").bind(l).push(" AND i.date_high <= ").bind(h).push(")"),
                Prefix::Ne => sql.push("NOT (i.date_low >= ").bind(l).push(" AND i.date_high <= ").bind(h).push(")"),
                Prefix::Gt => sql.push("i.date_high > ").bind(h),
                Prefix::Lt => sql.push("i.date_low < ").bind(l),
                Prefix::Ge => sql.push("i.date_high >= ").bind(l),
                Prefix::Le => sql.push("i.date_low <= ").bind(h),
            };
        }
        ClauseValue::Reference { target_type, id } => {
            sql.push("(i.ref_id IS NOT NULL AND i.ref_id = ").text(id);
            if let Some(t) = target_type {
                sql.push(" AND i.ref_type = ").text(t);
            }
            sql.push(")");
        }
        ClauseValue::Quantity { prefix, value, low, high, system, code } => {
            sql.push("(");
            match prefix {
                Prefix::Eq => sql
                    .push("i.value_num >= ")
                    .bind(Bind::Float(*low))
                    .push(" AND i.value_num < ")
                    .bind(Bind::Float(*high)),
                Prefix::Ne => sql
                    .push("NOT (i.value_num >= ")
                    .bind(Bind::Float(*low))
                    .push(" AND i.value_num < ")
                    .bind(Bind::Float(*high))
                    .push(")"),
                Prefix::Gt => sql.push("i.value_num > ").bind(Bind::Float(*value)),
                Prefix::Lt => sql.push("i.value_num < ").bind(Bind::Float(*value)),
                Prefix::Ge => sql.push("i.value_num >= ").bind(Bind::Float(*value)),
                Prefix::Le => sql.push("i.value_num <= ").bind(Bind::Float(*value)),
            };
            if let Some(s) = system {
                sql.push(" AND i.system = ").text(s);
            }
            if let Some(c) = code {
                sql.push(" AND i.code = ").text(c);
            }
            sql.push(")");
        }
    }
}

/// The OR of a clause's values on index rows `i` of parameter `name`.
fn values_sql(sql: &mut Sql, name: &str, clause: &Clause) {
    sql.push("i.param = ").text(name).push(" AND (");
    for (n, v) in clause.values.iter().enumerate() {
        if n > 0 {
            sql.push(" OR ");
        }
        value_sql(sql, clause.modifier, v);
    }
    sql.push(")");
}

/// A clause as a correlated condition on the candidate row `r`.
fn clause_probe(sql: &mut Sql, clause: &Clause) {
    match clause.target {
        Target::Id => match clause.modifier {
            Modifier::Missing(missing) => {
                sql.push(if missing { "0" } else { "1" });
            }
            _ => {
                sql.push("r.id IN (");
                for (n, v) in clause.values.iter().enumerate() {
                    if let ClauseValue::Id(id) = v {
                        sql.push(if n > 0 { ", " } else { "" }).text(id);
                    }
                }
                sql.push(")");
            }
        },
        Target::Indexed { name, .. } => {
            let exists =
                // A probe reads the candidate's own rows; left alone, SQLite prefers the kind's
                // index (more equality columns) and scans every row with that value.  (SQLite
                // syntax: the PostgreSQL store will keep its own builder.)
                "EXISTS (SELECT 1 FROM search_index i INDEXED BY search_index_resource \
                 WHERE i.resource_type = r.resource_type AND i.id = r.id AND ";
            match clause.modifier {
                Modifier::Missing(true) => {
                    sql.push("NOT ").push(exists).push("i.param = ").text(name).push(")");
                }
                Modifier::Missing(false) => {
                    sql.push(exists).push("i.param = ").text(name).push(")");
                }
                _ => {
                    sql.push(exists);
                    values_sql(sql, name, clause);
                    sql.push(")");
                }
            }
        }
    }
}

/// A clause able to drive the query: the ids of matching resources, through an index.
fn clause_driver(sql: &mut Sql, resource_type: &str, clause: &Clause) -> bool {
    match (clause.target, clause.modifier) {
        (Target::Indexed { name, .. }, Modifier::None | Modifier::Exact) => {
            sql.push("r.id IN (SELECT i.id FROM search_index i WHERE i.resource_type = ")
                .text(resource_type)
                .push(" AND ");
            values_sql(sql, name, clause);
            sql.push(")");
            true
        }
        _ => false,
    }
}

/// How good a driver a clause is (lower is better): references and ids first.
fn selectivity(clause: &Clause) -> u8 {
    match (clause.target, clause.modifier) {
        (Target::Id, Modifier::None) => 0,
        (Target::Indexed { kind: Kind::Reference, .. }, Modifier::None) => 1,
        (Target::Indexed { kind: Kind::Token, .. }, Modifier::None) => 2,
        (Target::Indexed { kind: Kind::String, .. }, Modifier::Exact | Modifier::None) => 3,
        (Target::Indexed { .. }, Modifier::None) => 4,
        _ => 9,
    }
}

/// The WHERE clause of a search: the type, live resources, the request's clauses (AND) and the
/// access constraints (OR).
pub(crate) fn where_sql(resource_type: &str, clauses: &[Clause], access: &[Constraint]) -> Sql {
    let mut sql = Sql::default();
    sql.push("r.resource_type = ").text(resource_type).push(" AND r.deleted = 0");
    // The driver: one compartment for every constraint, else the most selective clause.
    let single_compartment = match access {
        [one] => one.compartment.clone(),
        _ => None,
    };
    let mut driven = None;
    if let Some(patient) = &single_compartment {
        sql.push(" AND r.id IN (SELECT c.id FROM resource_compartments c WHERE c.patient_id = ")
            .text(patient)
            .push(" AND c.resource_type = ")
            .text(resource_type)
            .push(")");
    } else if let Some((n, best)) = clauses.iter().enumerate().min_by_key(|(_, c)| selectivity(c)) {
        sql.push(" AND ");
        if clause_driver(&mut sql, resource_type, best) {
            driven = Some(n);
        } else {
            clause_probe(&mut sql, best);
            driven = Some(n);
        }
    }
    for (n, clause) in clauses.iter().enumerate() {
        if Some(n) != driven {
            sql.push(" AND ");
            clause_probe(&mut sql, clause);
        }
    }
    sql.push(" AND (");
    for (n, constraint) in access.iter().enumerate() {
        sql.push(if n > 0 { " OR " } else { "" }).push("(1");
        if let Some(patient) = constraint.compartment.as_ref().filter(|_| single_compartment.is_none()) {
            sql.push(" AND EXISTS (SELECT 1 FROM resource_compartments c WHERE c.resource_type = r.resource_type AND c.id = r.id AND c.patient_id = ")
                .text(patient)
                .push(")");
        }
        for clause in &constraint.filter {
            sql.push(" AND ");
            clause_probe(&mut sql, clause);
        }
        sql.push(")");
    }
    if access.is_empty() {
        sql.push("0");
    }
    sql.push(")");
    sql
}

/// `ORDER BY` for the request's `_sort` (default: id, a stable order for paging).
pub(crate) fn order_sql(request: &SearchRequest) -> Sql {
    let mut sql = Sql::default();
    sql.push(" ORDER BY ");
    for key in &request.sort {
        let direction = if key.descending { " DESC" } else { " ASC" };
        match key.target {
            Target::Id => sql.push("+r.id").push(direction),
            Target::Indexed { name, kind } => {
                let (agg, column) = match (kind, key.descending) {
                    (Kind::Date, false) => ("MIN", "i.date_low"),
                    (Kind::Date, true) => ("MAX", "i.date_high"),
                    (Kind::Token, _) => ("MIN", "i.code"),
                    (_, false) => ("MIN", "i.value_text"),
                    (_, true) => ("MAX", "i.value_text"),
                };
                sql.push("(SELECT ")
                    .push(agg)
                    .push("(")
                    .push(column)
                    .push(
                        ") FROM search_index i WHERE i.resource_type = r.resource_type AND i.id = r.id AND i.param = ",
                    )
                    .text(name)
                    .push(")")
                    .push(direction)
            }
        };
        sql.push(", ");
    }
    // `+r.id`: sorting must not tempt SQLite to walk the whole type in primary-key order
    // instead of driving from the selective clause (then sorting the few matches).
    sql.push("+r.id ASC");
    sql
}

/// The columns of a `search_index` row, in the order [`index_row`] binds them.
pub(crate) const INDEX_COLUMNS: &str =
    "resource_type, id, param, system, code, value_text, value_exact, date_low, date_high, ref_type, ref_id, value_num";

/// One parenthesised `search_index` row (absent values are NULL, so each row sits only in the
/// partial index of its kind).
pub(crate) fn index_row(sql: &mut Sql, resource_type: &str, id: &str, e: &IndexEntry) {
    let text = |s: &str| Bind::Text(s.to_owned());
    let opt = |s: &Option<String>| s.clone().map_or(Bind::Null, Bind::Text);
    let null = || Bind::Null;
    let (system, code, folded, exact, low, high, ref_type, ref_id, num) = match &e.value {
        IndexValue::Token { system, code } => {
            (opt(system), text(code), null(), null(), null(), null(), null(), null(), null())
        }
        IndexValue::String { folded, exact } => {
            (null(), null(), text(folded), text(exact), null(), null(), null(), null(), null())
        }
        IndexValue::Date { low, high } => {
            (null(), null(), null(), null(), Bind::Int(*low), Bind::Int(*high), null(), null(), null())
        }
        IndexValue::Reference { target_type, target_id } => {
            (null(), null(), null(), null(), null(), null(), opt(target_type), text(target_id), null())
        }
        IndexValue::Quantity { value, system, code } => {
            (opt(system), opt(code), null(), null(), null(), null(), null(), null(), Bind::Float(*value))
        }
    };
    sql.push("(").bind(text(resource_type)).push(", ").bind(text(id)).push(", ").bind(text(e.param));
    for b in [system, code, folded, exact, low, high, ref_type, ref_id, num] {
        sql.push(", ").bind(b);
    }
    sql.push(")");
}

/// Writes a resource's index rows (inside the write transaction) with multi-row inserts,
/// replacing the old ones when `replace`.
pub(crate) async fn write_index(
    tx: &mut Transaction<'_, Sqlite>,
    resource_type: &str,
    id: &str,
    entries: &[IndexEntry],
    replace: bool,
) -> Result<(), StoreError> {
    let err = |e: sqlx::Error| StoreError(e.to_string());
    if replace {
        sqlx::query("DELETE FROM search_index WHERE resource_type = ? AND id = ?")
            .bind(resource_type)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
    }
    for chunk in entries.chunks(1_000) {
        let mut sql = Sql::default();
        sql.push("INSERT INTO search_index (").push(INDEX_COLUMNS).push(") VALUES ");
        for (n, e) in chunk.iter().enumerate() {
            sql.push(if n > 0 { ", " } else { "" });
            index_row(&mut sql, resource_type, id, e);
        }
        sqlx::query_with(&sql.text, sql.arguments()).execute(&mut **tx).await.map_err(err)?;
    }
    Ok(())
}
