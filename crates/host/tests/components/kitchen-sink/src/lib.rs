//! `kitchen-sink`: a host test component. One HTTP route per host interface; every route answers
//! 200 with a JSON report of what each call returned, so the host tests can assert real
//! behaviour, including Spin's error variants by their WIT names (`access-denied`,
//! `no-such-store`, `invalid-address`, `undefined`, ...).
//!
//! A result is `{"ok": value}` or `{"error": "<wit-variant-name>", "detail": "..."}`.
//! Routes are matched against `spin-path-info` (the path below the component's route), so
//! `/kv/get` works at `/kv/get` under a `/...` route and at `/x/kv/get` under `/x/...`.
//! Any path not listed below is echoed back (method, path, query, headers, body, and the
//! component variable `who` when the component has one), which the routing tests use.
//! `/alloc`, `/spin`, `/sleep` and `/sqlite3/hold-and-spin` run into the host's instance limits.

use serde_json::{json, Map, Value as Json};
use spin_sdk::http::{IntoResponse, Method, Request, Response};
use spin_sdk::http_component;

static INSTANCE_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[http_component]
async fn handle(req: Request) -> impl IntoResponse {
    let q = Query::parse(req.query());
    let body = req.body().to_vec();
    // Dispatch on the path below the component's route (`spin-path-info`), so the same routes
    // work whether the component is mounted at `/...` or at `/prefix/...`.
    let path_info = req
        .header("spin-path-info")
        .and_then(|v| v.as_str())
        .filter(|p| !p.is_empty())
        .unwrap_or(req.path())
        .to_owned();
    let report = match path_info.as_str() {
        "/kv/roundtrip" => kv::roundtrip(q.or("store", "default")),
        "/kv/set" => kv::set(
            q.or("store", "default"),
            q.or("key", "k"),
            q.or("value", ""),
        ),
        "/kv/get" => kv::get(q.or("store", "default"), q.or("key", "k")),
        "/wasi-kv/roundtrip" => wasi_kv::roundtrip(q.or("store", "default")),
        "/wasi-kv/incr" => wasi_kv::incr(
            q.or("store", "default"),
            q.or("key", "counter"),
            q.or("delta", "1").parse().unwrap_or(1),
        ),
        "/sqlite/roundtrip" => sqlite2::roundtrip(q.or("db", "default")),
        "/sqlite/exec" => sqlite2::exec(q.or("db", "default"), &String::from_utf8_lossy(&body)),
        "/sqlite/dangling" => sqlite2::dangling(q.or("db", "default")),
        "/sqlite3/dangling" => sqlite3::dangling(q.or("db", "default")),
        "/sqlite/put" => sqlite2::put(q.or("db", "default"), q.or("key", "k"), q.or("value", "")),
        "/sqlite/get" => sqlite2::get(q.or("db", "default"), q.or("key", "k")),
        "/sqlite3/roundtrip" => sqlite3::roundtrip(q.or("db", "default")),
        "/sqlite3/exec" => sqlite3::exec(q.or("db", "default"), &String::from_utf8_lossy(&body)),
        "/sqlite3/put" => sqlite3::put(q.or("db", "default"), q.or("key", "k"), q.or("value", "")),
        "/sqlite3/get" => sqlite3::get(q.or("db", "default"), q.or("key", "k")),
        "/sqlite3/rowid" => sqlite3_rowid(q.or("db", "default")),
        "/sqlite3/hold" => {
            sqlite3_hold(q.or("db", "default"), q.or("ms", "0").parse().unwrap_or(0))
        }
        "/redis/roundtrip" => redis::roundtrip(q.or("url", ""), q.or("prefix", "ks")),
        "/redis/publish" => {
            redis::publish(q.or("url", ""), q.or("channel", "ks"), q.or("payload", ""))
        }
        "/redis/execute" => redis::execute(q.or("url", ""), &q.all("arg")),
        "/var" => variables(q.or("name", "")),
        "/config/all" => config_all(),
        "/http" => outbound_http(q.or("url", ""), q.or("method", "GET"), body).await,
        "/tcp" => sockets::tcp(q.or("addr", ""), q.or("send", "ping")),
        "/udp" => sockets::udp(q.or("addr", ""), q.or("send", "ping")),
        "/instance-counter" => {
            // A fresh instance per request always answers 1.
            ok(INSTANCE_COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
        }
        "/body-len" => {
            json!({ "len": body.len(), "sum": body.iter().map(|b| *b as u64).sum::<u64>() })
        }
        "/print" => {
            println!("kitchen-sink stdout: {}", q.or("msg", ""));
            eprintln!("kitchen-sink stderr: {}", q.or("msg", ""));
            ok(true)
        }
        "/trap" => panic!("kitchen-sink: asked to trap"),
        "/alloc" => limits::alloc_mib(q.or("mib", "0").parse().unwrap_or(0)),
        "/spin" => limits::spin_forever(),
        "/sleep" => limits::sleep_ms(q.or("ms", "0").parse().unwrap_or(0)),
        "/sqlite3/hold-and-spin" => {
            limits::hold_and_spin(q.or("db", "default"), q.or("key", "k"), q.or("value", ""))
        }
        "/status" => {
            let code: u16 = q.or("code", "200").parse().unwrap_or(200);
            return Response::builder()
                .status(code)
                .header("x-kitchen-sink", q.or("header", "set"))
                .header("content-type", "text/plain")
                .body(q.or("body", "").to_owned())
                .build();
        }
        _ => echo(&req),
    };
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&report).unwrap_or_default())
        .build()
}

