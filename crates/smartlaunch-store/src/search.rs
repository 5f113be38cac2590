//! FHIR search as SQL over `resources`, `resource_compartments` and `search_index`, for both
//! backends (docs/DESIGN.md "PostgreSQL").
//!
//! One clause drives the query through an index (a compartment, a reference, an `_id`, a
//! token…): `r.id IN (SELECT …)`; every other clause is a correlated `EXISTS` probe on the
//! candidate's own index rows, so a search costs about as much as the driving clause's rows.
//!
//! The text is the same on both backends except where [`Dialect`] says otherwise: placeholders
//! are `$n` (SQLite accepts them too), booleans are `TRUE`/`FALSE` (SQLite ≥ 3.23 reads them as
//! 1/0), and only SQLite gets its planner hints.

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::ToSql;
use smartlaunch_fhir::search::extract::{IndexEntry, IndexValue};
use smartlaunch_fhir::search::params::Kind;
use smartlaunch_fhir::search::query::{Clause, ClauseValue, Modifier, Prefix, SearchRequest, Target};
use smartlaunch_fhir::search::Constraint;
use sqlx::postgres::PgArguments;
use sqlx::Arguments;

/// The SQL engine a statement is built for: the one place where the texts differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// How a probe reads `search_index`: SQLite must be told to use the candidate's own rows
    /// (left alone it prefers the kind's index, with more equality columns, and scans every
    /// row with that value: 15 s instead of 3 ms on 190k resources); PostgreSQL's planner
    /// chooses well from its statistics.
    fn probe_source(self) -> &'static str {
        match self {
            Dialect::Sqlite => "search_index i INDEXED BY search_index_resource",
            Dialect::Postgres => "search_index i",
        }
    }

    /// The id as a sort key.  `+r.id` (an expression, not the column) keeps SQLite from walking
    /// the whole type in primary-key order instead of driving from the selective clause; in
    /// PostgreSQL `+` is not defined on text, and its planner needs no such nudge.
    fn id_sort(self) -> &'static str {
        match self {
            Dialect::Sqlite => "+r.id",
            Dialect::Postgres => "r.id",
        }
    }

    /// The escape clause of a `LIKE` whose pattern escapes `%`, `_` and `\` with a backslash:
    /// SQLite has no default escape character; PostgreSQL's default is the backslash, and an
    /// explicit `ESCAPE` would hide the pattern's constant prefix from its index planner.
    fn like_escape(self) -> &'static str {
        match self {
            Dialect::Sqlite => " ESCAPE '\\'",
            Dialect::Postgres => "",
        }
    }
}

/// A bind value.  Nulls carry their SQL type: PostgreSQL types every parameter.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
    Float(f64),
    NullText,
    NullInt,
    NullFloat,
}

/// SQL text with its binds, built left to right; placeholders are `$1`, `$2`… in bind order on
/// PostgreSQL, and `?` on SQLite, which numbers them in the order they appear (the same order).
/// Not `$n` on SQLite: it treats `$n` as a *named* parameter, and both naming one at prepare
/// time and reading its name at bind time scan the statement's list of names, so a multi-row
/// insert of a few thousand values cost quadratic time (the bulk import spent 87% of its time
/// there: 200,000 resources took over ten minutes instead of about half a minute).
pub(crate) struct Sql {
    pub text: String,
    pub binds: Vec<Bind>,
    pub dialect: Dialect,
}

impl Sql {
    pub fn new(dialect: Dialect) -> Sql {
        Sql { text: String::new(), binds: Vec::new(), dialect }
    }

    pub fn push(&mut self, s: &str) -> &mut Sql {
        self.text.push_str(s);
        self
    }

    pub fn bind(&mut self, b: Bind) -> &mut Sql {
        self.binds.push(b);
        match self.dialect {
            Dialect::Sqlite => self.text.push('?'),
            Dialect::Postgres => {
                self.text.push('$');
                self.text.push_str(&self.binds.len().to_string());
            }
        }
        self
    }

    fn text(&mut self, s: &str) -> &mut Sql {
        self.bind(Bind::Text(s.to_owned()))
    }

