//! The order context's shard files, natively, with the app stopped (`spin-shop-dev shards check`
//! and `spin-shop-dev reshard`).
//!
//! Each shard (`orders-shard<k>`) records the layout it was written under (`shard_layout`: how many
//! shards, which one it is); the order component refuses a shard that records another count
//! than `order_shards`. `check` says the same before start-up (`scripts/up.sh` runs it), and
//! `reshard` moves every customer's rows to the shard they hash to under the new count
//! (`shop_domain::shard`), then rewrites every record.
//!
//! Moving a customer is two transactions: copy into the destination (`INSERT OR REPLACE`,
//! committed), then delete from the source. A crash in between leaves copies in both, never
//! none (SQLite does not make a transaction over two WAL files atomic), and the records are
//! rewritten only at the very end, so running the same `reshard` again finishes the job.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use shop_domain::shard::{ShardCount, LABEL_PREFIX};

/// The file of each shard label (`orders-shard<k>`) a Spin runtime config maps to a local file
/// (type `spin`, a `path`), by index. Relative paths are relative to the working directory, as in Spin.
pub fn shard_files(runtime_config: &Path) -> Result<BTreeMap<u32, PathBuf>> {
    let text = std::fs::read_to_string(runtime_config)
        .with_context(|| format!("read {}", runtime_config.display()))?;
    let doc: toml::Table = text.parse().context("parse the runtime config")?;
    let mut files = BTreeMap::new();
    let Some(dbs) = doc.get("sqlite_database").and_then(|v| v.as_table()) else {
        return Ok(files);
    };
    for (label, db) in dbs {
        let Some(k) = label
            .strip_prefix(LABEL_PREFIX)
            .and_then(|k| k.parse().ok())
        else {
            continue;
        };
        // A libSQL database (production) is not a file this tool can open: skipped.
        if db.get("type").and_then(|t| t.as_str()) != Some("spin") {
            continue;
        }
        let path = db.get("path").and_then(|p| p.as_str());
        let path = path.with_context(|| format!("{label} has no path"))?;
        files.insert(k, PathBuf::from(path));
    }
    Ok(files)
}

/// What a shard's file holds, as far as the layout goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardState {
    pub index: u32,
    pub file: PathBuf,
    /// The count recorded in its `shard_layout`, if any.
    pub recorded: Option<u32>,
    pub orders: i64,
}

/// The state of every shard file that exists.
pub fn states(files: &BTreeMap<u32, PathBuf>) -> Result<Vec<ShardState>> {
    let mut out = Vec::new();
    for (&index, file) in files {
        if !file.exists() {
            continue;
        }
        let conn = open(file)?;
        out.push(ShardState {
            index,
            file: file.clone(),
            recorded: recorded(&conn)?,
            orders: if has_table(&conn, "orders")? {
                conn.query_row("SELECT COUNT(*) FROM orders", [], |r| r.get(0))?
            } else {
                0
            },
        });
    }
    Ok(out)
}

/// `shards check`: one line per shard file, and whether they agree with `configured`: no shard
/// records another count, and no shard at or past `configured` holds orders (they would be
/// stranded).
pub fn check(
    files: &BTreeMap<u32, PathBuf>,
    configured: ShardCount,
) -> Result<(Vec<String>, bool)> {
    let mut lines = Vec::new();
    let mut ok = true;
    for s in states(files)? {
        let label = format!("{LABEL_PREFIX}{}", s.index);
        let recorded = s.recorded.map_or("no layout recorded".to_owned(), |n| {
            format!("order_shards = {n}")
        });
        // As the app decides: another recorded count, orders past the configured shards, or
        // (no record: a database from before sharding) orders of customers who hash elsewhere.
        let strays = match (s.recorded, s.orders) {
            (None, n) if n > 0 => strays(&s, configured)?,
            _ => 0,
        };
        let mismatch = s.recorded.is_some_and(|n| n != configured.get())
            || (s.index >= configured.get() && s.orders > 0)
            || strays > 0;
        ok &= !mismatch;
        let verdict = if mismatch { "MISMATCH" } else { "ok" };
        lines.push(format!(
            "{label} ({}): {recorded}, {} orders: {verdict}",
            s.file.display(),
            s.orders
        ));
    }
    if lines.is_empty() {
        lines.push("no order shard file yet: nothing to check".to_owned());
    }
    if !ok {
        lines.push(format!(
            "order_shards = {configured} does not match the layout the shards were written under: \
             stop the app and run `spin-shop-dev reshard --from <recorded> --to {configured}` \
             (a database from before sharding: start it once with order_shards = 1 first), or \
             set order_shards back"
        ));
    }
    Ok((lines, ok))
}

/// How many customers with orders in shard `s` hash to another shard under `configured`.
fn strays(s: &ShardState, configured: ShardCount) -> Result<usize> {
    let conn = open(&s.file)?;
    let mut stmt = conn.prepare("SELECT DISTINCT user_id FROM orders")?;
    let ids = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let ids: Vec<String> = ids.collect::<rusqlite::Result<_>>()?;
    Ok(ids
        .iter()
        .filter(|c| configured.shard_of(c).get() != s.index)
        .count())
}