// ------------------------------------------------------------------------------- helpers

/// The query string, percent-decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: &str) -> Self {
        Query(
            query
                .split('&')
                .filter(|s| !s.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    fn or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or(default)
    }

    fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn ok(value: impl Into<Json>) -> Json {
    json!({ "ok": value.into() })
}

fn err(name: &str, detail: Option<&str>) -> Json {
    match detail {
        Some(d) => json!({ "error": name, "detail": d }),
        None => json!({ "error": name }),
    }
}

fn text(bytes: &[u8]) -> Json {
    Json::String(String::from_utf8_lossy(bytes).into_owned())
}

/// Records `name => result` in `out`, mapping the error with `on_err`.
fn record<T: Into<Json>, E>(
    out: &mut Map<String, Json>,
    name: &str,
    result: Result<T, E>,
    on_err: fn(&E) -> Json,
) {
    let value = match result {
        Ok(v) => ok(v),
        Err(e) => on_err(&e),
    };
    out.insert(name.to_owned(), value);
}

// ------------------------------------------------------------------------------- key-value v2

mod kv {
    use super::*;
    use spin_sdk::key_value::{Error, Store};

    pub fn error(e: &Error) -> Json {
        match e {
            Error::StoreTableFull => err("store-table-full", None),
            Error::NoSuchStore => err("no-such-store", None),
            Error::AccessDenied => err("access-denied", None),
            Error::Other(m) => err("other", Some(m)),
        }
    }

    fn opt_text(v: Option<Vec<u8>>) -> Json {
        v.map(|b| text(&b)).unwrap_or(Json::Null)
    }

    pub fn roundtrip(label: &str) -> Json {
        let mut out = Map::new();
        let store = match Store::open(label) {
            Ok(s) => {
                out.insert("open".into(), ok(true));
                s
            }
            Err(e) => {
                out.insert("open".into(), error(&e));
                return Json::Object(out);
            }
        };
        let key = "kitchen-sink:key";
        record(&mut out, "set", store.set(key, b"v1"), error);
        record(&mut out, "get", store.get(key).map(opt_text), error);
        record(&mut out, "exists", store.exists(key), error);
        let keys = store.get_keys().map(|mut k| {
            k.sort();
            k
        });
        record(&mut out, "get_keys", keys, error);
        record(&mut out, "delete", store.delete(key), error);
        record(&mut out, "exists_after_delete", store.exists(key), error);
        record(
            &mut out,
            "get_after_delete",
            store.get(key).map(opt_text),
            error,
        );
        record(
            &mut out,
            "delete_missing",
            store.delete("kitchen-sink:missing"),
            error,
        );
        Json::Object(out)
    }

    pub fn set(label: &str, key: &str, value: &str) -> Json {
        match Store::open(label) {
            Ok(s) => match s.set(key, value.as_bytes()) {
                Ok(()) => ok(true),
                Err(e) => error(&e),
            },
            Err(e) => error(&e),
        }
    }

    pub fn get(label: &str, key: &str) -> Json {
        match Store::open(label) {
            Ok(s) => match s.get(key) {
                Ok(v) => ok(opt_text(v)),
                Err(e) => error(&e),
            },
            Err(e) => error(&e),
        }
    }
}

// ------------------------------------------------------------------------------- wasi:keyvalue

mod wasi_kv {
    use super::*;
    use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store};

    pub fn error(e: &store::Error) -> Json {
        match e {
            store::Error::NoSuchStore => err("no-such-store", None),
            store::Error::AccessDenied => err("access-denied", None),
            store::Error::Other(m) => err("other", Some(m)),
        }
    }

    fn opt_text(v: Option<Vec<u8>>) -> Json {
        v.map(|b| text(&b)).unwrap_or(Json::Null)
    }

    pub fn roundtrip(label: &str) -> Json {
        let mut out = Map::new();
        let bucket = match store::open(label) {
            Ok(b) => {
                out.insert("open".into(), ok(true));
                b
            }
            Err(e) => {
                out.insert("open".into(), error(&e));
                return Json::Object(out);
            }
        };
        let key = "wasi-kv:key";
        record(&mut out, "set", bucket.set(key, b"w1"), error);
        record(&mut out, "get", bucket.get(key).map(opt_text), error);
        record(&mut out, "exists", bucket.exists(key), error);
        let keys = bucket.list_keys(None).map(|r| {
            let mut k = r.keys;
            k.sort();
            k
        });
        record(&mut out, "list_keys", keys, error);
        record(&mut out, "delete", bucket.delete(key), error);
        record(&mut out, "exists_after_delete", bucket.exists(key), error);

        let counter = "wasi-kv:counter";
        let _ = bucket.delete(counter);
        record(
            &mut out,
            "increment_5",
            atomics::increment(&bucket, counter, 5),
            error,
        );
        record(
            &mut out,
            "increment_minus_2",
            atomics::increment(&bucket, counter, -2),
            error,
        );

        let pairs = vec![
            ("wasi-kv:b1".to_owned(), b"one".to_vec()),
            ("wasi-kv:b2".to_owned(), b"two".to_vec()),
        ];
        record(
            &mut out,
            "set_many",
            batch::set_many(&bucket, &pairs),
            error,
        );
        let names = vec![
            "wasi-kv:b1".to_owned(),
            "wasi-kv:b2".to_owned(),
            "wasi-kv:b3".to_owned(),
        ];
        let many = |b: &store::Bucket| {
            batch::get_many(b, &names).map(|kvs| {
                kvs.into_iter()
                    .map(|(k, v)| json!([k, opt_text(v)]))
                    .collect::<Vec<_>>()
            })
        };
        record(&mut out, "get_many", many(&bucket), error);
        record(
            &mut out,
            "delete_many",
            batch::delete_many(&bucket, &names[..2]),
            error,
        );
        record(&mut out, "get_many_after_delete", many(&bucket), error);
        Json::Object(out)
    }

    pub fn incr(label: &str, key: &str, delta: i64) -> Json {
        match store::open(label) {
            Ok(b) => match atomics::increment(&b, key, delta) {
                Ok(v) => ok(v),
                Err(e) => error(&e),
            },
            Err(e) => error(&e),
        }
    }
}

