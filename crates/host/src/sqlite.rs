//! SQLite (Spin's `factor-sqlite` + `sqlite-inproc`): `fermyon:spin/sqlite@2.0.0` and
//! `spin:sqlite/sqlite@3.0.0`.
//!
//! Each opened guest `connection` owns one rusqlite connection for its whole life, so a
//! transaction can span several `execute` calls (`BEGIN` ... `COMMIT`) exactly as in Spin.
//! Connections to file databases are pooled: when the guest drops a connection that is not inside
//! a transaction (autocommit), it goes back to an idle list and the next `open` reuses it, which
//! saves the open + PRAGMA cost without changing what a guest can observe: a connection inside a
//! transaction, holding TEMP tables/views/triggers, or on which the guest set a pragma or
//! attached a database, is closed instead of pooled, and the next guest's `last-insert-rowid`
//! and `changes` start at 0.
//! Every connection uses `synchronous=FULL` (see [`synchronous_pragma`]) and waits up to 5 s
//! for the write lock; ATTACH of other files is denied, as in Spin. The journal mode is the
//! file's own, as in Spin (a new file is in rollback-journal mode): an app that wants WAL sets it
//! (the shop's migrations do). A guest's `PRAGMA busy_timeout = N` applies to its connection
//! (the wait for another process's lock) and is undone when the connection is pooled, so it
//! does not keep the connection out of the pool or out of commit groups.
//!
//! Waiting for the write lock: within this process, writers to one file queue on an async
//! first-come-first-served gate ([`WriterGate`]) taken by the statement that would take SQLite's
//! write lock (`BEGIN IMMEDIATE`/`EXCLUSIVE` or any statement that is not read-only) and given
//! back when the connection is in autocommit again (commit, rollback, or the end of a
//! single-statement write). A waiting guest parks its task instead of a thread, and the next
//! writer starts the moment the lock is handed on. SQLite's own locking still decides: the gate
//! only orders this process's writers, and another process's writer is waited for by
//! [`busy_wait`]. What a guest can observe is unchanged: one writer at a time, `BEGIN IMMEDIATE`
//! waits up to 5 s, then the statement fails with "database is locked".
//!
//! Group commit ([`group_commit`]): a `BEGIN IMMEDIATE`/`EXCLUSIVE` transaction runs as a
//! savepoint in a transaction shared by this process's writers of the file, on a writer
//! connection of the host's, and its `COMMIT` answers once that shared transaction is committed:
//! writers that queued meanwhile share one commit (one fsync). Atomicity, isolation and
//! durability as the guest sees them are unchanged; see the module for why and how.
//! `group_commit = false` in the database's `[sqlite_database.<label>]` turns it off (a key only
//! this host knows, `runtime_config`).
//!
//! Statements run on the calling worker thread; only those that may wait (a commit, which
//! fsyncs, an autocommit write, `BEGIN IMMEDIATE`, which may wait for another process's writer)
//! run on tokio's blocking pool, the guest's task parked meanwhile. Opening a new file and
//! closing a connection inside a transaction use `block_in_place`. Measured in
//! docs/benchmarks.md: every statement in `block_in_place` cost a third of the throughput of
//! concurrent order creation in thread hand-offs.
//! In-memory databases (`type = "spin"` without `path`) are fresh per connection, as in Spin.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use rusqlite::types::{ToSqlOutput, Value as RValue, ValueRef};
use rusqlite::Connection;
use wasmtime::component::{HasSelf, Linker, Resource};

use crate::bindings::fermyon::spin2_0_0::sqlite as v2;
use crate::bindings::spin::sqlite::sqlite as v3;
use crate::capability::ConfigureAppContext;
use crate::runtime_config::RuntimeConfig;
use crate::state::InstanceState;

mod group_commit;
use group_commit::{Turn, Writer};

/// Maximum idle pooled connections per database.
const MAX_IDLE: usize = 16;

/// Host-side value (shared by both interface versions).
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// INTEGER.
    Integer(i64),
    /// REAL.
    Real(f64),
    /// TEXT.
    Text(String),
    /// BLOB.
    Blob(Vec<u8>),
    /// NULL.
    Null,
}

/// Host-side error (shared by both interface versions).
#[derive(Debug, Clone, PartialEq)]
pub enum SqlError {
    /// Label not configured.
    NoSuchDatabase,
    /// Label not granted.
    AccessDenied,
    /// The connection is unusable.
    InvalidConnection,
    /// SQLITE_FULL.
    DatabaseFull,
    /// Anything else.
    Io(String),
}

/// Query output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SqlOutput {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<SqlValue>>,
}

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            SqlValue::Integer(i) => ToSqlOutput::Owned(RValue::Integer(*i)),
            SqlValue::Real(f) => ToSqlOutput::Owned(RValue::Real(*f)),
            SqlValue::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            SqlValue::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            SqlValue::Null => ToSqlOutput::Owned(RValue::Null),
        })
    }
}

fn io_err(e: rusqlite::Error) -> SqlError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        if f.code == rusqlite::ErrorCode::DiskFull {
            return SqlError::DatabaseFull;
        }
    }
    SqlError::Io(e.to_string())
}

/// Runs one statement with parameters; returns columns and rows (empty for non-queries).
pub fn execute_on(
    conn: &Connection,
    sql: &str,
    params: &[SqlValue],
) -> std::result::Result<SqlOutput, SqlError> {
    let mut stmt = conn.prepare_cached(sql).map_err(io_err)?;
    let columns: Vec<String> = stmt
        .column_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    let ncols = columns.len();
    let mut rows_iter = stmt
        .query(rusqlite::params_from_iter(params.iter()))
        .map_err(io_err)?;
    let mut rows = Vec::new();
    while let Some(row) = rows_iter.next().map_err(io_err)? {
        let mut values = Vec::with_capacity(ncols);
        for i in 0..ncols {
            let v = match row.get_ref(i).map_err(io_err)? {
                ValueRef::Null => SqlValue::Null,
                ValueRef::Integer(i) => SqlValue::Integer(i),
                ValueRef::Real(f) => SqlValue::Real(f),
                ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
            };
            values.push(v);
        }
        rows.push(values);
    }
    Ok(SqlOutput { columns, rows })
}

/// One configured database.
pub struct Database {
    path: Option<PathBuf>,
    idle: Mutex<Vec<Connection>>,
    writer: Arc<Writer>,
    /// Write transactions join commit groups (`group_commit` in the runtime config).
    group_commit: bool,
}

/// A statement inside a commit-group member's transaction.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Control {
    Commit,
    Rollback,
    Other,
}

/// What running a statement does to the write lock and to the thread that runs it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct StatementKind {
    /// It takes (or needs) the file's write lock.
    writes: bool,
    /// It may wait: on the disk (a commit's fsync, a write outside a transaction) or on
    /// another process's write lock (`BEGIN IMMEDIATE`).
    may_block: bool,
}

impl StatementKind {
    /// The statement without its leading comments and whitespace.
    fn after_comments(sql: &str) -> &str {
        let mut rest = sql.trim_start();
        loop {
            if let Some(after) = rest.strip_prefix("--") {
                rest = after.split_once('\n').map_or("", |(_, r)| r).trim_start();
            } else if let Some(after) = rest.strip_prefix("/*") {
                rest = after.split_once("*/").map_or("", |(_, r)| r).trim_start();
            } else {
                return rest;
            }
        }
    }

    /// The statement's first three words, upper-cased, after leading comments and whitespace.
    fn head(sql: &str) -> Vec<String> {
        let rest = Self::after_comments(sql);
        let words = rest.split(|c: char| c.is_whitespace() || c == ';');
        let words = words.filter(|w| !w.is_empty()).take(3);
        words.map(str::to_ascii_uppercase).collect()
    }

