//! `all-imports`: calls at least one function of every interface spin-sdk 5.2 offers, so the
//! component imports them all (a component only imports what it calls). Instantiating it proves
//! the host links every interface; missing ones only show at instantiate time.
//!
//! - `GET /unsupported`: calls postgres (v2, 3.0.0, 4.0.0), mysql, mqtt and llm, and answers
//!   `{"<interface>": {"ok": ...} | {"error": "<debug>"}}` with status 200: the host must answer
//!   these with an error value, never a trap.
//! - `GET /supported`: one call each to sqlite (2.0.0, 3.0.0), key-value, wasi:keyvalue
//!   (store, atomics, batch), variables, wasi:config, redis (`?url=`) and outbound HTTP.
//! - any other path: `all-imports ok`.

use serde_json::{json, Map, Value as Json};
use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

#[http_component]
async fn handle(req: Request) -> impl IntoResponse {
    let report = match req.path() {
        "/unsupported" => unsupported(),
        "/supported" => supported(req.query()).await,
        _ => {
            return Response::builder()
                .status(200)
                .body("all-imports ok")
                .build()
        }
    };
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&report).unwrap_or_default())
        .build()
}

fn outcome<T: std::fmt::Debug, E: std::fmt::Debug>(r: Result<T, E>) -> Json {
    match r {
        Ok(v) => json!({ "ok": format!("{v:?}") }),
        Err(e) => json!({ "error": format!("{e:?}") }),
    }
}

fn unsupported() -> Json {
    let mut out = Map::new();
    let pg = "postgres://user:pass@127.0.0.1:1/db";
    out.insert(
        "postgres@2.0.0".into(),
        outcome(spin_sdk::pg::Connection::open(pg).map(|_| ())),
    );
    out.insert(
        "postgres@3.0.0".into(),
        outcome(spin_sdk::pg3::Connection::open(pg).map(|_| ())),
    );
    out.insert(
        "postgres@4.0.0".into(),
        outcome(spin_sdk::pg4::Connection::open(pg).map(|_| ())),
    );
    out.insert(
        "mysql@2.0.0".into(),
        outcome(spin_sdk::mysql::Connection::open("mysql://user:pass@127.0.0.1:1/db").map(|_| ())),
    );
    out.insert(
        "mqtt@2.0.0".into(),
        outcome(spin_sdk::mqtt::Connection::open("mqtt://127.0.0.1:1", "u", "p", 5).map(|_| ())),
    );
    out.insert(
        "llm@2.0.0/infer".into(),
        outcome(
            spin_sdk::llm::infer(spin_sdk::llm::InferencingModel::Llama2Chat, "hi").map(|_| ()),
        ),
    );
    out.insert(
        "llm@2.0.0/generate-embeddings".into(),
        outcome(
            spin_sdk::llm::generate_embeddings(
                spin_sdk::llm::EmbeddingModel::AllMiniLmL6V2,
                &["hi".to_owned()],
            )
            .map(|_| ()),
        ),
    );
    Json::Object(out)
}

async fn supported(query: &str) -> Json {
    use spin_sdk::wit::wasi::config::store as config;
    use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store};
    let redis_url = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("url="))
        .unwrap_or("redis://127.0.0.1:1")
        .replace("%3A", ":")
        .replace("%2F", "/");
    let mut out = Map::new();
    out.insert(
        "sqlite@2.0.0".into(),
        outcome(
            spin_sdk::sqlite::Connection::open_default()
                .and_then(|c| c.execute("SELECT 1", &[]))
                .map(|r| r.rows.len()),
        ),
    );
    out.insert(
        "sqlite@3.0.0".into(),
        outcome(spin_sdk::sqlite3::Connection::open_default().and_then(|c| {
            c.execute("SELECT 1", &[])?;
            Ok((c.last_insert_rowid(), c.changes()))
        })),
    );
    out.insert(
        "key-value@2.0.0".into(),
        outcome(spin_sdk::key_value::Store::open_default().and_then(|s| {
            s.set("all-imports", b"1")?;
            s.get("all-imports")
        })),
    );
    out.insert(
        "wasi:keyvalue".into(),
        outcome(store::open("default").and_then(|b| {
            let n = atomics::increment(&b, "all-imports:n", 1)?;
            let many = batch::get_many(&b, &["all-imports:n".to_owned()])?;
            Ok((n, many.len()))
        })),
    );
    out.insert(
        "variables@2.0.0".into(),
        outcome(spin_sdk::variables::get("who")),
    );
    out.insert("wasi:config".into(), outcome(config::get("who")));
    out.insert(
        "redis@2.0.0".into(),
        outcome(spin_sdk::redis::Connection::open(&redis_url).and_then(|c| c.incr("all-imports"))),
    );
    let req = Request::get("http://127.0.0.1:1/");
    let sent: Result<Response, _> = spin_sdk::http::send(req).await;
    out.insert(
        "wasi:http/outgoing-handler".into(),
        outcome(sent.map(|r| *r.status())),
    );
    Json::Object(out)
}