// ------------------------------------------------------------------------------- sqlite v2 / v3

/// The same routes over `fermyon:spin/sqlite@2.0.0` (`spin_sdk::sqlite`) and
/// `spin:sqlite/sqlite@3.0.0` (`spin_sdk::sqlite3`): both have the same shape.
macro_rules! sqlite_routes {
    ($module:ident, $sdk:ident) => {
        mod $module {
            use super::*;
            use spin_sdk::$sdk::{Connection, Error, QueryResult, Value};

            pub fn error(e: &Error) -> Json {
                match e {
                    Error::NoSuchDatabase => err("no-such-database", None),
                    Error::AccessDenied => err("access-denied", None),
                    Error::InvalidConnection => err("invalid-connection", None),
                    Error::DatabaseFull => err("database-full", None),
                    Error::Io(m) => err("io", Some(m)),
                }
            }

            fn value(v: &Value) -> Json {
                match v {
                    Value::Integer(i) => json!({ "integer": i }),
                    Value::Real(r) => json!({ "real": r }),
                    Value::Text(t) => json!({ "text": t }),
                    Value::Blob(b) => json!({ "blob": b }),
                    Value::Null => json!("null"),
                }
            }

            fn result(r: QueryResult) -> Json {
                let rows: Vec<Json> = r
                    .rows
                    .iter()
                    .map(|row| Json::Array(row.values.iter().map(value).collect()))
                    .collect();
                json!({ "columns": r.columns, "rows": rows })
            }

            fn count(conn: &Connection, table: &str) -> Result<i64, Error> {
                let r = conn.execute(&format!("SELECT COUNT(*) FROM {table}"), &[])?;
                match r.rows.first().and_then(|row| row.values.first()) {
                    Some(Value::Integer(n)) => Ok(*n),
                    other => Err(Error::Io(format!("COUNT(*) returned {other:?}"))),
                }
            }

            pub fn open(label: &str) -> Result<Connection, Json> {
                Connection::open(label).map_err(|e| error(&e))
            }

            pub fn roundtrip(label: &str) -> Json {
                let mut out = Map::new();
                let conn = match open(label) {
                    Ok(c) => {
                        out.insert("open".into(), ok(true));
                        c
                    }
                    Err(e) => {
                        out.insert("open".into(), e);
                        return Json::Object(out);
                    }
                };
                let exec = |sql: &str, params: &[Value]| conn.execute(sql, params).map(result);
                record(&mut out, "drop", exec("DROP TABLE IF EXISTS ks_types", &[]), error);
                record(
                    &mut out,
                    "create",
                    exec("CREATE TABLE ks_types (i INTEGER, r REAL, t TEXT, b BLOB, n)", &[]),
                    error,
                );
                let params = [
                    Value::Integer(i64::MAX),
                    Value::Real(-2.5),
                    Value::Text("héllo ✓".into()),
                    Value::Blob(vec![0, 1, 2, 255]),
                    Value::Null,
                ];
                record(
                    &mut out,
                    "insert",
                    exec("INSERT INTO ks_types (i, r, t, b, n) VALUES (?, ?, ?, ?, ?)", &params),
                    error,
                );
                let params = [
                    Value::Integer(i64::MIN),
                    Value::Real(0.0),
                    Value::Text(String::new()),
                    Value::Blob(Vec::new()),
                    Value::Integer(7),
                ];
                record(
                    &mut out,
                    "insert_2",
                    exec("INSERT INTO ks_types (i, r, t, b, n) VALUES (?, ?, ?, ?, ?)", &params),
                    error,
                );
                record(
                    &mut out,
                    "select",
                    exec("SELECT i, r, t, b, n FROM ks_types ORDER BY i DESC", &[]),
                    error,
                );
                record(
                    &mut out,
                    "select_param",
                    exec(
                        "SELECT t FROM ks_types WHERE i = ? AND b = ?",
                        &[Value::Integer(i64::MAX), Value::Blob(vec![0, 1, 2, 255])],
                    ),
                    error,
                );
                record(
                    &mut out,
                    "bad_sql",
                    exec("SELEKT nonsense", &[]),
                    error,
                );

                // A transaction spanning several execute calls on one connection.
                let _ = exec("DROP TABLE IF EXISTS ks_tx", &[]);
                let _ = exec("CREATE TABLE ks_tx (v TEXT)", &[]);
                record(&mut out, "begin", exec("BEGIN", &[]), error);
                let _ = exec("INSERT INTO ks_tx (v) VALUES ('a')", &[]);
                record(&mut out, "count_in_tx", count(&conn, "ks_tx"), error);
                record(&mut out, "rollback", exec("ROLLBACK", &[]), error);
                record(&mut out, "count_after_rollback", count(&conn, "ks_tx"), error);
                let _ = exec("BEGIN", &[]);
                let _ = exec("INSERT INTO ks_tx (v) VALUES ('b')", &[]);
                let _ = exec("INSERT INTO ks_tx (v) VALUES ('c')", &[]);
                record(&mut out, "commit", exec("COMMIT", &[]), error);
                record(&mut out, "count_after_commit", count(&conn, "ks_tx"), error);
                Json::Object(out)
            }

            /// BEGIN and INSERT, then return without COMMIT: the host must roll that back
            /// when the request ends, never hand the open transaction to a later request.
            pub fn dangling(label: &str) -> Json {
                let conn = match open(label) {
                    Ok(c) => c,
                    Err(e) => return e,
                };
                let run = || -> Result<i64, Error> {
                    conn.execute("CREATE TABLE IF NOT EXISTS ks_dangling (v TEXT)", &[])?;
                    conn.execute("BEGIN", &[])?;
                    conn.execute("INSERT INTO ks_dangling (v) VALUES ('uncommitted')", &[])?;
                    count(&conn, "ks_dangling")
                };
                match run() {
                    Ok(n) => ok(n),
                    Err(e) => error(&e),
                }
            }

            pub fn exec(label: &str, sql: &str) -> Json {
                match open(label) {
                    Ok(c) => match c.execute(sql, &[]) {
                        Ok(r) => ok(result(r)),
                        Err(e) => error(&e),
                    },
                    Err(e) => e,
                }
            }

            pub fn put(label: &str, key: &str, val: &str) -> Json {
                let conn = match open(label) {
                    Ok(c) => c,
                    Err(e) => return e,
                };
                let run = || -> Result<(), Error> {
                    conn.execute(
                        "CREATE TABLE IF NOT EXISTS ks_kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)",
                        &[],
                    )?;
                    conn.execute(
                        "INSERT INTO ks_kv (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                        &[Value::Text(key.into()), Value::Text(val.into())],
                    )?;
                    Ok(())
                };
                match run() {
                    Ok(()) => ok(true),
                    Err(e) => error(&e),
                }
            }

            pub fn get(label: &str, key: &str) -> Json {
                let conn = match open(label) {
                    Ok(c) => c,
                    Err(e) => return e,
                };
                match conn.execute("SELECT v FROM ks_kv WHERE k = ?", &[Value::Text(key.into())]) {
                    Ok(r) => match r.rows.first().and_then(|row| row.values.first()) {
                        Some(Value::Text(t)) => ok(t.clone()),
                        _ => ok(Json::Null),
                    },
                    Err(e) => error(&e),
                }
            }
        }
    };
}