    /// What a statement inside a group member's transaction is: its end, or anything else. Only
    /// the plain forms end it here (`COMMIT`, `END`, `ROLLBACK`, with `TRANSACTION` and comments
    /// allowed); any other statement that would end a transaction is refused in a member (see
    /// `group_commit`), never run against the group.
    fn control(sql: &str) -> Control {
        let Some(words) = Self::words_without_comments(sql) else {
            return Control::Other;
        };
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        match words.as_slice() {
            ["COMMIT" | "END"] | ["COMMIT" | "END", "TRANSACTION"] => Control::Commit,
            ["ROLLBACK"] | ["ROLLBACK", "TRANSACTION"] => Control::Rollback,
            _ => Control::Other,
        }
    }

    /// The upper-cased words of a statement made of words only (comments, whitespace and a
    /// final `;` left out); `None` when it has anything else (a literal, a second statement).
    fn words_without_comments(sql: &str) -> Option<Vec<String>> {
        let (mut words, mut rest) = (Vec::new(), sql);
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix("--") {
                rest = after.split_once('\n').map_or("", |(_, r)| r);
            } else if let Some(after) = rest.strip_prefix("/*") {
                rest = after.split_once("*/").map_or("", |(_, r)| r);
            } else if let Some(after) = rest.strip_prefix(';') {
                let tail = after.trim();
                return (tail.is_empty()).then_some(words);
            } else if rest.is_empty() {
                return Some(words);
            } else {
                let end = rest
                    .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                    .unwrap_or(rest.len());
                if end == 0 {
                    return None;
                }
                words.push(rest[..end].to_ascii_uppercase());
                rest = &rest[end..];
            }
        }
    }

    /// Gives the connection state of its own that another connection would not have (a pragma,
    /// an attached database, TEMP objects): its transactions cannot join a commit group.
    fn keeps_local_state(sql: &str) -> bool {
        let words = Self::head(sql);
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        match words.as_slice() {
            ["PRAGMA", ..] => Self::sets_pragma(sql),
            ["ATTACH", ..] => true,
            ["CREATE", "TEMP" | "TEMPORARY", ..] => true,
            ["CREATE", ..] => sql.to_ascii_lowercase().contains("temp."),
            _ => false,
        }
    }

    /// A `PRAGMA` statement with an argument, other than one that only reads
    /// (`table_info(t)`): it may set the connection's state. Without one, it only reads.
    fn sets_pragma(sql: &str) -> bool {
        let rest = Self::after_comments(sql)
            .get("PRAGMA".len()..)
            .unwrap_or("");
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == ' '))
            .unwrap_or(rest.len());
        let (name, argument) = rest.split_at(name_end);
        if argument
            .trim_matches(|c: char| c == ';' || c.is_whitespace())
            .is_empty()
        {
            return false;
        }
        let name = name.rsplit('.').next().unwrap_or("").trim();
        !group_commit::READ_ONLY_PRAGMAS.contains(&name.to_ascii_lowercase().as_str())
    }

    /// `PRAGMA busy_timeout = N`: the timeout it sets, in ms (any other form is a pragma like
    /// the others: the connection then keeps state of its own).
    fn sets_busy_timeout(sql: &str) -> Option<u64> {
        let words = Self::words_without_comments(sql.split_once('=').map_or(sql, |(l, _)| l))?;
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        if words.as_slice() != ["PRAGMA", "BUSY_TIMEOUT"] {
            return None;
        }
        let value = sql.split_once('=')?.1;
        let value = value.trim().trim_end_matches(';').trim();
        value.parse().ok()
    }

    /// `BEGIN IMMEDIATE` or `BEGIN EXCLUSIVE`: takes the write lock up front.
    fn begins_writing(sql: &str) -> bool {
        let words = Self::head(sql);
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        matches!(words.as_slice(), ["BEGIN", "IMMEDIATE" | "EXCLUSIVE", ..])
    }

    fn of(conn: &Connection, sql: &str) -> Self {
        let words = Self::head(sql);
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let (writes, may_block) = match words.as_slice() {
            // May wait for another process's writer (the gate only orders this one's).
            ["BEGIN", "IMMEDIATE" | "EXCLUSIVE"] => (true, true),
            ["COMMIT" | "END", ..] => (false, true),
            // Transaction control is "read-only" to SQLite; anything else that is not is a
            // write. A statement that does not prepare fails in `execute_on` as before.
            _ => {
                let writes = conn.prepare_cached(sql).is_ok_and(|s| !s.readonly());
                (writes, writes && conn.is_autocommit())
            }
        };
        StatementKind { writes, may_block }
    }
}

impl Database {
    fn new_connection(&self) -> std::result::Result<Connection, SqlError> {
        let conn = match &self.path {
            Some(p) => Connection::open(p),
            None => Connection::open_in_memory(),
        }
        .map_err(io_err)?;
        conn.busy_handler(Some(busy_wait)).map_err(io_err)?;
        // The journal mode is the file's, as in Spin: a new file is in rollback-journal mode
        // until an app switches it (the shop's migrations switch theirs to WAL).
        if self.path.is_some() {
            conn.execute_batch(synchronous_pragma()).map_err(io_err)?;
        }
        conn.authorizer(Some(|ctx: rusqlite::hooks::AuthContext<'_>| {
            use rusqlite::hooks::{AuthAction, Authorization};
            match ctx.action {
                AuthAction::Attach { filename } if !matches!(filename, "" | ":memory:") => {
                    Authorization::Deny
                }
                _ => Authorization::Allow,
            }
        }));
        Ok(conn)
    }

    /// A pooled connection, if one is idle (only file databases are pooled).
    fn pooled(&self) -> Option<Connection> {
        self.idle.lock().ok().and_then(|mut idle| idle.pop())
    }

    /// Puts a guest's connection back in the pool if the next guest would find it as a fresh
    /// one: file-backed, no open transaction, and nothing of the guest's own on it (`local_state`:
    /// it ran a pragma, attached a database or created TEMP objects). Any other is closed: a
    /// pragma a guest set (`query_only`, `foreign_keys`, `synchronous`, ...) or a database it
    /// attached must not carry over to another guest, as in Spin, where each is fresh.
    fn checkin(&self, conn: Connection, local_state: bool) {
        if self.path.is_none() || local_state || !conn.is_autocommit() {
            return;
        }
        // A guest's `PRAGMA busy_timeout` replaced the host's handler: put it back.
        if conn.busy_handler(Some(busy_wait)).is_err() {
            return;
        }
        let temp_objects: rusqlite::Result<i64> =
            conn.query_row("SELECT count(*) FROM temp.sqlite_master", [], |r| r.get(0));
        if !matches!(temp_objects, Ok(0)) {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
    }
}

/// Checks every component's `sqlite_databases` against the databases the runtime config defines
/// (reporting every undefined label at once) and returns the labels each component may open.
pub fn configure_app(ctx: &ConfigureAppContext<'_>) -> Result<HashMap<String, Arc<[String]>>> {
    ctx.per_component(|id, c| {
        let mut problems = crate::capability::Problems::default();
        for label in &c.sqlite_databases {
            if !ctx.runtime_config.has_sqlite_database(label) {
                problems.push(anyhow::anyhow!("component {id:?} uses SQLite database {label:?}, which is not defined: only \"default\" exists unless a runtime config file declares [sqlite_database.{label}]"));
            }
        }
        problems.finish_with(c.sqlite_databases.as_slice().into())
    })
}

/// Every configured database.
pub struct SqliteService {
    dbs: HashMap<String, Arc<Database>>,
}

impl SqliteService {
    /// Prepares the configured databases (directories are created now, files on first open).
    pub fn new(state_dir: &Path, rc: &RuntimeConfig) -> Result<SqliteService> {
        let mut dbs = HashMap::new();
        for (label, cfg) in rc.sqlite_dbs(state_dir) {
            if let Some(p) = &cfg.path {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).with_context(|| {
                        format!(
                            "SQLite database {label:?}: cannot create {}",
                            parent.display()
                        )
                    })?;
                }
            }
            dbs.insert(
                label,
                Arc::new(Database {
                    path: cfg.path,
                    idle: Mutex::new(Vec::new()),
                    writer: Writer::new(cfg.commit.write_turn_deadline),
                    group_commit: cfg.commit.group_commit,
                }),
            );
        }
        Ok(SqliteService { dbs })
    }
}