    /// The binds as PostgreSQL arguments.
    pub fn pg_arguments(&self) -> PgArguments {
        let mut args = PgArguments::default();
        for b in &self.binds {
            add_pg(&mut args, b.clone());
        }
        args
    }

    /// The text and the PostgreSQL arguments, without copying the bound values.
    pub fn into_pg_parts(self) -> (String, PgArguments) {
        let mut args = PgArguments::default();
        for b in self.binds {
            add_pg(&mut args, b);
        }
        (self.text, args)
    }
}

/// A bind as a SQLite value (bound by rusqlite; text without a copy).
impl ToSql for Bind {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Bind::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Bind::Int(i) => ToSqlOutput::Owned(Value::Integer(*i)),
            Bind::Float(f) => ToSqlOutput::Owned(Value::Real(*f)),
            Bind::NullText | Bind::NullInt | Bind::NullFloat => ToSqlOutput::Owned(Value::Null),
        })
    }
}

/// Appends one bind to PostgreSQL arguments.
fn add_pg(args: &mut PgArguments, bind: Bind) {
    // Encoding a String, i64 or f64 for PostgreSQL cannot fail.
    let _ = match bind {
        Bind::Text(t) => args.add(t),
        Bind::Int(i) => args.add(i),
        Bind::Float(f) => args.add(f),
        Bind::NullText => args.add(None::<String>),
        Bind::NullInt => args.add(None::<i64>),
        Bind::NullFloat => args.add(None::<f64>),
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
                let escape = sql.dialect.like_escape();
                sql.push("i.value_text LIKE ").text(&format!("%{}%", escape_like(s))).push(escape);
            }
            _ => {
                // Both sides are folded (`normalize::fold`), so neither engine's case rules
                // matter: SQLite's ASCII-insensitive LIKE and PostgreSQL's exact one agree.
                let escape = sql.dialect.like_escape();
                sql.push("i.value_text IS NOT NULL AND i.value_text LIKE ")
                    .text(&format!("{}%", escape_like(s)))
                    .push(escape);
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
                sql.push(if missing { "FALSE" } else { "TRUE" });
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
            // A probe reads the candidate's own rows (see `Dialect::probe_source`).
            let exists = format!(
                "EXISTS (SELECT 1 FROM {} WHERE i.resource_type = r.resource_type AND i.id = r.id AND ",
                sql.dialect.probe_source()
            );
            let exists = exists.as_str();
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

/// Which current rows a filter admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Live resources only (a search).
    Live,
    /// Deleted ones too (a type history: a deleted resource keeps its compartments, so its
    /// history stays visible to whoever could see it).
    AnyState,
}

/// Appends the WHERE condition of a search on candidate rows `r` of `resources`: the type, the
/// liveness, the request's clauses (AND) and the access constraints (OR).
pub(crate) fn where_sql(
    sql: &mut Sql,
    resource_type: &str,
    clauses: &[Clause],
    access: &[Constraint],
    liveness: Liveness,
) {
    sql.push("r.resource_type = ").text(resource_type);
    if liveness == Liveness::Live {
        sql.push(" AND r.deleted = FALSE");
    }
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
        if clause_driver(sql, resource_type, best) {
            driven = Some(n);
        } else {
            clause_probe(sql, best);
            driven = Some(n);
        }
    }
    for (n, clause) in clauses.iter().enumerate() {
        if Some(n) != driven {
            sql.push(" AND ");
            clause_probe(sql, clause);
        }
    }
    sql.push(" AND (");
    for (n, constraint) in access.iter().enumerate() {
        sql.push(if n > 0 { " OR " } else { "" }).push("(TRUE");
        if let Some(patient) = constraint.compartment.as_ref().filter(|_| single_compartment.is_none()) {
            sql.push(" AND EXISTS (SELECT 1 FROM resource_compartments c WHERE c.resource_type = r.resource_type AND c.id = r.id AND c.patient_id = ")
                .text(patient)
                .push(")");
        }
        for clause in &constraint.filter {
            sql.push(" AND ");
            clause_probe(sql, clause);
        }
        sql.push(")");
    }
    if access.is_empty() {
        sql.push("FALSE");
    }
    sql.push(")");
}