sqlite_routes!(sqlite2, sqlite);
sqlite_routes!(sqlite3, sqlite3);

/// `last-insert-rowid` and `changes`, which only sqlite@3.0.0 has.
fn sqlite3_rowid(label: &str) -> Json {
    use spin_sdk::sqlite3::Value;
    let conn = match sqlite3::open(label) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let mut out = Map::new();
    let _ = conn.execute("DROP TABLE IF EXISTS ks_rowid", &[]);
    let _ = conn.execute(
        "CREATE TABLE ks_rowid (id INTEGER PRIMARY KEY, v TEXT)",
        &[],
    );
    let _ = conn.execute(
        "INSERT INTO ks_rowid (id, v) VALUES (41, 'x'), (42, 'y')",
        &[],
    );
    out.insert("last_insert_rowid".into(), json!(conn.last_insert_rowid()));
    let _ = conn.execute(
        "UPDATE ks_rowid SET v = ? WHERE id >= 0",
        &[Value::Text("z".into())],
    );
    out.insert("changes".into(), json!(conn.changes()));
    Json::Object(out)
}

// ------------------------------------------------------------------------------- limits

/// Routes that exceed the host's instance limits on purpose.
mod limits {
    use super::*;

    /// Holds `mib` MiB, one written MiB at a time; `0`: without bound.
    pub fn alloc_mib(mib: u64) -> Json {
        let mut held: Vec<Vec<u8>> = Vec::new();
        while mib == 0 || (held.len() as u64) < mib {
            held.push(vec![1u8; 1 << 20]);
        }
        ok(held.len())
    }