/// One instance's SQLite state: the app's databases and the labels this component may open.
pub struct SqliteInstance {
    service: Arc<SqliteService>,
    allowed: Arc<[String]>,
}

impl SqliteInstance {
    /// State for an instance of a component granted `allowed` (its `sqlite_databases`).
    pub fn new(service: Arc<SqliteService>, allowed: Arc<[String]>) -> Self {
        SqliteInstance { service, allowed }
    }

    fn open(&self, label: &str) -> std::result::Result<SqliteConnection, SqlError> {
        if !self.allowed.iter().any(|l| l == label) {
            return Err(SqlError::AccessDenied);
        }
        let db = self
            .service
            .dbs
            .get(label)
            .ok_or(SqlError::NoSuchDatabase)?
            .clone();
        let conn = match db.pooled() {
            Some(c) => c,
            None => tokio::task::block_in_place(|| db.new_connection())?,
        };
        Ok(SqliteConnection::new(db, conn))
    }
}

/// A guest connection: one rusqlite connection for its whole life, except that its write
/// transactions run in a commit group on the file's writer connection (`group_commit`).
pub struct SqliteConnection {
    db: Arc<Database>,
    conn: Option<Connection>,
    /// This connection's turn at the gate while it writes on its own connection, held from
    /// the statement that takes the write lock until the connection is in autocommit again.
    writing: Option<Turn>,
    /// This connection's turn while its transaction is a member of a commit group.
    grouped: Option<Turn>,
    /// It ran a statement that gives it state of its own: it never joins a group.
    local_state: bool,
    /// The guest's `PRAGMA busy_timeout`, in ms, if it set one: how long this connection waits
    /// for another process's lock (not for this process's writers, who queue at the gate).
    busy_timeout_ms: Option<u64>,
    /// `last_insert_rowid` and `changes` after its last statement that changed rows in a
    /// group, and its own connection's `total_changes` then: they hold until the own
    /// connection changes rows.
    group_last: Option<(i64, u64, u64)>,
    /// Its own connection's `total_changes` when it was opened: until it moves, this guest has
    /// changed nothing, and a pooled connection's last rowid and changes were another guest's.
    opened_total: u64,
}

impl SqliteConnection {
    fn new(db: Arc<Database>, conn: Connection) -> Self {
        let opened_total = conn.total_changes();
        SqliteConnection {
            db,
            conn: Some(conn),
            writing: None,
            grouped: None,
            local_state: false,
            busy_timeout_ms: None,
            group_last: None,
            opened_total,
        }
    }

    async fn execute(
        &mut self,
        sql: &str,
        params: &[SqlValue],
    ) -> std::result::Result<SqlOutput, SqlError> {
        if self.grouped.is_some() {
            return self.execute_in_group(sql, params).await;
        }
        let conn = self.conn.as_ref().ok_or(SqlError::InvalidConnection)?;
        if let Some(ms) = StatementKind::sets_busy_timeout(sql) {
            // A setting the host puts back when the connection is pooled (`checkin`), so it
            // is not state of the guest's own: the connection still joins commit groups.
            let out = execute_on(conn, sql, params);
            if out.is_ok() {
                self.busy_timeout_ms = Some(ms);
            }
            return out;
        }
        self.local_state |= StatementKind::keeps_local_state(sql);
        if self.db.path.is_some()
            && self.db.group_commit
            && !self.local_state
            && conn.is_autocommit()
            && StatementKind::begins_writing(sql)
        {
            return self.join_group().await;
        }
        let kind = StatementKind::of(conn, sql);
        if kind.writes && self.writing.is_none() && self.db.path.is_some() {
            let turn = self.db.writer.enter().await?;
            self.writing = Some(Writer::flushed(turn).await);
        }
        let out = match kind.may_block {
            true => match self.try_without_waiting(sql, params) {
                Ok(Some(out)) => out,
                Ok(None) => return self.execute_on_blocking_pool(sql, params).await?,
                Err(e) => Err(e),
            },
            false => execute_on(
                self.conn.as_ref().ok_or(SqlError::InvalidConnection)?,
                sql,
                params,
            ),
        };
        let conn = self.conn.as_ref().ok_or(SqlError::InvalidConnection)?;
        if conn.is_autocommit() {
            self.writing = None;
        }
        out
    }

    /// `BEGIN IMMEDIATE`/`EXCLUSIVE`: this connection's transaction joins the file's commit
    /// group (waiting for its turn at the gate first).
    async fn join_group(&mut self) -> std::result::Result<SqlOutput, SqlError> {
        let turn = self.db.writer.enter().await?;
        let db = self.db.clone();
        let turn = Writer::begin(turn, move || db.new_connection()).await?;
        self.grouped = Some(turn);
        Ok(SqlOutput::default())
    }

    /// A statement of a transaction in a commit group: its end, or one run on the group's
    /// connection.
    async fn execute_in_group(
        &mut self,
        sql: &str,
        params: &[SqlValue],
    ) -> std::result::Result<SqlOutput, SqlError> {
        let turn = self.grouped.take().ok_or(SqlError::InvalidConnection)?;
        match StatementKind::control(sql) {
            Control::Commit => Writer::commit(turn).await.map(|()| SqlOutput::default()),
            Control::Rollback => Writer::rollback(turn).await.map(|()| SqlOutput::default()),
            Control::Other => {
                let ran = Writer::run(&turn, sql, params);
                if let (Some((rowid, changes)), Some(own)) = (ran.changed, self.conn.as_ref()) {
                    self.group_last = Some((rowid, changes, own.total_changes()));
                }
                if !ran.ended {
                    self.grouped = Some(turn);
                }
                ran.out
            }
        }
    }

    /// `last_insert_rowid` and `changes` as this guest connection sees them: of its last
    /// statement that changed rows, on its own connection or in a group.
    fn last_change(&self) -> (i64, u64) {
        let Some(own) = self.conn.as_ref() else {
            return (0, 0);
        };
        match self.group_last {
            Some((rowid, changes, total)) if own.total_changes() == total => (rowid, changes),
            _ if own.total_changes() == self.opened_total => (0, 0),
            _ => (own.last_insert_rowid(), own.changes()),
        }
    }

    /// `BEGIN IMMEDIATE`/`EXCLUSIVE` runs here without waiting: the gate already made this
    /// connection the process's only writer, so it only finds the lock taken when another
    /// process holds it (`None`: then it waits on the blocking pool). Anything else that may
    /// wait (a commit's fsync) goes to the pool right away.
    fn try_without_waiting(
        &mut self,
        sql: &str,
        params: &[SqlValue],
    ) -> std::result::Result<Option<std::result::Result<SqlOutput, SqlError>>, SqlError> {
        let conn = self.conn.as_ref().ok_or(SqlError::InvalidConnection)?;
        if !conn.is_autocommit() || !StatementKind::begins_writing(sql) {
            return Ok(None);
        }
        conn.busy_handler(None).map_err(io_err)?;
        let out = execute_on(conn, sql, params);
        match self.busy_timeout_ms {
            Some(ms) => conn.busy_timeout(std::time::Duration::from_millis(ms)),
            None => conn.busy_handler(Some(busy_wait)),
        }
        .map_err(io_err)?;
        Ok(match out {
            Err(SqlError::Io(e)) if e.contains("locked") || e.contains("busy") => None,
            out => Some(out),
        })
    }

