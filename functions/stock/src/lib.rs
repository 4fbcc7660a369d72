//! The `stock` component: the product catalog and inventory, in Redis.
//!
//! Thin: parse the request (into `shop_domain` values), run one atomic step (a Lua script in
//! `src/lua/`, each stating what it guarantees), respond. Every client mistake is a
//! problem+json 4xx naming the field; a Redis outage is 503.
//!
//! Routes (the order component calls them through `http://stock.spin.internal`; the reservation
//! routes need the internal token):
//! - `PUT  /api/products/{sku}` (admin) and `GET /api/products/{sku}`
//! - `POST /api/products/{sku}/stock-adjustments` (admin)
//! - `POST /api/stock/reservations`, `GET /api/stock/reservations/{id}`
//! - `POST /api/stock/reservations/{id}/confirm`, `POST /api/stock/reservations/{id}/release`
//! - `POST /api/stock/reservations/expire` (the reservation TTL sweep on demand)
//! - `POST /api/stock/events/drain` (internal: the receiver over HTTP, no Redis trigger)
//! - `PUT /api/flash-sales/{sale_id}` (admin), `GET /api/flash-sales/{sale_id}`,
//!   `POST /api/flash-sales/{sale_id}/purchase` (customer token, Idempotency-Key),
//!   `GET /api/flash-sales/{sale_id}/tickets/{ticket_id}` (the buyer)
//!
//! Invariant: for each SKU, `available + reserved + sold` is set when the product is created and
//! changes after that only by stock adjustments, and `available` is never negative (see
//! `shop_domain::stock::StockLevels`).

// Handlers fail with `Problem`, the one error a request ends with (large on 64-bit targets only):
// boxing it would only add noise at every call site.
#![allow(clippy::result_large_err)]

use shop_adapter::auth::{require_admin, require_internal};
use shop_adapter::body::Incoming;
use shop_adapter::health;
use shop_adapter::ratelimit::answer;
use shop_adapter::respond::finish;
use shop_adapter::respond::method_not_allowed;
use shop_adapter::Problem;
use spin_sdk::http::{IncomingRequest, Method, Params, Request, Response, Router};
use spin_sdk::http_component;

mod cmd;
mod events;
mod guards;
mod redis;
mod settle;
mod tickets;
mod view;

const COMPONENT: &str = "stock";

fn param<'a>(params: &'a Params, name: &str) -> &'a str {
    params.get(name).unwrap_or_default()
}

/// Reads the body a route takes (its caller authenticated first, then at most the route's
/// limit), then routes.
#[http_component]
async fn handle(incoming: IncomingRequest) -> Response {
    let incoming = Incoming::new(incoming);
    let read = match body_limit(incoming.head()) {
        Ok(limit) => incoming.read_if(limit).await,
        Err(refused) => Err(refused),
    };
    match read {
        Ok(req) => route(req).await,
        Err(problem) => problem.into_response(),
    }
}

/// Who may call a route (`require_admin`, `require_internal`).
type CallerCheck = fn(&Request) -> Result<(), Problem>;

/// The routes that take a body, each with its caller's check and its limit; `None`: the route
/// reads no body.
fn body_limit(head: &Request) -> Result<Option<usize>, Problem> {
    let path = head.path().trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let (check, limit): (CallerCheck, usize) = match (head.method(), segments.as_slice()) {
        (Method::Put, ["api", "products", _]) => (require_admin, cmd::put_product::BODY_LIMIT),
        (Method::Post, ["api", "products", _, "stock-adjustments"]) => {
            (require_admin, cmd::adjust::BODY_LIMIT)
        }
        (Method::Post, ["api", "stock", "reservations"]) => {
            (require_internal, cmd::reserve::BODY_LIMIT)
        }
        (Method::Put, ["api", "flash-sales", _]) => (require_admin, cmd::put_sale::BODY_LIMIT),
        (Method::Post, ["api", "stock", "reservations", "expire"]) => {
            (require_internal, cmd::expire::BODY_LIMIT)
        }
        _ => return Ok(None),
    };
    check(head)?;
    Ok(Some(limit))
}

async fn route(req: Request) -> Response {
    let mut router = Router::new();
    router.get("/api/health/stock", |_req: Request, _params| health_route());
    router.any("/api/health/stock", |_req: Request, _params| {
        method_not_allowed("GET")
    });
    product_routes(&mut router);
    reservation_routes(&mut router);
    flash_sale_routes(&mut router);
    router.post("/api/stock/events/drain", |req: Request, _p| {
        finish(require_internal(&req).and_then(|()| cmd::drain::handle()))
    });
    router.any("/api/stock/events/drain", |_req: Request, _p| {
        method_not_allowed("POST")
    });
    router.any("/*", |_req: Request, _p| no_route());
    router.handle_async(req).await
}