    /// Never returns, never calls the host.
    pub fn spin_forever() -> Json {
        let mut n = 0u64;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    /// Waits in a host call (a WASI clock poll).
    pub fn sleep_ms(ms: u64) -> Json {
        std::thread::sleep(std::time::Duration::from_millis(ms));
        ok(ms)
    }

    /// Takes the write turn (`BEGIN IMMEDIATE`), writes `key`, and spins without committing.
    pub fn hold_and_spin(label: &str, key: &str, val: &str) -> Json {
        use spin_sdk::sqlite3::Value;
        let conn = match sqlite3::open(label) {
            Ok(c) => c,
            Err(e) => return e,
        };
        let run = || -> Result<(), spin_sdk::sqlite3::Error> {
            conn.execute(
                "CREATE TABLE IF NOT EXISTS ks_kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)",
                &[],
            )?;
            conn.execute("BEGIN IMMEDIATE", &[])?;
            conn.execute(
                "INSERT INTO ks_kv (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                &[Value::Text(key.into()), Value::Text(val.into())],
            )?;
            Ok(())
        };
        match run() {
            Ok(()) => spin_forever(),
            Err(e) => sqlite3::error(&e),
        }
    }
}

/// A write transaction that holds the write lock for `ms` between two inserts (a guest waiting
/// on the network inside its transaction): what each step returned, and the rows after.
fn sqlite3_hold(label: &str, ms: u64) -> Json {
    let conn = match sqlite3::open(label) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let mut out = Map::new();
    let mut step = |name: &str, sql: &str| {
        let r = conn.execute(sql, &[]).map(|_| true);
        record(&mut out, name, r, sqlite3::error);
    };
    step("create", "CREATE TABLE IF NOT EXISTS ks_hold (v TEXT)");
    step("begin", "BEGIN IMMEDIATE");
    step("insert", "INSERT INTO ks_hold VALUES ('before')");
    std::thread::sleep(std::time::Duration::from_millis(ms));
    step("insert_after", "INSERT INTO ks_hold VALUES ('after')");
    step("commit", "COMMIT");
    step("rollback", "ROLLBACK");
    let rows = conn.execute("SELECT v FROM ks_hold ORDER BY rowid", &[]);
    let rows = rows.map(|r| {
        let texts = r
            .rows
            .iter()
            .filter_map(|row| row.get::<&str>(0).map(str::to_owned));
        texts.collect::<Vec<_>>()
    });
    record(&mut out, "rows", rows, sqlite3::error);
    Json::Object(out)
}

// ------------------------------------------------------------------------------- redis

mod redis {
    use super::*;
    use spin_sdk::redis::{Connection, Error, RedisParameter, RedisResult};

