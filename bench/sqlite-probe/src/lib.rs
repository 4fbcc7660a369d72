//! The SQLite reference of the order benchmark (scripts/bench-orders.sh): each request writes one
//! 200-byte row, with none of the shop's logic, so the benchmark can tell what the database costs
//! from what the app adds. `GET /bench/sqlite?tx=auto|one|two&wait=sqlite|app&journal=file|wal&shards=N`:
//! - `tx`: an autocommit INSERT, `BEGIN IMMEDIATE; INSERT; COMMIT`, or two such transactions;
//! - `wait`: SQLite's own busy handler as the runtime left it (Spin: rusqlite's 5 s
//!   `busy_timeout`), or the app's wait for the write lock (`shop_adapter::sqlite::Tx::begin`);
//! - `journal`: the file's journal mode as it is (rollback journal under Spin), or the app's
//!   setup (`shop_adapter::sqlite::open`: WAL, `synchronous=FULL`);
//! - `shards`: the request writes to `probeK` (`walprobeK` with `journal=wal`: a file is never
//!   measured in both modes), K random below N (1..=4).
//!
//! `tx=redis&redis=HOST:PORT&n=N[&reuse=1]` opens Redis and sends PING N times (a connection each,
//! or one kept) and touches no database: the floor of any request that makes one Redis round
//! trip under the host (scripts/bench-flash.sh). `tx=vars` reads a variable N times.
//!
//! `tx=order-floor&redis=HOST:PORT&shards=N`: the I/O an order cannot do without, in the order's
//! sequence and with none of its logic (scripts/bench-orders.sh): a Redis connection and one GET
//! (the customer's remembered token), a chained request to a second instance of this component
//! that opens Redis and sends one PING (the reservation at the stock component, which runs a
//! script there), one write transaction on `walprobeK` with the app's setup and lock wait (the
//! order, its lines, its outbox row and its Idempotency-Key claim: one transaction), then one
//! more Redis command (the fast-path publish). An order can be no faster than this under the
//! same host, so floor / hello bounds the orders / hello ratio.

use anyhow::ensure;
use shop_adapter::sqlite::{migrate, Migration, Tx};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::redis::RedisParameter;
use spin_sdk::sqlite::{Connection, Value};

const ROW: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnop";

#[http_component]
async fn probe(req: Request) -> Response {
    let done = match param(req.query(), "tx", "one") {
        "order-floor" => order_floor(req.query()).await,
        _ => run(req.query()),
    };
    match done {
        Ok(()) => Response::new(200, "ok"),
        Err(e) => Response::new(503, format!("{e:#}")),
    }
}

async fn order_floor(query: &str) -> anyhow::Result<()> {
    let redis = param(query, "redis", "127.0.0.1:6379");
    let conn = spin_sdk::redis::Connection::open(&format!("redis://{redis}"))?;
    conn.get("probe:verdict")?;
    let chained = Request::builder()
        .method(Method::Get)
        .uri(format!(
            "http://bench-sqlite.spin.internal/bench/sqlite?tx=redis&redis={redis}&n=1"
        ))
        .build();
    let answer: Response = spin_sdk::http::send(chained).await?;
    ensure!(
        *answer.status() == 200,
        "the chained request answered {}",
        answer.status()
    );
    let shards: u32 = param(query, "shards", "1").parse::<u32>()?.clamp(1, 4);
    let db = Connection::open(&format!("walprobe{}", random_below(shards)))?;
    migrate(&db, "probe", &[SCHEMA])?;
    let tx = Tx::begin(&db)?;
    insert(&db)?;
    tx.commit()?;
    conn.execute(
        "PUBLISH",
        &[
            RedisParameter::Binary(b"probe:doorbell".to_vec()),
            RedisParameter::Binary(b"1".to_vec()),
        ],
    )?;
    Ok(())
}

fn param<'q>(query: &'q str, name: &str, default: &'q str) -> &'q str {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map_or(default, |(_, v)| v)
}

fn run(query: &str) -> anyhow::Result<()> {
    match param(query, "tx", "one") {
        "redis" => return redis_pings(query),
        "vars" => {
            for _ in 0..param(query, "n", "1").parse::<u32>()? {
                spin_sdk::variables::get("probe_variable")?;
            }
            return Ok(());
        }
        _ => {}
    }
    let shards: u32 = param(query, "shards", "1").parse::<u32>()?.clamp(1, 4);
    let wal = param(query, "journal", "file") == "wal";
    let label = format!(
        "{}probe{}",
        if wal { "wal" } else { "" },
        random_below(shards)
    );
    let conn = Connection::open(&label)?;
    if wal {
        // The app's own path: one read per request, the setup the first time.
        migrate(&conn, "probe", &[SCHEMA])?;
    }
    let app_wait = param(query, "wait", "sqlite") == "app";
    let transactions = match param(query, "tx", "one") {
        "auto" => return insert(&conn),
        "select" => {
            for _ in 0..param(query, "n", "1").parse::<u32>()? {
                conn.execute("SELECT 1", &[])?;
            }
            return Ok(());
        }
        "two" => 2,
        _ => 1,
    };
    for _ in 0..transactions {
        if app_wait {
            let tx = Tx::begin(&conn)?;
            insert(&conn)?;
            tx.commit()?;
        } else {
            conn.execute("BEGIN IMMEDIATE", &[])?;
            let inserted = insert(&conn);
            conn.execute(
                if inserted.is_ok() {
                    "COMMIT"
                } else {
                    "ROLLBACK"
                },
                &[],
            )?;
            inserted?;
        }
    }
    Ok(())
}

fn redis_pings(query: &str) -> anyhow::Result<()> {
    let url = format!("redis://{}", param(query, "redis", "127.0.0.1:6379"));
    let reuse = param(query, "reuse", "0") == "1";
    let mut kept = None;
    for _ in 0..param(query, "n", "1").parse::<u32>()? {
        let conn = match (reuse, kept.take()) {
            (true, Some(c)) => c,
            _ => spin_sdk::redis::Connection::open(&url)?,
        };
        conn.execute("PING", &[])?;
        kept = Some(conn);
    }
    Ok(())
}

const SCHEMA: Migration = Migration {
    version: 1,
    name: "probe",
    sql: "CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
};

fn insert(conn: &Connection) -> anyhow::Result<()> {
    let row = [Value::Text(ROW.to_owned())];
    if let Err(e) = conn.execute("INSERT INTO probe (body) VALUES (?)", &row) {
        // The first request on a file left in its own journal mode creates the table.
        if !format!("{e:?}").contains("no such table") {
            return Err(e.into());
        }
        conn.execute(SCHEMA.sql, &[])?;
        conn.execute("INSERT INTO probe (body) VALUES (?)", &row)?;
    }
    Ok(())
}

fn random_below(n: u32) -> u32 {
    shop_adapter::ids::random_below(u64::from(n)) as u32
}