/// Appends `ORDER BY` for the request's `_sort` (default: id, a stable order for paging).
pub(crate) fn order_sql(sql: &mut Sql, request: &SearchRequest) {
    let id_sort = sql.dialect.id_sort();
    sql.push(" ORDER BY ");
    for key in &request.sort {
        let direction = if key.descending { " DESC" } else { " ASC" };
        match key.target {
            Target::Id => sql.push(id_sort).push(direction),
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
    sql.push(id_sort).push(" ASC");
}

/// The columns of a `search_index` row, in the order [`index_row`] binds them.
pub(crate) const INDEX_COLUMNS: &str =
    "resource_type, id, param, system, code, value_text, value_exact, date_low, date_high, ref_type, ref_id, value_num";

/// One parenthesised `search_index` row (absent values are NULL, so each row sits only in the
/// partial index of its kind).
pub(crate) fn index_row(sql: &mut Sql, resource_type: &str, id: &str, e: &IndexEntry) {
    let text = |s: &str| Bind::Text(s.to_owned());
    let opt = |s: &Option<String>| s.clone().map_or(Bind::NullText, Bind::Text);
    let (null, nint, nfloat) = (|| Bind::NullText, || Bind::NullInt, || Bind::NullFloat);
    let (system, code, folded, exact, low, high, ref_type, ref_id, num) = match &e.value {
        IndexValue::Token { system, code } => {
            (opt(system), text(code), null(), null(), nint(), nint(), null(), null(), nfloat())
        }
        IndexValue::String { folded, exact } => {
            (null(), null(), text(folded), text(exact), nint(), nint(), null(), null(), nfloat())
        }
        IndexValue::Date { low, high } => {
            (null(), null(), null(), null(), Bind::Int(*low), Bind::Int(*high), null(), null(), nfloat())
        }
        IndexValue::Reference { target_type, target_id } => {
            (null(), null(), null(), null(), nint(), nint(), opt(target_type), text(target_id), nfloat())
        }
        IndexValue::Quantity { value, system, code } => {
            (opt(system), opt(code), null(), null(), nint(), nint(), null(), null(), Bind::Float(*value))
        }
    };
    sql.push("(").bind(text(resource_type)).push(", ").bind(text(id)).push(", ").bind(text(e.param));
    for b in [system, code, folded, exact, low, high, ref_type, ref_id, num] {
        sql.push(", ").bind(b);
    }
    sql.push(")");
}

/// Deletes a resource's index rows (before its new ones are written).
pub(crate) const DELETE_INDEX: &str = "DELETE FROM search_index WHERE resource_type = $1 AND id = $2";

/// The multi-row inserts of a resource's index rows, at most 1,000 rows a statement.
pub(crate) fn index_inserts<'a>(
    dialect: Dialect,
    resource_type: &'a str,
    id: &'a str,
    entries: &'a [IndexEntry],
) -> impl Iterator<Item = Sql> + 'a {
    entries.chunks(1_000).map(move |chunk| {
        let mut sql = Sql::new(dialect);
        sql.push("INSERT INTO search_index (").push(INDEX_COLUMNS).push(") VALUES ");
        for (n, e) in chunk.iter().enumerate() {
            sql.push(if n > 0 { ", " } else { "" });
            index_row(&mut sql, resource_type, id, e);
        }
        sql
    })
}

/// Writes a resource's index rows (inside the write transaction) with multi-row inserts,
/// replacing the old ones when `replace`.
pub(crate) fn write_index(
    conn: &rusqlite::Connection,
    resource_type: &str,
    id: &str,
    entries: &[IndexEntry],
    replace: bool,
) -> rusqlite::Result<()> {
    if replace {
        crate::conn::exec(conn, DELETE_INDEX, &[&resource_type, &id])?;
    }
    for sql in index_inserts(Dialect::Sqlite, resource_type, id, entries) {
        // Few distinct texts (one per number of rows): cached.
        crate::conn::exec(conn, &sql.text, &crate::conn::values(&sql.binds))?;
    }
    Ok(())
}