    pub fn error(e: &Error) -> Json {
        match e {
            Error::InvalidAddress => err("invalid-address", None),
            Error::TooManyConnections => err("too-many-connections", None),
            Error::TypeError => err("type-error", None),
            Error::Other(m) => err("other", Some(m)),
        }
    }

    fn results(rs: Vec<RedisResult>) -> Json {
        Json::Array(
            rs.iter()
                .map(|r| match r {
                    RedisResult::Nil => json!("nil"),
                    RedisResult::Status(s) => json!({ "status": s }),
                    RedisResult::Int64(i) => json!({ "int64": i }),
                    RedisResult::Binary(b) => json!({ "binary": text(b) }),
                })
                .collect(),
        )
    }

    fn bin(s: &str) -> RedisParameter {
        RedisParameter::Binary(s.as_bytes().to_vec())
    }

    pub fn roundtrip(url: &str, prefix: &str) -> Json {
        let mut out = Map::new();
        let conn = match Connection::open(url) {
            Ok(c) => {
                out.insert("open".into(), ok(true));
                c
            }
            Err(e) => {
                out.insert("open".into(), error(&e));
                return Json::Object(out);
            }
        };
        let key = format!("{prefix}:key");
        let counter = format!("{prefix}:counter");
        let set = format!("{prefix}:set");
        let missing = format!("{prefix}:missing");
        record(
            &mut out,
            "publish",
            conn.publish(&format!("{prefix}:channel"), b"hello".as_ref()),
            error,
        );
        record(&mut out, "set", conn.set(&key, b"v1".as_ref()), error);
        let get = |k: &str| {
            conn.get(k)
                .map(|v| v.map(|b| text(&b)).unwrap_or(Json::Null))
        };
        record(&mut out, "get", get(&key), error);
        record(&mut out, "get_missing", get(&missing), error);
        record(&mut out, "incr", conn.incr(&counter), error);
        record(&mut out, "incr_again", conn.incr(&counter), error);
        record(&mut out, "incr_wrong_type", conn.incr(&key), error);
        let members = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        record(
            &mut out,
            "sadd",
            conn.sadd(&set, &members(&["a", "b", "c"])),
            error,
        );
        record(
            &mut out,
            "sadd_again",
            conn.sadd(&set, &members(&["a"])),
            error,
        );
        record(
            &mut out,
            "srem",
            conn.srem(&set, &members(&["b", "zz"])),
            error,
        );
        let smembers = conn.smembers(&set).map(|mut m| {
            m.sort();
            m
        });
        record(&mut out, "smembers", smembers, error);
        record(
            &mut out,
            "del",
            conn.del(&[key.clone(), counter.clone(), missing.clone()]),
            error,
        );
        record(&mut out, "get_after_del", get(&key), error);

        let eval = |script: &str, keys: &[&str], args: Vec<RedisParameter>| {
            let mut params = vec![bin(script), RedisParameter::Int64(keys.len() as i64)];
            params.extend(keys.iter().map(|k| bin(k)));
            params.extend(args);
            conn.execute("EVAL", &params).map(results)
        };
        record(&mut out, "eval_nil", eval("return nil", &[], vec![]), error);
        record(
            &mut out,
            "eval_status",
            eval("return redis.status_reply('FINE')", &[], vec![]),
            error,
        );
        let lua_counter = format!("{prefix}:lua");
        record(
            &mut out,
            "eval_int",
            eval(
                "return redis.call('INCRBY', KEYS[1], ARGV[1])",
                &[&lua_counter],
                vec![RedisParameter::Int64(5)],
            ),
            error,
        );
        record(
            &mut out,
            "eval_binary",
            eval(
                "return ARGV[1]",
                &[],
                vec![RedisParameter::Binary(b"bytes\x01".to_vec())],
            ),
            error,
        );
        record(
            &mut out,
            "eval_array",
            eval("return {1, 'two', 3}", &[], vec![]),
            error,
        );
        record(
            &mut out,
            "eval_error",
            eval("return redis.error_reply('boom')", &[], vec![]),
            error,
        );
        let sha = conn
            .execute("SCRIPT", &[bin("LOAD"), bin("return 'from-sha'")])
            .ok()
            .and_then(|r| match r.first() {
                Some(RedisResult::Binary(b)) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            });
        let evalsha = match sha {
            Some(sha) => conn
                .execute("EVALSHA", &[bin(&sha), RedisParameter::Int64(0)])
                .map(results),
            None => Err(Error::Other("SCRIPT LOAD returned no sha".into())),
        };
        record(&mut out, "evalsha", evalsha, error);
        record(
            &mut out,
            "execute_set",
            conn.execute("SET", &[bin(&key), bin("x")]).map(results),
            error,
        );
        let _ = conn.del(&[key, set, lua_counter]);
        Json::Object(out)
    }