/// The catalog: products (admin writes, anonymous reads limited per client address) and their
/// stock adjustments.
fn product_routes(router: &mut Router) {
    router.put("/api/products/:sku", |req: Request, p: Params| {
        finish(cmd::put_product::handle(&req, param(&p, "sku")))
    });
    router.get("/api/products/:sku", |req: Request, p: Params| {
        answer(guards::admit_product_read(&req), || {
            cmd::get_product::handle(param(&p, "sku"))
        })
    });
    router.any("/api/products/:sku", |_req: Request, _p| {
        method_not_allowed("GET, PUT")
    });
    router.post(
        "/api/products/:sku/stock-adjustments",
        |req: Request, p: Params| finish(cmd::adjust::handle(&req, param(&p, "sku"))),
    );
    router.any(
        "/api/products/:sku/stock-adjustments",
        |_req: Request, _p| method_not_allowed("POST"),
    );
}

/// Reservation routes are internal: only the order component (and repairs) may move stock.
fn reservation_routes(router: &mut Router) {
    router.post("/api/stock/reservations", |req: Request, _p| {
        let admission = require_internal(&req).and_then(|()| guards::admit_reserve());
        answer(admission, || cmd::reserve::handle(&req))
    });
    router.any("/api/stock/reservations", |_req: Request, _p| {
        method_not_allowed("POST")
    });
    router.post("/api/stock/reservations/expire", |req: Request, _p| {
        finish(cmd::expire::handle(&req))
    });
    // Before the `:id` routes: `expire` is not a reservation id.
    router.any("/api/stock/reservations/expire", |_req: Request, _p| {
        method_not_allowed("POST")
    });
    router.get("/api/stock/reservations/:id", |req: Request, p: Params| {
        finish(require_internal(&req).and_then(|()| cmd::get_reservation::handle(param(&p, "id"))))
    });
    router.any("/api/stock/reservations/:id", |_req: Request, _p| {
        method_not_allowed("GET")
    });
    router.post(
        "/api/stock/reservations/:id/confirm",
        |req: Request, p: Params| {
            finish(require_internal(&req).and_then(|()| cmd::confirm::handle(param(&p, "id"))))
        },
    );
    router.post(
        "/api/stock/reservations/:id/release",
        |req: Request, p: Params| {
            finish(require_internal(&req).and_then(|()| cmd::release::handle(param(&p, "id"))))
        },
    );
    router.any(
        "/api/stock/reservations/:id/:action",
        |_req: Request, p: Params| match param(&p, "action") {
            "confirm" | "release" => method_not_allowed("POST"),
            _ => no_route(),
        },
    );
}

/// Flash sales: the admin's sale, the buyers' purchases and tickets.
fn flash_sale_routes(router: &mut Router) {
    router.put("/api/flash-sales/:sale", |req: Request, p: Params| {
        finish(cmd::put_sale::handle(&req, param(&p, "sale")))
    });
    router.get("/api/flash-sales/:sale", |req: Request, p: Params| {
        finish(cmd::get_sale::handle(&req, param(&p, "sale")))
    });
    router.any("/api/flash-sales/:sale", |_req: Request, _p| {
        method_not_allowed("GET, PUT")
    });
    router.post(
        "/api/flash-sales/:sale/purchase",
        |req: Request, p: Params| cmd::purchase::handle(&req, param(&p, "sale")),
    );
    router.any("/api/flash-sales/:sale/purchase", |_req: Request, _p| {
        method_not_allowed("POST")
    });
    router.get(
        "/api/flash-sales/:sale/tickets/:ticket",
        |req: Request, p: Params| {
            finish(cmd::get_ticket::handle(
                &req,
                param(&p, "sale"),
                param(&p, "ticket"),
            ))
        },
    );
    router.any(
        "/api/flash-sales/:sale/tickets/:ticket",
        |_req: Request, _p| method_not_allowed("GET"),
    );
}

fn no_route() -> Response {
    Problem::not_found("no such route in the stock API").into_response()
}

fn health_route() -> Response {
    let redis = || -> anyhow::Result<()> {
        let url = shop_adapter::vars::get("redis_url")?;
        health::redis_check(&url)
    };
    health::report(COMPONENT, &[("redis", &redis)])
}
