//! SQLite helpers over `spin_sdk::sqlite`: schema migrations applied at request time, and
//! transactions that can never be left open.
//!
//! Migrations: every component keeps its SQL in `migrations/NNNN_name.sql` files (loaded with
//! `include_str!`) and calls [`migrate`] before touching its tables. Applied versions are recorded
//! in one shared table, `schema_version (component, version)`. The pending migrations run in one
//! `BEGIN IMMEDIATE` transaction that creates that table and re-checks the recorded versions
//! first, so instances starting at once on an empty database apply each exactly once: they take
//! turns on the write lock (waiting past SQLite's busy timeout if they must, see
//! [`begin_waiting`]), the first applies them, the others find them recorded. This holds under
//! real Spin as under spin-host. Statements should still be idempotent (`IF NOT EXISTS`) as a
//! second line of defence. A file is split into statements at `;`: no `;` inside a statement (so no triggers),
//! `--` comments are allowed on their own lines.

// `Problem` is the one error a request ends with, built at most once per request: boxing it
// would only add noise at every call site.
#![allow(clippy::result_large_err)]

use spin_sdk::sqlite::{Connection, RowResult, Value};

/// One migration file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The statements of a migration file, comments dropped.
pub fn statements(sql: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

const CREATE_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
    component  TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    applied_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (component, version)
)";

/// The highest applied version of `component` (0 if none).
pub fn current_version(conn: &Connection, component: &str) -> anyhow::Result<i64> {
    let rows = conn.execute(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version WHERE component = ?",
        &[Value::Text(component.to_owned())],
    )?;
    Ok(rows.rows.first().and_then(|r| r.get::<i64>(0)).unwrap_or(0))
}

/// Applies the migrations of `component` that are not applied yet, in version order, in one
/// transaction (see the module comment). Cheap when everything is applied: one read.
pub fn migrate(conn: &Connection, component: &str, migrations: &[Migration]) -> anyhow::Result<()> {
    let latest = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    // An error here is most likely "no such table" on an empty database: migrate below.
    if matches!(current_version(conn, component), Ok(v) if v >= latest) {
        return Ok(());
    }
    let tx = begin_waiting(conn)?;
    conn.execute(CREATE_VERSION_TABLE, &[])?;
    let mut sorted: Vec<&Migration> = migrations.iter().collect();
    sorted.sort_by_key(|m| m.version);
    for m in sorted {
        let done = conn.execute(
            "SELECT 1 FROM schema_version WHERE component = ? AND version = ?",
            &[Value::Text(component.to_owned()), Value::Integer(m.version)],
        )?;
        if done.rows.is_empty() {
            apply(conn, component, m)?;
        }
    }
    tx.commit()
}

/// Runs one migration's statements and records it, inside the caller's transaction.
fn apply(conn: &Connection, component: &str, m: &Migration) -> anyhow::Result<()> {
    for stmt in statements(m.sql) {
        conn.execute(&stmt, &[])
            .map_err(|e| anyhow::anyhow!("migration {} ({}): {e}", m.version, m.name))?;
    }
    conn.execute(
        "INSERT INTO schema_version (component, version, name) VALUES (?, ?, ?)",
        &[
            Value::Text(component.to_owned()),
            Value::Integer(m.version),
            Value::Text(m.name.to_owned()),
        ],
    )?;
    Ok(())
}

/// How long [`begin_waiting`] keeps trying for the write lock.
// Below the 30 s an instance may run on spin-host (and Fermyon Cloud's 10 s is the caller's
// budget there): giving up leaves a 503 the client retries, not a killed instance.
const MIGRATION_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(20);
/// The pause between two tries.
const MIGRATION_LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(25);

/// [`Tx::begin`], tried again while the database is locked, for up to [`MIGRATION_LOCK_WAIT`].
/// Many instances starting at once on an empty database all queue for the write lock to
/// migrate, and a queue of them can outlast one busy timeout (5 s under Spin and spin-host):
/// waiting longer once, on the first requests of a deployment, beats answering them 503.
fn begin_waiting(conn: &Connection) -> anyhow::Result<Tx<'_>> {
    let start = std::time::Instant::now();
    loop {
        match conn.execute("BEGIN IMMEDIATE", &[]) {
            Ok(_) => return Ok(Tx { conn, open: true }),
            Err(e) if is_locked(&e) && start.elapsed() < MIGRATION_LOCK_WAIT => {
                std::thread::sleep(MIGRATION_LOCK_RETRY);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// SQLITE_BUSY / SQLITE_LOCKED, as the host reports them.
fn is_locked(e: &spin_sdk::sqlite::Error) -> bool {
    matches!(e, spin_sdk::sqlite::Error::Io(m) if m.contains("locked") || m.contains("busy"))
}

/// A transaction on `conn` (`BEGIN IMMEDIATE`: takes the write lock up front, so two writers
/// never both read then deadlock on upgrade). Rolled back on drop unless committed, so an early
/// return never leaves the connection inside a transaction.
pub struct Tx<'c> {
    conn: &'c Connection,
    open: bool,
}

impl<'c> Tx<'c> {
    pub fn begin(conn: &'c Connection) -> anyhow::Result<Self> {
        conn.execute("BEGIN IMMEDIATE", &[])?;
        Ok(Tx { conn, open: true })
    }

    pub fn commit(mut self) -> anyhow::Result<()> {
        self.open = false;
        if let Err(e) = self.conn.execute("COMMIT", &[]) {
            let _ = self.conn.execute("ROLLBACK", &[]);
            return Err(e.into());
        }
        Ok(())
    }

    pub fn rollback(mut self) {
        self.open = false;
        let _ = self.conn.execute("ROLLBACK", &[]);
    }

    /// Ends a transaction that wrote nothing and answers `value`, the decision read inside it.
    /// The end is checked: a host that has not made what the transaction read durable yet
    /// (spin-host's group commit) answers the rollback only then, and fails it if that write
    /// is lost, so the decision is never answered from data that did not survive.
    pub fn end<T>(mut self, value: T) -> anyhow::Result<T> {
        self.open = false;
        self.conn.execute("ROLLBACK", &[])?;
        Ok(value)
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute("ROLLBACK", &[]);
        }
    }
}

/// A savepoint inside the caller's transaction: one step of a batch whose failure undoes only
/// that step. Rolled back to (and released) on drop unless released.
pub struct Savepoint<'c> {
    conn: &'c Connection,
    open: bool,
}