    pub fn publish(url: &str, channel: &str, payload: &str) -> Json {
        match Connection::open(url) {
            Ok(c) => match c.publish(channel, payload.as_bytes()) {
                Ok(()) => ok(true),
                Err(e) => error(&e),
            },
            Err(e) => error(&e),
        }
    }

    /// `arg=CMD&arg=a1&arg=a2...`: one `execute` call; numeric arguments are sent as int64.
    pub fn execute(url: &str, args: &[String]) -> Json {
        let Some((command, rest)) = args.split_first() else {
            return err("bad-request", Some("no arg"));
        };
        let params: Vec<RedisParameter> = rest
            .iter()
            .map(|a| match a.parse::<i64>() {
                Ok(i) => RedisParameter::Int64(i),
                Err(_) => bin(a),
            })
            .collect();
        match Connection::open(url) {
            Ok(c) => match c.execute(command, &params) {
                Ok(r) => ok(results(r)),
                Err(e) => error(&e),
            },
            Err(e) => error(&e),
        }
    }
}

// ------------------------------------------------------------------------------- variables

fn variables(name: &str) -> Json {
    use spin_sdk::variables::Error;
    use spin_sdk::wit::wasi::config::store as config;
    let v2 = match spin_sdk::variables::get(name) {
        Ok(v) => ok(v),
        Err(Error::InvalidName(m)) => err("invalid-name", Some(&m)),
        Err(Error::Undefined(m)) => err("undefined", Some(&m)),
        Err(Error::Provider(m)) => err("provider", Some(&m)),
        Err(Error::Other(m)) => err("other", Some(&m)),
    };
    let wasi = match config::get(name) {
        Ok(v) => ok(v.map(Json::String).unwrap_or(Json::Null)),
        Err(config::Error::Upstream(m)) => err("upstream", Some(&m)),
        Err(config::Error::Io(m)) => err("io", Some(&m)),
    };
    json!({ "v2": v2, "wasi_config": wasi })
}

fn config_all() -> Json {
    use spin_sdk::wit::wasi::config::store as config;
    match config::get_all() {
        Ok(mut all) => {
            all.sort();
            let map: Map<String, Json> =
                all.into_iter().map(|(k, v)| (k, Json::String(v))).collect();
            ok(Json::Object(map))
        }
        Err(config::Error::Upstream(m)) => err("upstream", Some(&m)),
        Err(config::Error::Io(m)) => err("io", Some(&m)),
    }
}

// ------------------------------------------------------------------------------- outbound HTTP

async fn outbound_http(url: &str, method: &str, body: Vec<u8>) -> Json {
    let method = match method {
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        _ => Method::Get,
    };
    let req = Request::builder()
        .method(method)
        .uri(url)
        .header("x-kitchen-sink", "outbound")
        .body(body)
        .build();
    match spin_sdk::http::send::<_, Response>(req).await {
        Ok(resp) => {
            let body = resp.body();
            let body_json: Json = serde_json::from_slice(body).unwrap_or_else(|_| text(body));
            ok(json!({ "status": resp.status(), "body": body_json }))
        }
        Err(spin_sdk::http::SendError::Http(code)) => {
            // The wasi:http error-code variant, e.g. `HttpRequestDenied`.
            let debug = format!("{code:?}");
            let name = debug
                .trim_start_matches("ErrorCode::")
                .split(['(', ' ', '{'])
                .next()
                .unwrap_or("")
                .to_owned();
            err(&name, Some(&debug))
        }
        Err(e) => err("send-error", Some(&e.to_string())),
    }
}

// ------------------------------------------------------------------------------- wasi:sockets

/// Outbound TCP and UDP through `wasi:sockets` (Rust's std on wasm32-wasip2). An error is
/// `{"error": "<step>", "detail": "<io::ErrorKind>: <message>"}`, the step being `addr`,
/// `connect`, `bind`, `write`, `read`, `send` or `recv`.
mod sockets {
    use super::{err, ok, Json};
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream, UdpSocket};

