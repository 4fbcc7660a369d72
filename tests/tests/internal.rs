//! Internal routes (what only the shop's own components or its scheduler may call) need the
//! internal token: anonymous calls and calls with another credential (the admin token included)
//! are 401 problems and change nothing.

use e2e::{admin_auth, assert_problem, Shop};
use serde_json::json;

#[test]
fn internal_routes_refuse_anonymous_and_wrong_tokens_and_change_nothing() {
    let shop = Shop::boot_without_cron();
    let put = shop.put_product(
        "INT-1",
        &json!({"name": "Mug", "price": 100, "currency": "EUR", "stock": 5}),
    );
    assert!(put.status == 200 || put.status == 201, "{}", put.text());
    let body = json!({"reservation_id": "int-1", "items": [{"sku": "INT-1", "quantity": 2}]});
    let held = shop.reserve(&body);
    assert_eq!(held.status, 201, "{}", held.text());
    let before = shop.levels("INT-1");
    assert_eq!(before, (3, 2, 0));

    let (ak, av) = admin_auth();
    let wrong = [
        vec![],
        vec![(ak, av.as_str())],
        vec![("authorization", "Bearer not-the-token")],
    ];
    let routes: [(&str, &str); 7] = [
        ("POST", "/api/stock/reservations"),
        ("GET", "/api/stock/reservations/int-1"),
        ("POST", "/api/stock/reservations/int-1/confirm"),
        ("POST", "/api/stock/reservations/int-1/release"),
        ("POST", "/api/stock/reservations/expire"),
        ("POST", "/api/orders/compensate"),
        ("POST", "/api/compensator/run"),
    ];
    let other = json!({"reservation_id": "int-2", "items": [{"sku": "INT-1", "quantity": 1}],
                       "now": "2100-01-01T00:00:00Z"});
    for (method, path) in routes {
        for headers in &wrong {
            let resp = shop
                .app
                .send_json(method, path, headers, &other)
                .expect("send");
            let p = assert_problem(&resp, 401, None);
            assert_eq!(p["credential"], "internal token", "{method} {path}: {p}");
        }
    }
    // Nothing moved: no second reservation, the first neither confirmed nor released nor
    // expired, and no repair ran.
    assert_eq!(shop.levels("INT-1"), before);
    let r = shop.get_reservation("int-1");
    assert_eq!(r.json()["status"], "RESERVED", "{}", r.text());
    let none = shop.get_reservation("int-2");
    assert_eq!(none.status, 404);
    assert!(
        !shop.app.stderr().contains("compensator: claimed"),
        "no run happened"
    );
}