/// What `reshard` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Moved {
    pub customers: u64,
    pub orders: u64,
}

/// Moves every customer's rows (orders, lines, outbox rows, Idempotency-Key claims, pending
/// releases) from the layout of `from` shards to that of `to`, copies every inbox row to every
/// shard (an inbox row only says a message was applied: wherever the message lands now, it is
/// dropped again), and rewrites every shard's layout record. The app must be stopped.
pub fn reshard(files: &BTreeMap<u32, PathBuf>, from: ShardCount, to: ShardCount) -> Result<Moved> {
    let span = from.get().max(to.get());
    for k in 0..span {
        ensure!(
            files.contains_key(&k),
            "the runtime config maps no {LABEL_PREFIX}{k}"
        );
    }
    let template = preflight(files, from, to)?;
    let mut moved = Moved::default();
    for s in 0..from.get() {
        if let Some(template) = &template {
            move_out_of(files, s, to, template, &mut moved)?;
        }
    }
    for k in 0..span {
        let conn = open(&files[&k])?;
        if k < to.get() {
            ensure_schema(&conn, template.as_deref().unwrap_or(&files[&0]))?;
            conn.execute("DELETE FROM shard_layout", [])?;
            conn.execute(RECORD, params![to.get(), k, now_ms()])?;
        } else if has_table(&conn, "shard_layout")? {
            conn.execute("DELETE FROM shard_layout", [])?; // emptied: no longer part of it
        }
    }
    Ok(moved)
}

/// The layout row, as the order component writes it (functions/order/src/db.rs).
const RECORD: &str =
    "INSERT INTO shard_layout (id, shards, shard, recorded_ms) VALUES (1, ?1, ?2, ?3)";

/// Refuses a layout that is neither `from` nor `to` (a rerun after a crash finds some of each)
/// or shards at different schema versions; returns a migrated shard to copy the schema from
/// (`None`: no shard holds anything yet).
fn preflight(
    files: &BTreeMap<u32, PathBuf>,
    from: ShardCount,
    to: ShardCount,
) -> Result<Option<PathBuf>> {
    let mut versions = BTreeSet::new();
    let mut template = None;
    for s in states(files)? {
        if let Some(n) = s.recorded.filter(|n| *n != from.get() && *n != to.get()) {
            bail!(
                "{} records order_shards = {n}, not {from}: run reshard --from {n}",
                s.file.display()
            );
        }
        let conn = open(&s.file)?;
        if has_table(&conn, "schema_version")? {
            versions.insert(schema_version(&conn)?);
            template.get_or_insert(s.file.clone());
        }
    }
    ensure!(
        versions.len() <= 1,
        "the shards are at different schema versions {versions:?}: start the app once with order_shards = {from} and send an admin read (GET /api/orders/<id>) so every shard migrates, then stop it"
    );
    Ok(template)
}

/// Moves the customers of shard `s` that hash elsewhere under `to`; a shard past `to` is
/// emptied altogether (its rows of no customer go to shard `s mod to`).
fn move_out_of(
    files: &BTreeMap<u32, PathBuf>,
    s: u32,
    to: ShardCount,
    template: &Path,
    moved: &mut Moved,
) -> Result<()> {
    let source = &files[&s];
    if !source.exists() || !has_table(&open(source)?, "orders")? {
        return Ok(());
    }
    let mut by_dest: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for customer in customers(&open(source)?)? {
        let d = to.shard_of(&customer).get();
        if d != s {
            by_dest.entry(d).or_default().push(customer);
        }
    }
    for d in 0..to.get() {
        let customers = by_dest.remove(&d).unwrap_or_default();
        let rest = s >= to.get() && d == s % to.get();
        if customers.is_empty() && !rest {
            continue;
        }
        let dest = open(&files[&d])?;
        ensure_schema(&dest, template)?;
        moved.orders += move_customers(&dest, source, &customers, rest)?;
        moved.customers += customers.len() as u64;
    }
    Ok(())
}

/// Every customer with an order or a claim in this shard (`''`: claims from before keys were
/// scoped, which live in the shard `''` hashes to).
fn customers(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt =
        conn.prepare("SELECT user_id FROM orders UNION SELECT user_id FROM idempotency_keys")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Which rows of a table belong to the customers in `temp.moving` (of the attached `src`).
fn selection(table: &str) -> &'static str {
    match table {
        "orders" | "idempotency_keys" => "user_id IN (SELECT user_id FROM temp.moving)",
        "order_lines" | "pending_releases" => "order_id IN (SELECT order_id FROM src.orders WHERE user_id IN (SELECT user_id FROM temp.moving))",
        "outbox" => "aggregate_id IN (SELECT order_id FROM src.orders WHERE user_id IN (SELECT user_id FROM temp.moving))",
        _ => "0",
    }
}

