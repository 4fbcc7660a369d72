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

/// What one read tells about a connection before the request uses it: the schema version and
/// the settings [`prepare`] makes sure of.
struct ConnState {
    version: i64,
    /// `journal_mode` and `synchronous`, if this database lets them be read (a libSQL server
    /// may not have the `pragma_*` functions: then the app leaves its settings alone).
    settings: Option<(String, i64)>,
    /// The caller's own scalar read, if it asked for one ([`migrate_reading`]).
    extra: Option<i64>,
}

/// One read, whatever the runtime: `pragma_*` table-valued functions read the settings in the
/// same statement as the version, so a connection already set up costs nothing more; `extra`, a
/// scalar subquery of the caller's, rides along. Where the settings cannot be read, the version
/// alone is.
fn state(conn: &Connection, component: &str, extra: Option<&str>) -> anyhow::Result<ConnState> {
    read_state(conn, component, extra, true).or_else(|_| read_state(conn, component, extra, false))
}

fn read_state(
    conn: &Connection,
    component: &str,
    extra: Option<&str>,
    settings: bool,
) -> anyhow::Result<ConnState> {
    let pragmas = match settings {
        true => "(SELECT journal_mode FROM pragma_journal_mode), (SELECT synchronous FROM pragma_synchronous)",
        false => "NULL, NULL",
    };
    let rows = conn.execute(
        &format!(
            "SELECT COALESCE(MAX(version), 0), {pragmas}, ({})
               FROM schema_version WHERE component = ?",
            extra.unwrap_or("NULL")
        ),
        &[Value::Text(component.to_owned())],
    )?;
    let row = rows.rows.first();
    let text = |i| {
        row.and_then(|r| r.get::<&str>(i))
            .map(str::to_ascii_lowercase)
    };
    Ok(ConnState {
        version: row.and_then(|r| r.get::<i64>(0)).unwrap_or(0),
        settings: text(1).zip(row.and_then(|r| r.get::<i64>(2))),
        extra: row.and_then(|r| r.get::<i64>(3)),
    })
}

/// Applies the migrations of `component` that are not applied yet, in version order, in one
/// transaction (see the module comment), after [`prepare`]. Cheap when everything is applied and
/// the connection is set up: one read.
pub fn migrate(conn: &Connection, component: &str, migrations: &[Migration]) -> anyhow::Result<()> {
    migrate_reading(conn, component, migrations, None).map(|_| ())
}

/// [`migrate`], answering `extra` (a scalar subquery over the migrated schema, e.g. a
/// one-row settings table) read in the same statement as the version: a request that needs one
/// such value before its work costs no extra call.
pub fn migrate_reading(
    conn: &Connection,
    component: &str,
    migrations: &[Migration],
    extra: Option<&str>,
) -> anyhow::Result<Option<i64>> {
    let latest = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    // An error here is most likely "no such table" on an empty database (or an `extra` over a
    // table a pending migration creates): set up, migrate, then read `extra` on its own.
    let found = state(conn, component, extra).ok();
    prepare(conn, found.as_ref());
    if let Some(s) = found.filter(|s| s.version >= latest) {
        return Ok(s.extra);
    }
    apply_pending(conn, component, migrations)?;
    Ok(state(conn, component, extra)?.extra)
}

/// The migrations not applied yet, in one `BEGIN IMMEDIATE` transaction.
fn apply_pending(
    conn: &Connection,
    component: &str,
    migrations: &[Migration],
) -> anyhow::Result<()> {
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

/// What the app relies on, set by the app on every connection, because no Spin runtime promises
/// it: real Spin opens a fresh rusqlite connection per `open`, with SQLite's defaults, and leaves
/// the journal mode to the file (a new file is in rollback-journal mode).
/// - WAL: readers never block the writer, and a commit appends to the log instead of rewriting
///   pages through a rollback journal (two fsyncs, and every reader's SHARED lock in the way).
///   It is a property of the file: set once, the first time any connection finds it missing.
/// - `synchronous=FULL`: in WAL mode a commit is then fsynced before it is answered, so an
///   order answered 201 survives a power cut. A per-connection setting; SQLite's compile-time
///   default for WAL may be lower, so it is checked on every connection.
///
/// `known` is what [`state`] read: None when nothing could be read (a new, empty file), whose
/// settings are then set; settings that cannot be read (a libSQL label) are left alone. A
/// refused pragma is logged, not fatal: the request still works, only without that guarantee
/// from the app (the database's own settings apply).
fn prepare(conn: &Connection, known: Option<&ConnState>) {
    let (journal, synchronous) = match known.map(|s| s.settings.as_ref()) {
        Some(None) => return,
        Some(Some((journal, synchronous))) => (journal.as_str(), *synchronous),
        None => ("", 0),
    };
    if journal != "wal" {
        // Switching needs a moment alone with the file: wait for it like a writer does.
        if let Err(e) = with_lock_wait(conn, || conn.execute("PRAGMA journal_mode = WAL", &[])) {
            eprintln!("sqlite: could not switch the journal to WAL: {e}");
        }
    }
    if synchronous != SYNCHRONOUS_FULL {
        if let Err(e) = conn.execute("PRAGMA synchronous = FULL", &[]) {
            eprintln!("sqlite: could not set synchronous = FULL: {e}");
        }
    }
}

/// `PRAGMA synchronous` answers 2 for FULL.
const SYNCHRONOUS_FULL: i64 = 2;

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

/// How long a migration keeps trying for the write lock.
// Below the 30 s an instance may run on spin-host (and Fermyon Cloud's 10 s is the caller's
// budget there): giving up leaves a 503 the client retries, not a killed instance.
const MIGRATION_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// [`Tx::begin`] with [`MIGRATION_LOCK_WAIT`]: many instances starting at once on an empty
/// database all queue for the write lock to migrate, and a queue of them can outlast a request's
/// usual wait: waiting longer once, on the first requests of a deployment, beats answering 503.
fn begin_waiting(conn: &Connection) -> anyhow::Result<Tx<'_>> {
    Tx::begin_with(
        conn,
        LockWait {
            deadline: MIGRATION_LOCK_WAIT,
            ..LockWait::REQUEST
        },
    )
}