    /// Runs a statement that may wait (see [`StatementKind::may_block`]) on tokio's blocking
    /// pool, with the connection (and this connection's turn at the gate) moved there and
    /// back, so the worker thread goes on with other requests meanwhile. The turn is given back
    /// on that thread as soon as the statement ends the transaction, not when this task is next
    /// polled: the next writer does not wait for this guest to be scheduled again. If this
    /// future is dropped before the statement is done, the connection is closed then (a
    /// transaction left open is rolled back) and this guest connection is invalid.
    async fn execute_on_blocking_pool(
        &mut self,
        sql: &str,
        params: &[SqlValue],
    ) -> std::result::Result<std::result::Result<SqlOutput, SqlError>, SqlError> {
        let conn = self.conn.take().ok_or(SqlError::InvalidConnection)?;
        let (sql, params, mut writing) = (sql.to_owned(), params.to_vec(), self.writing.take());
        let task = tokio::task::spawn_blocking(move || {
            let out = execute_on(&conn, &sql, &params);
            if conn.is_autocommit() {
                writing = None;
            }
            (conn, writing, out)
        });
        let (conn, writing, out) = task
            .await
            .map_err(|e| SqlError::Io(format!("statement did not finish: {e}")))?;
        (self.conn, self.writing) = (Some(conn), writing);
        Ok(out)
    }
}

impl SqliteConnection {
    /// The guest drops the connection: inside a group's transaction, that ends it as a
    /// `ROLLBACK` does, answered once what it could see is durable.
    async fn close(mut self) {
        if let Some(turn) = self.grouped.take() {
            let _ = Writer::rollback(turn).await;
        }
        if self.conn.as_ref().is_some_and(Connection::is_autocommit) {
            drop(self);
        } else {
            // Closing inside a transaction rolls it back, which may wait on the disk.
            tokio::task::block_in_place(move || drop(self));
        }
    }
}

impl Drop for SqliteConnection {
    fn drop(&mut self) {
        // Inside a group's transaction (its guest went away): undo its own savepoint only.
        if let Some(turn) = self.grouped.take() {
            Writer::rollback_now(turn);
        }
        if let Some(conn) = self.conn.take() {
            self.db.checkin(conn, self.local_state);
        }
        // `writing` is released after this body, once the connection (and its transaction) is
        // back in the pool or closed.
    }
}

/// Links both SQLite interface versions.
pub fn add_to_linker(linker: &mut Linker<InstanceState>) -> Result<()> {
    type D = HasSelf<InstanceState>;
    v2::add_to_linker::<_, D>(linker, |s| s)?;
    v3::add_to_linker::<_, D>(linker, |s| s)?;
    Ok(())
}

macro_rules! impl_version {
    ($m:ident) => {
        impl From<SqlError> for $m::Error {
            fn from(e: SqlError) -> Self {
                match e {
                    SqlError::NoSuchDatabase => $m::Error::NoSuchDatabase,
                    SqlError::AccessDenied => $m::Error::AccessDenied,
                    SqlError::InvalidConnection => $m::Error::InvalidConnection,
                    SqlError::DatabaseFull => $m::Error::DatabaseFull,
                    SqlError::Io(s) => $m::Error::Io(s),
                }
            }
        }

        impl From<$m::Value> for SqlValue {
            fn from(v: $m::Value) -> Self {
                match v {
                    $m::Value::Integer(i) => SqlValue::Integer(i),
                    $m::Value::Real(f) => SqlValue::Real(f),
                    $m::Value::Text(s) => SqlValue::Text(s),
                    $m::Value::Blob(b) => SqlValue::Blob(b),
                    $m::Value::Null => SqlValue::Null,
                }
            }
        }

        impl From<SqlValue> for $m::Value {
            fn from(v: SqlValue) -> Self {
                match v {
                    SqlValue::Integer(i) => $m::Value::Integer(i),
                    SqlValue::Real(f) => $m::Value::Real(f),
                    SqlValue::Text(s) => $m::Value::Text(s),
                    SqlValue::Blob(b) => $m::Value::Blob(b),
                    SqlValue::Null => $m::Value::Null,
                }
            }
        }

        impl From<SqlOutput> for $m::QueryResult {
            fn from(o: SqlOutput) -> Self {
                $m::QueryResult {
                    columns: o.columns,
                    rows: o
                        .rows
                        .into_iter()
                        .map(|r| $m::RowResult {
                            values: r.into_iter().map(Into::into).collect(),
                        })
                        .collect(),
                }
            }
        }

        impl $m::Host for InstanceState {}
    };
}

impl_version!(v2);
impl_version!(v3);

/// `open` for both interface versions: only the error type differs.
fn open_conn<E: From<SqlError>>(
    state: &mut InstanceState,
    database: &str,
) -> wasmtime::Result<std::result::Result<Resource<SqliteConnection>, E>> {
    match state.sqlite.open(database) {
        Ok(c) => Ok(Ok(state.table.push(c)?)),
        Err(e) => Ok(Err(e.into())),
    }
}

/// `execute` for both interface versions: the version's values convert to [`SqlValue`] and the
/// result back through the `From` impls of `impl_version!`, so one body serves both.
async fn execute_conn<V: Into<SqlValue>, R: From<SqlOutput>, E: From<SqlError>>(
    state: &mut InstanceState,
    conn: &Resource<SqliteConnection>,
    statement: &str,
    parameters: Vec<V>,
) -> wasmtime::Result<std::result::Result<R, E>> {
    let params: Vec<SqlValue> = parameters.into_iter().map(Into::into).collect();
    let c = state.table.get_mut(conn)?;
    Ok(c.execute(statement, &params)
        .await
        .map(Into::into)
        .map_err(Into::into))
}

/// `drop` for both interface versions ([`SqliteConnection::close`]).
async fn drop_conn(
    state: &mut InstanceState,
    conn: Resource<SqliteConnection>,
) -> wasmtime::Result<()> {
    state.table.delete(conn)?.close().await;
    Ok(())
}

impl v2::HostConnection for InstanceState {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<std::result::Result<Resource<SqliteConnection>, v2::Error>> {
        open_conn(self, &database)
    }

    async fn execute(
        &mut self,
        conn: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<v2::Value>,
    ) -> wasmtime::Result<std::result::Result<v2::QueryResult, v2::Error>> {
        execute_conn(self, &conn, &statement, parameters).await
    }

    async fn drop(&mut self, conn: Resource<SqliteConnection>) -> wasmtime::Result<()> {
        drop_conn(self, conn).await
    }
}

impl v3::HostConnection for InstanceState {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<std::result::Result<Resource<SqliteConnection>, v3::Error>> {
        open_conn(self, &database)
    }

    async fn execute(
        &mut self,
        conn: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<v3::Value>,
    ) -> wasmtime::Result<std::result::Result<v3::QueryResult, v3::Error>> {
        execute_conn(self, &conn, &statement, parameters).await
    }

    async fn last_insert_rowid(
        &mut self,
        conn: Resource<SqliteConnection>,
    ) -> wasmtime::Result<i64> {
        Ok(self.table.get(&conn)?.last_change().0)
    }

    async fn changes(&mut self, conn: Resource<SqliteConnection>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&conn)?.last_change().1)
    }

    async fn drop(&mut self, conn: Resource<SqliteConnection>) -> wasmtime::Result<()> {
        drop_conn(self, conn).await
    }
}

/// How long a writer waits for the database lock before the guest gets `SQLITE_BUSY`.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How often a waiting writer tries the lock again.
const BUSY_POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// Busy handler for every SQLite file the host opens (databases and key-value): wait up to
/// [`BUSY_WAIT`] for the lock, trying again every [`BUSY_POLL`].
///
/// SQLite's own `busy_timeout` handler backs off to 100 ms sleeps, so in a queue of writers a
/// request slept long after the lock was free: concurrent order creation had a p99 of ~0.6 s
/// with it and ~90 ms with a fixed 1 ms poll, at the same throughput (docs/benchmarks.md). A
/// shorter poll (0.2 ms) cost a third of the throughput on two cores in wake-ups.
pub(crate) fn busy_wait(prior_calls: i32) -> bool {
    let waited = BUSY_POLL * u32::try_from(prior_calls).unwrap_or(0);
    if waited >= BUSY_WAIT {
        return false;
    }
    std::thread::sleep(BUSY_POLL);
    true
}