/// The tables moved with their customer, children first (their selection reads `src.orders`,
/// so they are deleted before it).
const PER_CUSTOMER: [&str; 5] = [
    "order_lines",
    "pending_releases",
    "outbox",
    "orders",
    "idempotency_keys",
];
/// Rows of no customer (releases and messages of abandoned claims, refunds of unknown orders):
/// they stay where they are, unless their shard is emptied (`rest`).
const UNOWNED: [&str; 2] = ["pending_releases", "outbox"];

/// Copies `customers`' rows (with `rest`, every row) from `source` into `dest` in one
/// transaction, with every inbox row, then deletes them from `source` in another; how many
/// orders moved.
fn move_customers(
    dest: &Connection,
    source: &Path,
    customers: &[String],
    rest: bool,
) -> Result<u64> {
    dest.execute("ATTACH DATABASE ?1 AS src", [source.display().to_string()])?;
    dest.execute_batch("CREATE TEMP TABLE IF NOT EXISTS moving (user_id TEXT PRIMARY KEY); DELETE FROM temp.moving;")?;
    for c in customers {
        dest.execute("INSERT INTO temp.moving (user_id) VALUES (?1)", [c])?;
    }
    let moved: i64 = dest.query_row(
        &format!(
            "SELECT COUNT(*) FROM src.orders WHERE {}",
            selection("orders")
        ),
        [],
        |r| r.get(0),
    )?;
    let tx = dest.unchecked_transaction()?;
    for table in PER_CUSTOMER {
        let cols = columns(dest, table)?;
        dest.execute(&format!("INSERT OR REPLACE INTO main.{table} ({cols}) SELECT {cols} FROM src.{table} WHERE {}", selection(table)), [])?;
    }
    for table in UNOWNED.iter().filter(|_| rest) {
        let cols = columns(dest, table)?;
        dest.execute(
            &format!("INSERT OR REPLACE INTO main.{table} ({cols}) SELECT {cols} FROM src.{table}"),
            [],
        )?;
    }
    let cols = columns(dest, "inbox")?;
    dest.execute(
        &format!("INSERT OR IGNORE INTO main.inbox ({cols}) SELECT {cols} FROM src.inbox"),
        [],
    )?;
    tx.commit()?;
    let tx = dest.unchecked_transaction()?;
    for table in PER_CUSTOMER {
        dest.execute(
            &format!("DELETE FROM src.{table} WHERE {}", selection(table)),
            [],
        )?;
    }
    for table in UNOWNED.iter().filter(|_| rest) {
        dest.execute(&format!("DELETE FROM src.{table}"), [])?;
    }
    tx.commit()?;
    dest.execute("DETACH DATABASE src", [])?;
    Ok(moved as u64)
}

/// The column list of `table` in the main database, quoted.
fn columns(conn: &Connection, table: &str) -> Result<String> {
    let mut stmt = conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let names: Vec<String> = names
        .map(|n| n.map(|n| format!("\"{n}\"")))
        .collect::<rusqlite::Result<_>>()?;
    ensure!(!names.is_empty(), "no table {table}");
    Ok(names.join(", "))
}

/// Gives a shard with no schema the schema (and recorded migrations) of `template`.
fn ensure_schema(conn: &Connection, template: &Path) -> Result<()> {
    if has_table(conn, "schema_version")? {
        return Ok(());
    }
    let t = open(template)?;
    let mut stmt = t.prepare("SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY type = 'index', rowid")?;
    let ddl: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let tx = conn.unchecked_transaction()?;
    for sql in ddl {
        conn.execute(&sql, [])?;
    }
    conn.execute(
        "ATTACH DATABASE ?1 AS tpl",
        [template.display().to_string()],
    )?;
    conn.execute(
        "INSERT INTO main.schema_version SELECT * FROM tpl.schema_version",
        [],
    )?;
    tx.commit()?;
    conn.execute("DETACH DATABASE tpl", [])?;
    Ok(())
}

fn open(file: &Path) -> Result<Connection> {
    let conn = Connection::open(file).with_context(|| format!("open {}", file.display()))?;
    // The app may have left WAL files: honour them, and wait a little for a straggler.
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Rows are copied between consistent databases a table at a time (an order's lines may
    // arrive before it is replaced): the app's own checks hold before and after.
    conn.execute_batch("PRAGMA foreign_keys = OFF")?;
    Ok(conn)
}

fn recorded(conn: &Connection) -> Result<Option<u32>> {
    if !has_table(conn, "shard_layout")? {
        return Ok(None);
    }
    Ok(conn
        .query_row("SELECT shards FROM shard_layout WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?)
}

fn schema_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version WHERE component = 'order'",
        [],
        |r| r.get(0),
    )?)
}

fn has_table(conn: &Connection, name: &str) -> Result<bool> {
    let found: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()?;
    Ok(found.is_some())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The count `n` as a layout, or why not.
pub fn count(n: &str) -> Result<ShardCount> {
    ShardCount::parse(n).map_err(|e| anyhow::anyhow!("{e}"))
}