/// SQLITE_BUSY / SQLITE_LOCKED, as the host reports them.
fn is_locked(e: &spin_sdk::sqlite::Error) -> bool {
    matches!(e, spin_sdk::sqlite::Error::Io(m) if m.contains("locked") || m.contains("busy"))
}

/// How a writer waits for the write lock: the app's own schedule instead of SQLite's busy
/// handler.
///
/// Why (docs/benchmarks.md, "Where the time goes under real Spin"): SQLite's default handler,
/// which real Spin leaves in place (rusqlite's 5 s `busy_timeout`), sleeps 1, 2, 5, 10, 15, 20,
/// 25, 25, 25, 50, 50, 100, 100 ... ms between tries: the longer a writer has waited, the longer
/// it sleeps, while newer writers, polling fast, take the lock before it. Under concurrent
/// writers the tail grows to seconds (order creation at 16 connections: p99 1.4 s). Here the
/// schedule is reversed: `BEGIN IMMEDIATE` is tried without SQLite waiting (`busy_timeout = 0`),
/// a writer that just arrived pauses longest ([`LockWait::first`]), and each refused try halves
/// the next pause down to [`LockWait::floor`]. So the writers that have waited longest try most
/// often and most likely take the lock when it is let go: close to first come, first served,
/// with no shared state between instances (each request is its own instance, and Spin gives
/// them nothing to queue on). Pauses are jittered (50-150 %) so waiters do not try in step.
#[derive(Debug, Clone, Copy)]
pub struct LockWait {
    /// The pause after the first refused try.
    pub first: std::time::Duration,
    /// The shortest pause, reached after a few refused tries.
    pub floor: std::time::Duration,
    /// Give up (SQLITE_BUSY, a 503 the client retries) after waiting this long.
    pub deadline: std::time::Duration,
}

impl LockWait {
    /// A request's write transaction: measured under real Spin with the SQLite probe (4 files,
    /// 16 connections), 4 ms down to 0.1 ms had the lowest p99 of the schedules tried (growing
    /// pauses 0.25 -> 2 ms: 95-130 ms; fixed 0.5 ms: 88 ms; this one: 55-61 ms).
    pub const REQUEST: LockWait = LockWait {
        first: std::time::Duration::from_millis(4),
        floor: std::time::Duration::from_micros(100),
        deadline: std::time::Duration::from_secs(5),
    };

    /// The pause after `tries` earlier refused tries, before jitter: `first` halved `tries`
    /// times, at least `floor`.
    fn base(&self, tries: u32) -> std::time::Duration {
        (self.first / (1 << tries.min(16))).max(self.floor)
    }

    /// [`Self::base`], jittered to 50-150 %.
    fn pause(&self, tries: u32) -> std::time::Duration {
        let micros = u64::try_from(self.base(tries).as_micros())
            .unwrap_or(u64::MAX)
            .max(2);
        std::time::Duration::from_micros(micros / 2 + crate::ids::random_below(micros))
    }
}

/// Runs `attempt` with SQLite's own waiting off (`busy_timeout = 0`), trying again after
/// `wait`'s pauses while it fails with SQLITE_BUSY, until `wait.deadline`. Only for a step that
/// holds no lock when it fails (a `BEGIN IMMEDIATE`, a journal-mode switch). The busy timeout is
/// left at 0: the caller sets it back once it holds or gave up the lock.
fn retry_while_locked<T>(
    conn: &Connection,
    wait: LockWait,
    mut attempt: impl FnMut() -> Result<T, spin_sdk::sqlite::Error>,
) -> Result<T, spin_sdk::sqlite::Error> {
    set_busy_timeout(conn, 0);
    let start = std::time::Instant::now();
    let mut tries = 0;
    loop {
        match attempt() {
            Err(e) if is_locked(&e) && start.elapsed() < wait.deadline => {
                std::thread::sleep(wait.pause(tries));
                tries += 1;
            }
            out => return out,
        }
    }
}