impl<'c> Savepoint<'c> {
    pub fn begin(conn: &'c Connection) -> anyhow::Result<Self> {
        conn.execute("SAVEPOINT step", &[])?;
        Ok(Savepoint { conn, open: true })
    }

    /// Keeps what the step did (it commits with the enclosing transaction). If that fails, the
    /// step is rolled back (drop).
    pub fn release(mut self) -> anyhow::Result<()> {
        self.conn.execute("RELEASE step", &[])?;
        self.open = false;
        Ok(())
    }

    /// Undoes what the step did. An error means the enclosing transaction is gone too (SQLite
    /// rolled all of it back, e.g. on a full disk): nothing of it can be committed.
    pub fn rollback(mut self) -> anyhow::Result<()> {
        self.open = false;
        self.conn.execute("ROLLBACK TO step", &[])?;
        self.conn.execute("RELEASE step", &[])?;
        Ok(())
    }
}

impl Drop for Savepoint<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute("ROLLBACK TO step", &[]);
            let _ = self.conn.execute("RELEASE step", &[]);
        }
    }
}

/// Rows changed by the last INSERT/UPDATE/DELETE on this connection.
pub fn changes(conn: &Connection) -> anyhow::Result<i64> {
    let rows = conn.execute("SELECT changes()", &[])?;
    Ok(rows.rows.first().and_then(|r| r.get::<i64>(0)).unwrap_or(0))
}

/// Opens `label` and brings `component`'s schema up to date (every request does: a fresh
/// deployment needs no setup step). A failure is a 503 the client may retry, logged.
// `Problem` is the one error a request ends with (as in auth.rs and identity.rs).
pub fn open_migrated(
    label: &str,
    component: &str,
    migrations: &[Migration],
) -> Result<Connection, crate::Problem> {
    let conn = Connection::open(label).map_err(|e| unavailable(component, "open database", e))?;
    migrate(&conn, component, migrations)
        .map_err(|e| unavailable(component, "migrate database", e))?;
    Ok(conn)
}

/// A database failure: 503 (busy, locked, unreachable are all worth a retry), logged in full.
pub fn unavailable(component: &str, context: &str, err: impl std::fmt::Display) -> crate::Problem {
    eprintln!("{component}: {context}: {err}");
    crate::Problem::unavailable(format!("{context} failed; retry later"))
}

/// `Value::Text`, `Value::Null` for `None`.
pub fn text_or_null(s: Option<&str>) -> Value {
    s.map(|s| Value::Text(s.to_owned())).unwrap_or(Value::Null)
}

pub fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

pub fn int(i: i64) -> Value {
    Value::Integer(i)
}

/// `Value::Integer`, `Value::Null` for `None`.
pub fn int_or_null(i: Option<i64>) -> Value {
    i.map_or(Value::Null, Value::Integer)
}

/// Column `i` as text ("" when NULL or not text).
pub fn col_str(row: &RowResult, i: usize) -> String {
    row.get::<&str>(i).unwrap_or_default().to_owned()
}

pub fn col_opt_str(row: &RowResult, i: usize) -> Option<String> {
    row.get::<&str>(i).map(str::to_owned)
}

pub fn col_i64(row: &RowResult, i: usize) -> i64 {
    row.get::<i64>(i).unwrap_or_default()
}

pub fn col_opt_i64(row: &RowResult, i: usize) -> Option<i64> {
    row.get::<i64>(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_and_drops_comments() {
        let sql = "-- what this guarantees\nCREATE TABLE a (x INTEGER);\n\n  -- another\nCREATE INDEX IF NOT EXISTS i ON a (x);\n";
        assert_eq!(
            statements(sql),
            vec![
                "CREATE TABLE a (x INTEGER)".to_owned(),
                "CREATE INDEX IF NOT EXISTS i ON a (x)".to_owned()
            ]
        );
        assert!(statements("-- only a comment\n").is_empty());
    }
}
