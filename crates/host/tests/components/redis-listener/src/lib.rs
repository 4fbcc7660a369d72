//! `redis-listener`: a `[[trigger.redis]]` handler for the host tests.
//!
//! Every message is first recorded with `RPUSH <list> <payload>` on the Redis at the component
//! variable `redis_url` (list name: variable `list`), so a test sees each delivery with
//! `redis-cli LRANGE`. Then a payload `fail` makes the handler return an error and `trap` makes it
//! panic, to prove that a failing handler does not end the subscription.

use spin_sdk::redis::{Connection, RedisParameter};

#[spin_sdk::redis_component]
fn on_message(payload: Vec<u8>) -> anyhow::Result<()> {
    let url = spin_sdk::variables::get("redis_url")?;
    let list = spin_sdk::variables::get("list").unwrap_or_else(|_| "received".to_owned());
    let conn = Connection::open(&url).map_err(|e| anyhow::anyhow!("open {url}: {e:?}"))?;
    conn.execute(
        "RPUSH",
        &[
            RedisParameter::Binary(list.into_bytes()),
            RedisParameter::Binary(payload.clone()),
        ],
    )
    .map_err(|e| anyhow::anyhow!("RPUSH: {e:?}"))?;
    match payload.as_slice() {
        b"fail" => anyhow::bail!("redis-listener: asked to fail"),
        b"trap" => panic!("redis-listener: asked to trap"),
        _ => {
            println!("redis-listener: got {}", String::from_utf8_lossy(&payload));
            Ok(())
        }
    }
}