/// [`retry_while_locked`] for a step that ends holding no lock.
fn with_lock_wait<T>(
    conn: &Connection,
    attempt: impl FnMut() -> Result<T, spin_sdk::sqlite::Error>,
) -> Result<T, spin_sdk::sqlite::Error> {
    let out = retry_while_locked(conn, LockWait::REQUEST, attempt);
    set_busy_timeout(conn, BUSY_TIMEOUT_MS);
    out
}

/// The busy timeout Spin's connections start with (rusqlite's default), which the app keeps for
/// everything but taking the write lock: a read may still meet a lock for a moment (the last
/// connection to a WAL file checkpoints as it closes) and should wait for it, not fail.
const BUSY_TIMEOUT_MS: u32 = 5000;

/// `PRAGMA busy_timeout`. Best effort: a database that refuses it keeps its own waiting.
fn set_busy_timeout(conn: &Connection, ms: u32) {
    let _ = conn.execute(&format!("PRAGMA busy_timeout = {ms}"), &[]);
}

/// A transaction on `conn` (`BEGIN IMMEDIATE`: takes the write lock up front, so two writers
/// never both read then deadlock on upgrade). Rolled back on drop unless committed, so an early
/// return never leaves the connection inside a transaction.
pub struct Tx<'c> {
    conn: &'c Connection,
    open: bool,
}

impl<'c> Tx<'c> {
    /// `BEGIN IMMEDIATE`, waiting for the write lock as [`LockWait::REQUEST`] says.
    pub fn begin(conn: &'c Connection) -> anyhow::Result<Self> {
        Self::begin_with(conn, LockWait::REQUEST)
    }

    /// `BEGIN IMMEDIATE`, waiting for the write lock as `wait` says (SQLite's own busy handler
    /// is off meanwhile, and set back once the lock is taken or given up).
    pub fn begin_with(conn: &'c Connection, wait: LockWait) -> anyhow::Result<Self> {
        if let Err(e) = retry_while_locked(conn, wait, || conn.execute("BEGIN IMMEDIATE", &[])) {
            set_busy_timeout(conn, BUSY_TIMEOUT_MS);
            return Err(e.into());
        }
        Ok(Tx { conn, open: true })
    }

    pub fn commit(mut self) -> anyhow::Result<()> {
        self.open = false;
        let committed = self.conn.execute("COMMIT", &[]);
        if committed.is_err() {
            let _ = self.conn.execute("ROLLBACK", &[]);
        }
        self.restore_busy_timeout();
        Ok(committed.map(|_| ())?)
    }

    pub fn rollback(mut self) {
        self.open = false;
        let _ = self.conn.execute("ROLLBACK", &[]);
        self.restore_busy_timeout();
    }

    /// Ends a transaction that wrote nothing and answers `value`, the decision read inside it.
    /// The end is checked: a host that has not made what the transaction read durable yet
    /// (spin-host's group commit) answers the rollback only then, and fails it if that write
    /// is lost, so the decision is never answered from data that did not survive.
    pub fn end<T>(mut self, value: T) -> anyhow::Result<T> {
        self.open = false;
        let ended = self.conn.execute("ROLLBACK", &[]);
        self.restore_busy_timeout();
        ended?;
        Ok(value)
    }

    /// Reads after the transaction wait for a lock as usual again. Set once the transaction has
    /// ended, never inside it: a statement inside a write transaction in WAL mode never waits.
    fn restore_busy_timeout(&self) {
        set_busy_timeout(self.conn, BUSY_TIMEOUT_MS);
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute("ROLLBACK", &[]);
            self.restore_busy_timeout();
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
    open_migrated_reading(label, component, migrations, None).map(|(conn, _)| conn)
}

/// [`open_migrated`], answering `extra` as [`migrate_reading`] does.
pub fn open_migrated_reading(
    label: &str,
    component: &str,
    migrations: &[Migration],
    extra: Option<&str>,
) -> Result<(Connection, Option<i64>), crate::Problem> {
    let conn = Connection::open(label).map_err(|e| unavailable(component, "open database", e))?;
    let value = migrate_reading(&conn, component, migrations, extra)
        .map_err(|e| unavailable(component, "migrate database", e))?;
    Ok((conn, value))
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
    fn the_pause_shrinks_from_first_to_floor() {
        let w = LockWait::REQUEST;
        let ms = std::time::Duration::from_millis;
        assert_eq!(
            w.base(0),
            ms(4),
            "a writer that just arrived pauses longest"
        );
        assert_eq!(w.base(1), ms(2));
        assert_eq!(w.base(2), ms(1));
        assert_eq!(w.base(6), w.floor, "4 ms / 64 is below the floor");
        assert_eq!(
            w.base(u32::MAX),
            w.floor,
            "no overflow however long it waited"
        );
    }

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
