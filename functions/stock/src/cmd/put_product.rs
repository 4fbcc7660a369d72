//! `PUT /api/products/{sku}` (admin): create a product (name, price, currency and, optionally,
//! its initial `stock`), or change an existing product's name, price and currency.
//!
//! `stock` on an existing product is refused (422 naming `stock`): "set available to N" would
//! silently undo every reservation and adjustment made since the admin read the product. Stock of
//! an existing product changes only through `POST /api/products/{sku}/stock-adjustments`
//! (a delta, see adjust.rs). Whether the product exists is decided inside put_product.lua, in the
//! same atomic step as the write.
//!
//! Concurrent admin writers are serialised by a per-SKU lock (`SET NX PX` with a random owner
//! token, released by compare-and-delete). The lock alone is not enough: a writer paused past the
//! lock's TTL would write after the next owner. So acquiring also issues a fencing token (INCR),
//! and put_product.lua writes only if that token is still the newest; a stale writer gets 409.
//! A writer that finds the lock held gets 409 `lock-busy` at once (with `Retry-After`), rather
//! than waiting inside a request.

use shop_adapter::auth::require_bearer;
use shop_adapter::body::{parse_object, Fields};
use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use shop_domain::product::{ProductInput, RawProduct};
use shop_domain::Sku;
use spin_sdk::http::Request;

use crate::redis::{bad_reply, keys, Store, LOCK_ACQUIRE, LOCK_RELEASE, PUT_PRODUCT};
use crate::view::ProductView;

/// Long enough for one write round trip with a wide margin; short enough that a crashed writer
/// blocks others only briefly.
const LOCK_TTL_MS: u64 = 5_000;

/// The most a product body may be: a few times the largest valid one (a 200-character name, even
/// written as `\u` escapes, and three numbers: under 3 KiB).
pub const BODY_LIMIT: usize = 8 * 1024;

pub fn handle(req: &Request, sku: &str) -> HandlerResult {
    let admin = shop_adapter::vars::get("admin_token")
        .map_err(|e| Problem::internal("read variable admin_token", e))?;
    require_bearer(req, &admin)?;
    let sku = Sku::parse(sku).map_err(|e| Problem::unprocessable("sku", e.to_string()))?;
    let body = parse_object(req.body())?;
    let f = Fields::root(&body);
    let input = ProductInput::parse(RawProduct {
        name: f.str("name")?.to_owned(),
        price: f.i64("price")?,
        currency: f.str("currency")?.to_owned(),
        stock: f.opt_i64("stock")?,
    })
    .map_err(|e| Problem::unprocessable(&e.field, e.detail))?;

    let store = Store::open()?;
    let owner = owner_token()?;
    let lock = keys::lock(sku.as_str());
    let fence_key = keys::fence(sku.as_str());
    let ttl = LOCK_TTL_MS.to_string();
    let acquired = store.run(&LOCK_ACQUIRE, &[&lock, &fence_key], &[&owner, &ttl])?;
    let fence = match acquired.as_slice() {
        [ok, fence] if ok == "OK" => fence.clone(),
        [busy, _pttl] if busy == "BUSY" => {
            let mut resp = Problem::conflict(
                "lock-busy",
                format!("another admin write to {sku} is in progress; retry shortly"),
            )
            .with("sku", sku.as_str())
            .into_response();
            resp.set_header("retry-after", "1");
            return Ok(resp);
        }
        _ => return Err(bad_reply(&LOCK_ACQUIRE, &acquired)),
    };

    let written = write(&store, &sku, &fence, &input);
    // Always release, whatever the write did; NOT_OWNER only means our lock had expired.
    if let Err(e) = store.run(&LOCK_RELEASE, &[&lock], &[&owner]) {
        eprintln!("stock: releasing lock of {sku} failed (it expires by itself): {e:?}");
    }
    let product = written?;
    Ok(json(200, &product))
}

fn write(
    store: &Store,
    sku: &Sku,
    fence: &str,
    input: &ProductInput,
) -> Result<ProductView, Problem> {
    let price = input.price.minor().to_string();
    // "" tells the script that no stock was sent.
    let stock = input.stock.map(|s| s.get().to_string()).unwrap_or_default();
    let reply = store.run(
        &PUT_PRODUCT,
        &[&keys::product(sku.as_str()), &keys::fence(sku.as_str())],
        &[
            fence,
            &input.name,
            &price,
            input.price.currency().as_str(),
            &stock,
        ],
    )?;
    match reply.split_first() {
        Some((ok, fields)) if ok == "OK" => ProductView::from_fields(sku.as_str(), fields, &PUT_PRODUCT),
        Some((stale, _)) if stale == "STALE" => Err(Problem::conflict(
            "stale-write",
            format!("the write lock on {sku} expired and a newer writer took it; this write was refused, retry"),
        )
        .with("sku", sku.as_str())),
        Some((has, _)) if has == "HAS_STOCK" => Err(Problem::unprocessable(
            "stock",
            format!(
                "{sku} already exists: its stock changes only by POST /api/products/{sku}/stock-adjustments \
                 (a delta, so reservations are never overwritten); send name, price and currency without stock"
            ),
        )
        .with("sku", sku.as_str())),
        _ => Err(bad_reply(&PUT_PRODUCT, &reply)),
    }
}

/// 128 random bits, hex: identifies this lock holder so only it can release the lock.
fn owner_token() -> Result<String, Problem> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| Problem::internal("random owner token", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