    fn io_err(step: &str, e: std::io::Error) -> Json {
        err(step, Some(&format!("{:?}: {e}", e.kind())))
    }

    fn parse(addr: &str) -> Result<SocketAddr, Json> {
        addr.parse()
            .map_err(|e| err("addr", Some(&format!("{addr:?}: {e}"))))
    }

    /// Connects to `addr`, writes `send` and a newline, and answers what the peer sent back
    /// before closing.
    pub fn tcp(addr: &str, send: &str) -> Json {
        let addr = match parse(addr) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let mut stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => return io_err("connect", e),
        };
        if let Err(e) = stream.write_all(format!("{send}\n").as_bytes()) {
            return io_err("write", e);
        }
        let mut reply = String::new();
        match stream.read_to_string(&mut reply) {
            Ok(_) => ok(reply),
            Err(e) => io_err("read", e),
        }
    }

    /// Sends `send` in one datagram to `addr` from a wildcard-bound socket and answers the first
    /// datagram that comes back.
    pub fn udp(addr: &str, send: &str) -> Json {
        let addr = match parse(addr) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let socket = match UdpSocket::bind("0.0.0.0:0") {
            Ok(s) => s,
            Err(e) => return io_err("bind", e),
        };
        if let Err(e) = socket.send_to(send.as_bytes(), addr) {
            return io_err("send", e);
        }
        let mut buf = [0u8; 1024];
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => ok(format!(
                "{} from {from}",
                String::from_utf8_lossy(&buf[..n])
            )),
            Err(e) => io_err("recv", e),
        }
    }
}

// ------------------------------------------------------------------------------- echo

fn echo(req: &Request) -> Json {
    let headers: Map<String, Json> = req
        .headers()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                Json::String(v.as_str().unwrap_or("<binary>").to_owned()),
            )
        })
        .collect();
    let who = spin_sdk::variables::get("who").ok();
    json!({
        "who": who,
        "method": req.method().to_string(),
        "path": req.path(),
        "query": req.query(),
        "headers": headers,
        "body": text(req.body()),
    })
}