/// The `synchronous` pragma for every SQLite file the host opens (databases and key-value).
///
/// `FULL` by default: with WAL, a commit is then durable across an OS crash or power loss, not
/// only across a process crash. An order or a payment the client was told about must not vanish,
/// so durability wins over the ~5x write throughput of `NORMAL` (measured in
/// docs/host-performance.md). `SPIN_HOST_SQLITE_SYNCHRONOUS=normal` opts into `NORMAL` for
/// benchmarks or throw-away data.
pub(crate) fn synchronous_pragma() -> &'static str {
    static PRAGMA: OnceLock<&'static str> = OnceLock::new();
    PRAGMA.get_or_init(|| {
        match std::env::var("SPIN_HOST_SQLITE_SYNCHRONOUS")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            Ok("normal") => "PRAGMA synchronous=NORMAL",
            _ => "PRAGMA synchronous=FULL",
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_type_round_trips() {
        let conn = Connection::open_in_memory().expect("open");
        execute_on(
            &conn,
            "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n)",
            &[],
        )
        .expect("create");
        let params = vec![
            SqlValue::Integer(i64::MIN),
            SqlValue::Real(1.5),
            SqlValue::Text("héllo".into()),
            SqlValue::Blob(vec![0, 255]),
            SqlValue::Null,
        ];
        let out =
            execute_on(&conn, "INSERT INTO t VALUES (?, ?, ?, ?, ?)", &params).expect("insert");
        assert!(out.columns.is_empty() && out.rows.is_empty());
        let out = execute_on(&conn, "SELECT i, r, s, b, n FROM t", &[]).expect("select");
        assert_eq!(out.columns, vec!["i", "r", "s", "b", "n"]);
        assert_eq!(out.rows, vec![params]);
    }

    #[test]
    fn transaction_spans_calls_on_one_connection() {
        let conn = Connection::open_in_memory().expect("open");
        execute_on(&conn, "CREATE TABLE t (x)", &[]).expect("create");
        execute_on(&conn, "BEGIN", &[]).expect("begin");
        execute_on(&conn, "INSERT INTO t VALUES (1)", &[]).expect("insert");
        assert!(!conn.is_autocommit());
        execute_on(&conn, "ROLLBACK", &[]).expect("rollback");
        let out = execute_on(&conn, "SELECT count(*) FROM t", &[]).expect("count");
        assert_eq!(out.rows, vec![vec![SqlValue::Integer(0)]]);
    }

    fn file_database(dir: &Path) -> Arc<Database> {
        file_database_with(dir, std::time::Duration::from_secs(60))
    }

    /// A file database whose group members may hold the write turn for `deadline`.
    fn file_database_with(dir: &Path, deadline: std::time::Duration) -> Arc<Database> {
        Arc::new(Database {
            path: Some(dir.join("gate.db")),
            idle: Mutex::new(Vec::new()),
            writer: Writer::new(deadline),
            group_commit: true,
        })
    }

    fn connect(db: &Arc<Database>) -> SqliteConnection {
        SqliteConnection::new(db.clone(), db.new_connection().expect("open"))
    }

    #[test]
    fn a_guest_busy_timeout_is_told_apart_from_other_pragmas() {
        let of = StatementKind::sets_busy_timeout;
        assert_eq!(of("PRAGMA busy_timeout = 0"), Some(0));
        assert_eq!(of("pragma BUSY_TIMEOUT=5000;"), Some(5000));
        assert_eq!(of("PRAGMA busy_timeout"), None, "a read sets nothing");
        assert_eq!(of("PRAGMA synchronous = OFF"), None);
        assert_eq!(of("PRAGMA busy_timeout = 5; DROP TABLE t"), None);
        assert_eq!(
            of("PRAGMA main.busy_timeout = 5"),
            None,
            "kept as local state"
        );
    }

    #[test]
    fn statements_that_take_the_write_lock_are_told_apart() {
        let conn = Connection::open_in_memory().expect("open");
        execute_on(&conn, "CREATE TABLE t (x)", &[]).expect("create");
        let kind = |sql| StatementKind::of(&conn, sql);
        let (write, read) = (true, false);
        assert_eq!(
            kind(" begin immediate"),
            StatementKind {
                writes: true,
                may_block: true
            }
        );
        assert_eq!(kind("BEGIN EXCLUSIVE TRANSACTION").writes, write);
        let commented = kind("-- why\n/* and how */ BEGIN\n   IMMEDIATE;");
        assert_eq!(
            commented,
            StatementKind {
                writes: true,
                may_block: true
            }
        );
        assert_eq!(
            kind("BEGIN").writes,
            read,
            "deferred: the first write takes the lock"
        );
        assert_eq!(kind("SELECT x FROM t").writes, read);
        let insert = kind("INSERT INTO t VALUES (1)");
        assert!(
            insert.writes && insert.may_block,
            "an autocommit write commits (fsync)"
        );
        assert!(kind("commit").may_block && !kind("commit").writes);
        assert_eq!(kind("SELEC 1").writes, read, "fails later, in execute_on");
        execute_on(&conn, "BEGIN", &[]).expect("begin");
        let in_tx = kind("INSERT INTO t VALUES (1)");
        assert!(
            in_tx.writes && !in_tx.may_block,
            "inside a transaction nothing is synced yet"
        );
    }

    /// The gate queues a second writer while the first holds the lock, instead of failing it or
    /// letting SQLite's busy handler poll, and lets it in once the first commits or goes away
    /// inside its transaction (rolled back).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_writer_waits_for_the_first_to_commit_or_to_go_away() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = file_database(dir.path());
        let (mut a, mut b) = (connect(&db), connect(&db));
        a.execute("CREATE TABLE t (x)", &[]).await.expect("create");
        a.execute("BEGIN IMMEDIATE", &[]).await.expect("a begins");
        a.execute("INSERT INTO t VALUES (1)", &[])
            .await
            .expect("a writes");
        let short = std::time::Duration::from_millis(200);
        let waiting = tokio::time::timeout(short, b.execute("BEGIN IMMEDIATE", &[])).await;
        assert!(waiting.is_err(), "b must wait while a holds the lock");
        a.execute("COMMIT", &[]).await.expect("a commits");
        assert!(
            a.writing.is_none() && a.grouped.is_none(),
            "a gives its turn back on commit"
        );
        b.execute("BEGIN IMMEDIATE", &[]).await.expect("b's turn");
        let seen = b
            .execute("SELECT count(*) FROM t", &[])
            .await
            .expect("read");
        assert_eq!(seen.rows, vec![vec![SqlValue::Integer(1)]]);
        drop(b); // inside its transaction: rolled back, the turn goes on
        let mut c = connect(&db);
        let next = tokio::time::timeout(BUSY_WAIT, c.execute("INSERT INTO t VALUES (2)", &[]));
        next.await.expect("c is let in").expect("c writes");
        assert!(
            c.writing.is_none(),
            "an autocommit write holds the turn for itself only"
        );
    }

    /// A writer outside the gate (another process) holds the lock: `BEGIN IMMEDIATE` does not
    /// fail at once, it waits (on the blocking pool, with the busy handler) and then proceeds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn begin_immediate_waits_for_a_writer_outside_the_gate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = file_database(dir.path());
        let mut ours = connect(&db);
        ours.execute("CREATE TABLE t (x)", &[])
            .await
            .expect("create");
        let other = Connection::open(dir.path().join("gate.db")).expect("open");
        other
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .expect("other");
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            other.execute_batch("COMMIT").expect("other commits");
        });
        ours.execute("BEGIN IMMEDIATE", &[])
            .await
            .expect("waits, then begins");
        let seen = ours
            .execute("SELECT count(*) FROM t", &[])
            .await
            .expect("read");
        assert_eq!(
            seen.rows,
            vec![vec![SqlValue::Integer(1)]],
            "after the other commit"
        );
        ours.execute("COMMIT", &[]).await.expect("commit");
        release.join().expect("thread");
    }

    /// Runs `sql` on `c` in a task of its own (a guest waiting for its turn or its group).
    fn spawn_execute(mut c: SqliteConnection, sql: &'static str) -> Spawned {
        tokio::spawn(async move {
            let out = c.execute(sql, &[]).await;
            (c, out)
        })
    }

    fn count(db: &Arc<Database>, sql: &str) -> i64 {
        let reader = db.new_connection().expect("open");
        reader.query_row(sql, [], |r| r.get(0)).expect("count")
    }

    /// Waits until `n` tasks are queued at the gate.
    async fn queued(db: &Arc<Database>, n: usize) {
        for _ in 0..500 {
            if db.writer.waiting() >= n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        panic!("{n} writers never queued at the gate");
    }

    /// A file with the table `schema` where `a` ran `a_writes` in a transaction and committed
    /// while `b` waited at the gate: `b`'s `BEGIN IMMEDIATE` has answered (it joined a's group)
    /// and a's `COMMIT` runs in `a_commits`.
    struct GroupOfTwo {
        _dir: tempfile::TempDir,
        db: Arc<Database>,
        a_commits: Spawned,
        b: SqliteConnection,
    }

    type Spawned =
        tokio::task::JoinHandle<(SqliteConnection, std::result::Result<SqlOutput, SqlError>)>;

    async fn group_of_two(schema: &str, a_writes: &[&str]) -> GroupOfTwo {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = file_database(dir.path());
        let mut a = connect(&db);
        a.execute(schema, &[]).await.expect("create");
        a.execute("BEGIN IMMEDIATE", &[]).await.expect("a begins");
        for sql in a_writes {
            a.execute(sql, &[]).await.expect("a writes");
        }
        let b_begins = spawn_execute(connect(&db), "BEGIN IMMEDIATE");
        queued(&db, 1).await;
        let a_commits = spawn_execute(a, "COMMIT");
        let (b, began) = b_begins.await.expect("b");
        began.expect("b begins");
        GroupOfTwo {
            _dir: dir,
            db,
            a_commits,
            b,
        }
    }

    /// A writer that commits while another waits hands its turn on and answers only once the
    /// group it started is committed with the next one's transaction: until then, no other
    /// connection sees its row. Both rows are then durable, in one commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_waits_for_its_group_and_is_seen_only_once_the_group_commits() {
        let one = ["INSERT INTO t VALUES (1)"];
        let g = group_of_two("CREATE TABLE t (x)", &one).await;
        let (db, a_commits, mut b) = (g.db, g.a_commits, g.b);
        let inserted = b.execute("INSERT INTO t VALUES (2)", &[]).await;
        inserted.expect("b writes");
        assert_eq!(
            b.last_change(),
            (2, 1),
            "b's own rowid, from the group's connection"
        );
        let seen = b
            .execute("SELECT count(*) FROM t", &[])
            .await
            .expect("read");
        assert_eq!(
            seen.rows,
            vec![vec![SqlValue::Integer(2)]],
            "b sees a's row"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            !a_commits.is_finished(),
            "a answers only once its group commits"
        );
        assert_eq!(
            count(&db, "SELECT count(*) FROM t"),
            0,
            "nothing is seen before"
        );
        b.execute("COMMIT", &[]).await.expect("b commits");
        let (_a, committed) = a_commits.await.expect("a");
        committed.expect("a's commit succeeds with the group");
        assert_eq!(count(&db, "SELECT count(*) FROM t"), 2);
    }

    /// In a group, a member's ROLLBACK, a member dropped inside its transaction and a failed
    /// statement each undo their own work only.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_member_that_rolls_back_or_goes_away_undoes_only_its_own_work() {
        let one = ["INSERT INTO t VALUES (1)"];
        let g = group_of_two("CREATE TABLE t (x UNIQUE)", &one).await;
        let (db, a_commits, mut b) = (g.db, g.a_commits, g.b);
        let c = connect(&db);
        let c_begins = spawn_execute(c, "BEGIN IMMEDIATE");
        queued(&db, 1).await;
        b.execute("INSERT INTO t VALUES (2)", &[]).await.expect("b");
        let duplicate = b.execute("INSERT INTO t VALUES (1)", &[]).await;
        assert!(duplicate.is_err(), "a's row is there: b's statement fails");
        // b saw a's row: its ROLLBACK answers with the group (below).
        let b_rolls_back = spawn_execute(b, "ROLLBACK");
        let (mut c, began) = c_begins.await.expect("c");
        began.expect("c joins the same group");
        c.execute("INSERT INTO t VALUES (3)", &[]).await.expect("c");
        let d = connect(&db);
        let d_begins = spawn_execute(d, "BEGIN IMMEDIATE");
        queued(&db, 1).await;
        drop(c); // inside its transaction
        let (mut d, began) = d_begins.await.expect("d");
        began.expect("d begins");
        d.execute("INSERT INTO t VALUES (4)", &[]).await.expect("d");
        d.execute("COMMIT", &[]).await.expect("d commits");
        a_commits.await.expect("a").1.expect("a commits");
        b_rolls_back
            .await
            .expect("b")
            .1
            .expect("b's rollback answers");
        let rows = db.new_connection().expect("open");
        let mut stmt = rows.prepare("SELECT x FROM t ORDER BY x").expect("prepare");
        let xs: Vec<i64> = stmt
            .query_map([], |r| r.get(0))
            .expect("query")
            .map(|x| x.expect("row"))
            .collect();
        assert_eq!(xs, vec![1, 4], "b rolled back and c went away");
    }

    /// A statement that makes SQLite roll back the whole transaction by itself (here `INSERT OR
    /// ROLLBACK`; a schema that can do it commits each transaction alone, tested below) fails
    /// the group: the member that committed before it is told its commit failed, nothing of the
    /// group is kept, and the file takes writes again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_statement_that_rolls_back_everything_fails_the_whole_group() {
        let one = ["INSERT INTO t VALUES (1)"];
        let g = group_of_two("CREATE TABLE t (x UNIQUE)", &one).await;
        let (db, a_commits, mut b) = (g.db, g.a_commits, g.b);
        let conflict = b.execute("INSERT OR ROLLBACK INTO t VALUES (1)", &[]).await;
        assert!(conflict.is_err(), "the conflict rolls the transaction back");
        assert!(
            b.grouped.is_none(),
            "b's transaction is over, as SQLite ended it"
        );
        let commit = b.execute("COMMIT", &[]).await;
        assert!(commit.is_err(), "b has no transaction to commit any more");
        let (_a, committed) = a_commits.await.expect("a");
        assert!(committed.is_err(), "a's commit fails with its group");
        assert_eq!(count(&db, "SELECT count(*) FROM t"), 0);
        let mut e = connect(&db);
        e.execute("INSERT INTO t VALUES (5)", &[])
            .await
            .expect("the file takes writes again");
    }

    /// A writer that is not a member (an autocommit write, or a connection with TEMP objects)
    /// commits the open group before it writes on its own connection, and transactions on a
    /// connection with state of its own never join a group.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_outside_the_group_commits_it_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = file_database(dir.path());
        let mut a = connect(&db);
        a.execute("CREATE TABLE t (x)", &[]).await.expect("create");
        a.execute("BEGIN IMMEDIATE", &[]).await.expect("a begins");
        a.execute("INSERT INTO t VALUES (1)", &[]).await.expect("a");
        let b_writes = spawn_execute(connect(&db), "INSERT INTO t VALUES (2)");
        queued(&db, 1).await;
        let (_a, committed) = spawn_execute(a, "COMMIT").await.expect("a");
        committed.expect("a's group is committed by b, before b writes");
        b_writes
            .await
            .expect("b")
            .1
            .expect("b writes on its own connection");
        assert_eq!(count(&db, "SELECT count(*) FROM t"), 2);
        let mut local = connect(&db);
        local
            .execute("CREATE TEMP TABLE scratch (y)", &[])
            .await
            .expect("temp");
        local
            .execute("BEGIN IMMEDIATE", &[])
            .await
            .expect("begins on its own");
        assert!(local.grouped.is_none() && local.writing.is_some());
        let copied = "INSERT INTO t SELECT y FROM scratch";
        local
            .execute(copied, &[])
            .await
            .expect("sees its TEMP table");
        local.execute("COMMIT", &[]).await.expect("commit");
    }

    /// A member may not change the shared connection or the group: pragmas that set, TEMP
    /// objects, the host's savepoint name, transaction control in another form, a savepoint of
    /// the member before it. Each is refused, and the member goes on and commits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_member_cannot_change_the_shared_connection_or_reach_another_member() {
        // a keeps a savepoint of its own open when it commits.
        let a_writes = ["SAVEPOINT mine", "INSERT INTO t VALUES (1)"];
        let g = group_of_two("CREATE TABLE t (x)", &a_writes).await;
        let (db, a_commits, mut b) = (g.db, g.a_commits, g.b);
        for refused in [
            "PRAGMA synchronous = OFF",
            "PRAGMA ignore_check_constraints = ON",
            "CREATE TEMP TABLE scratch (y)",
            "SAVEPOINT spin_host_member",
            "RELEASE spin_host_member",
            "ROLLBACK TO mine",
            "COMMIT; SELECT 1",
            "BEGIN",
        ] {
            let out = b.execute(refused, &[]).await;
            assert!(
                out.is_err(),
                "{refused} must be refused in a member: {out:?}"
            );
        }
        let info = b.execute("PRAGMA table_info(t)", &[]).await.expect("reads");
        assert_eq!(info.rows.len(), 1, "a pragma that only reads is allowed");
        b.execute("INSERT INTO t VALUES (2)", &[])
            .await
            .expect("b goes on");
        b.execute("COMMIT", &[]).await.expect("b commits");
        a_commits.await.expect("a").1.expect("a commits");
        assert_eq!(count(&db, "SELECT count(*) FROM t"), 2);
        let own = b
            .execute("SELECT count(*) FROM t", &[])
            .await
            .expect("read");
        assert_eq!(own.rows, vec![vec![SqlValue::Integer(2)]]);
        assert_eq!(
            b.last_change(),
            (2, 1),
            "its last change holds after the group, until its own connection changes rows"
        );
        let mut c = connect(&db);
        c.execute("BEGIN IMMEDIATE", &[]).await.expect("c begins");
        let sync = c.execute("PRAGMA synchronous", &[]).await.expect("read");
        assert_eq!(sync.rows, vec![vec![SqlValue::Integer(2)]], "still FULL");
        c.execute("ROLLBACK", &[]).await.expect("c rolls back");
    }

    /// A schema that can roll a whole transaction back (here `ON CONFLICT ROLLBACK`) makes each
    /// transaction commit alone: a member's COMMIT does not wait for the writer behind it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_schema_that_can_roll_back_a_whole_transaction_commits_each_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = file_database(dir.path());
        let mut a = connect(&db);
        let create = "CREATE TABLE t (x UNIQUE ON CONFLICT ROLLBACK)";
        a.execute(create, &[]).await.expect("create");
        a.execute("BEGIN IMMEDIATE", &[]).await.expect("a begins");
        a.execute("INSERT INTO t VALUES (1)", &[]).await.expect("a");
        let b_begins = spawn_execute(connect(&db), "BEGIN IMMEDIATE");
        queued(&db, 1).await;
        let (_a, committed) = spawn_execute(a, "COMMIT").await.expect("a");
        committed.expect("a commits alone, before b is done");
        assert_eq!(count(&db, "SELECT count(*) FROM t"), 1);
        let (mut b, began) = b_begins.await.expect("b");
        began.expect("b begins");
        let dup = b.execute("INSERT INTO t VALUES (1)", &[]).await;
        assert!(dup.is_err(), "the conflict rolls b's transaction back");
        assert_eq!(count(&db, "SELECT count(*) FROM t"), 1, "a's row is kept");
    }

    /// The coupon component's tables, as far as its try reads and writes them.
    const COUPON_SCHEMA: [&str; 3] = [
        "CREATE TABLE coupons (code TEXT PRIMARY KEY, holding INTEGER NOT NULL)",
        "CREATE TABLE redemptions (code TEXT NOT NULL, redemption_id TEXT NOT NULL,
             status TEXT NOT NULL, PRIMARY KEY (code, redemption_id))",
        "INSERT INTO coupons VALUES ('SAVE10', 0)",
    ];
    const FIND_HOLD: &str =
        "SELECT status FROM redemptions WHERE code = 'SAVE10' AND redemption_id = 'r1'";

    /// Two tries of redemption r1 of coupon SAVE10 in one group, as the coupon component runs
    /// them: A finds no redemption, takes a unit of the coupon, inserts the hold and commits (its
    /// COMMIT waits for the group); B, the client's retry, found A's hold inside its transaction
    /// (a replay: it will answer HELD without writing) and its ROLLBACK runs in `b_rolls_back`;
    /// C, queued behind B before A committed (so ahead of the group's flusher), now holds the
    /// turn, in the same group.
    struct ReplayedTry {
        _dir: tempfile::TempDir,
        db: Arc<Database>,
        a_commits: Spawned,
        b_rolls_back: Spawned,
        c: SqliteConnection,
    }

    async fn replayed_try() -> ReplayedTry {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = file_database(dir.path());
        let mut setup = connect(&db);
        for sql in COUPON_SCHEMA {
            setup.execute(sql, &[]).await.expect("schema");
        }
        let mut a = connect(&db);
        a.execute("BEGIN IMMEDIATE", &[]).await.expect("a begins");
        let none = a.execute(FIND_HOLD, &[]).await.expect("a reads");
        assert!(none.rows.is_empty(), "the first try finds no redemption");
        for sql in [
            "UPDATE coupons SET holding = holding + 1 WHERE code = 'SAVE10'",
            "INSERT INTO redemptions VALUES ('SAVE10', 'r1', 'HELD')",
        ] {
            a.execute(sql, &[]).await.expect("a holds");
        }
        let b_begins = spawn_execute(connect(&db), "BEGIN IMMEDIATE");
        queued(&db, 1).await;
        let c_begins = spawn_execute(connect(&db), "BEGIN IMMEDIATE");
        queued(&db, 2).await;
        let a_commits = spawn_execute(a, "COMMIT");
        let (mut b, began) = b_begins.await.expect("b");
        began.expect("b joins a's group");
        let held = b.execute(FIND_HOLD, &[]).await.expect("b reads");
        let held_row = vec![vec![SqlValue::Text("HELD".into())]];
        assert_eq!(held.rows, held_row, "the retry finds the first try's hold");
        let b_rolls_back = spawn_execute(b, "ROLLBACK");
        let (c, began) = c_begins.await.expect("c");
        began.expect("c joins the same group");
        ReplayedTry {
            _dir: dir,
            db,
            a_commits,
            b_rolls_back,
            c,
        }
    }

    /// While C holds the turn, B's ROLLBACK has not answered: the hold it read is not durable
    /// yet.
    async fn still_waiting(task: &Spawned, what: &str) {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        assert!(
            !task.is_finished(),
            "{what} answered before its group committed"
        );
    }

    /// The headline of issue 13 §6: the group that holds A's hold fails (C's statement rolls
    /// the whole transaction back), so the hold is never durable. B's replay must not be
    /// answered as HELD from it: its ROLLBACK waits for the group and fails with it, like A's
    /// COMMIT. Before the host's fix, B's ROLLBACK answered at once, with success.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replay_read_from_a_hold_that_is_lost_is_told_so() {
        let t = replayed_try().await;
        let mut c = t.c;
        still_waiting(&t.b_rolls_back, "b's rollback").await;
        let conflict = "INSERT OR ROLLBACK INTO redemptions VALUES ('SAVE10', 'r1', 'HELD')";
        let failed = c.execute(conflict, &[]).await;
        assert!(failed.is_err(), "the conflict rolls everything back");
        let (_a, committed) = t.a_commits.await.expect("a");
        assert!(committed.is_err(), "a's hold is lost: its COMMIT fails");
        let (_b, rolled_back) = t.b_rolls_back.await.expect("b");
        assert!(
            rolled_back.is_err(),
            "b read a hold that was lost: its ROLLBACK must fail, not answer: {rolled_back:?}"
        );
        assert_eq!(count(&t.db, "SELECT count(*) FROM redemptions"), 0);
        assert_eq!(count(&t.db, "SELECT holding FROM coupons"), 0);
    }

    /// The same replay when the group commits: B's ROLLBACK answers only once the group that
    /// holds what it read is committed, and succeeds; so does C's transaction, which only read,
    /// and the hold is durable (seen by a connection of its own) when C's end answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rollback_answers_once_what_it_read_is_durable() {
        let t = replayed_try().await;
        let mut c = t.c;
        still_waiting(&t.b_rolls_back, "b's rollback").await;
        let held = c.execute(FIND_HOLD, &[]).await.expect("c reads");
        assert_eq!(held.rows.len(), 1, "c reads the hold too");
        c.execute("COMMIT", &[]).await.expect("c's read-only end");
        assert_eq!(count(&t.db, "SELECT count(*) FROM redemptions"), 1);
        let (_b, rolled_back) = t.b_rolls_back.await.expect("b");
        rolled_back.expect("b's rollback succeeds with its group");
        t.a_commits
            .await
            .expect("a")
            .1
            .expect("a's hold is durable");
        assert_eq!(count(&t.db, "SELECT holding FROM coupons"), 1);
    }

    /// A member that holds the write turn past its deadline (here 300 ms) is aborted: the
    /// member before it commits without it, the file takes writes again, and every statement
    /// of the aborted transaction fails until the guest ends it; then the connection works.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_member_past_its_deadline_is_aborted_and_the_rest_of_its_group_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = file_database_with(dir.path(), std::time::Duration::from_millis(300));
        let mut a = connect(&db);
        a.execute("CREATE TABLE t (x)", &[]).await.expect("create");
        a.execute("BEGIN IMMEDIATE", &[]).await.expect("a begins");
        a.execute("INSERT INTO t VALUES (1)", &[]).await.expect("a");
        let b_begins = spawn_execute(connect(&db), "BEGIN IMMEDIATE");
        queued(&db, 1).await;
        let a_commits = spawn_execute(a, "COMMIT");
        let (mut b, began) = b_begins.await.expect("b");
        began.expect("b joins a's group");
        b.execute("INSERT INTO t VALUES (2)", &[]).await.expect("b");
        // b now holds the turn and does nothing (a guest waiting on the network).
        let long = std::time::Duration::from_secs(10);
        let (_a, committed) = tokio::time::timeout(long, a_commits)
            .await
            .expect("a's COMMIT answers although b never ends its transaction")
            .expect("a");
        committed.expect("a commits without b");
        let mut c = connect(&db);
        let write = tokio::time::timeout(long, c.execute("INSERT INTO t VALUES (3)", &[]));
        write.await.expect("c gets the turn").expect("c writes");
        for sql in [
            "INSERT INTO t VALUES (4)",
            "SELECT count(*) FROM t",
            "COMMIT",
        ] {
            let out = b.execute(sql, &[]).await;
            let aborted = matches!(&out, Err(SqlError::Io(e)) if e.contains("aborted"));
            assert!(
                aborted,
                "{sql} in an aborted transaction must fail: {out:?}"
            );
        }
        assert_eq!(count(&db, "SELECT count(*) FROM t"), 2, "a's and c's rows");
        let after = b.execute("SELECT count(*) FROM t", &[]).await;
        assert_eq!(
            after.expect("b's connection works").rows[0][0],
            SqlValue::Integer(2)
        );
    }

    /// A connection as the next guest gets it: from the pool if one is idle.
    fn reopen(db: &Arc<Database>) -> SqliteConnection {
        let conn = db
            .pooled()
            .unwrap_or_else(|| db.new_connection().expect("open"));
        SqliteConnection::new(db.clone(), conn)
    }

    /// What a guest set on its connection (a pragma, an attached database) or left there (its
    /// last rowid and change count) is not seen by the next guest, who gets the pooled
    /// connection: it finds what a fresh connection has, as each guest does in Spin.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pooled_connection_is_reset_between_guests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = file_database(dir.path());
        let mut first = reopen(&db);
        first
            .execute("CREATE TABLE t (x INTEGER PRIMARY KEY)", &[])
            .await
            .expect("create");
        first
            .execute("INSERT INTO t VALUES (42)", &[])
            .await
            .expect("insert");
        for sql in ["PRAGMA query_only = 1", "ATTACH ':memory:' AS scratch"] {
            first.execute(sql, &[]).await.expect(sql);
            drop(first);
            let mut next = reopen(&db);
            let insert = next.execute("INSERT INTO t VALUES (NULL)", &[]).await;
            insert.unwrap_or_else(|e| panic!("after {sql}: writes are allowed again: {e:?}"));
            let dbs = next
                .execute("PRAGMA database_list", &[])
                .await
                .expect("list");
            let names: Vec<&SqlValue> = dbs.rows.iter().map(|r| &r[1]).collect();
            assert_eq!(names, [&SqlValue::Text("main".into())], "after {sql}");
            first = next;
        }
        drop(first);
        assert_eq!(
            db.idle.lock().expect("pool").len(),
            1,
            "a clean one is pooled"
        );
        let next = reopen(&db);
        assert_eq!(
            next.last_change(),
            (0, 0),
            "the last guest's rowid and changes"
        );
    }

    #[test]
    fn the_end_of_a_member_transaction_is_told_apart_from_a_savepoint() {
        let control = StatementKind::control;
        assert_eq!(control("commit"), Control::Commit);
        assert_eq!(control("END TRANSACTION"), Control::Commit);
        assert_eq!(control(" rollback;"), Control::Rollback);
        assert_eq!(control("ROLLBACK TRANSACTION"), Control::Rollback);
        assert_eq!(control("ROLLBACK TO step"), Control::Other);
        assert_eq!(
            control("ROLLBACK TRANSACTION TO SAVEPOINT step"),
            Control::Other
        );
        assert_eq!(control("INSERT INTO t VALUES (1)"), Control::Other);
        assert_eq!(control("COMMIT/**/"), Control::Commit);
        assert_eq!(control("END -- done\n"), Control::Commit);
        assert_eq!(control("ROLLBACK--x\n"), Control::Rollback);
        assert_eq!(
            control("COMMIT; SELECT 1"),
            Control::Other,
            "a second statement"
        );
        assert_eq!(control("BEGIN IMMEDIATE TRANSACTION"), Control::Other);
        assert!(StatementKind::begins_writing("BEGIN IMMEDIATE TRANSACTION"));
        let local = StatementKind::keeps_local_state;
        assert!(local("PRAGMA foreign_keys = ON"));
        assert!(local("/* x */ pragma main.query_only=1;"));
        assert!(local("PRAGMA busy_timeout(0)"));
        assert!(!local("PRAGMA foreign_keys"), "reads");
        assert!(!local("PRAGMA database_list;"), "reads");
        assert!(!local("PRAGMA main.table_info(t)"), "reads");
        assert!(local("ATTACH ':memory:' AS aux"));
        assert!(local("CREATE TEMP TABLE x (y)"));
        assert!(local("create table temp.x (y)"));
        assert!(!local("CREATE TABLE x (y)"));
        assert!(!local("SELECT 1"));
    }

    #[test]
    fn errors_are_io() {
        let conn = Connection::open_in_memory().expect("open");
        assert!(matches!(
            execute_on(&conn, "SELEC 1", &[]),
            Err(SqlError::Io(_))
        ));
    }
}
