//! End to end: customers are who their token says. The app is started with the test identity
//! provider's JWKS (`e2e::test_jwks`: an ES256 and an RS256 key); tokens are minted here exactly
//! as an identity provider would, and forged the ways attackers do.

use e2e::{admin_auth, assert_problem, customer_auth, customer_claims, test_jwks, test_keys, Shop};
use serde_json::{json, Value};

fn boot_with_product() -> Shop {
    let shop = Shop::boot();
    let put = shop.put_product(
        "ID-1",
        &json!({"name": "Mug", "price": 500, "currency": "EUR", "stock": 10}),
    );
    assert_eq!(put.status, 200, "{}", put.text());
    shop
}

const ITEMS: &str = r#"[{"sku": "ID-1", "quantity": 1}]"#;

fn items() -> Value {
    serde_json::from_str(ITEMS).unwrap()
}

#[test]
fn customers_see_only_their_own_orders_and_the_admin_sees_all() {
    let shop = boot_with_product();
    // No user_id in the body: the order is the token's subject's.
    let alice = customer_auth("alice").1;
    let token = alice.trim_start_matches("Bearer ");
    let created = shop.order_with_token(Some(token), "alice-1", &json!({"items": items()}));
    assert_eq!(created.status, 201, "{}", created.text());
    let order = created.json();
    assert_eq!(order["user_id"], "alice");
    let id = order["order_id"].as_str().unwrap();

    let own = shop.send_as("alice", "GET", &format!("/api/orders/{id}"));
    assert_eq!((own.status, own.json()), (200, order.clone()));

    // Bob learns nothing about it: not found, exactly like an order that does not exist.
    let read = shop.send_as("bob", "GET", &format!("/api/orders/{id}"));
    assert_problem(&read, 404, None);
    let list = shop.send_as("bob", "GET", "/api/orders?user_id=alice");
    assert_problem(&list, 404, Some("user_id"));
    let bobs = shop.send_as("bob", "GET", "/api/orders").json();
    assert_eq!(bobs, json!({"orders": [], "next_cursor": null}));
    let cancel = shop.send_as("bob", "POST", &format!("/api/orders/{id}/cancel"));
    assert_problem(&cancel, 404, None);
    assert_eq!(
        shop.levels("ID-1"),
        (9, 1, 0),
        "bob's cancel released nothing"
    );
    assert_eq!(shop.get_order(id).json()["status"], "PENDING_PAYMENT");

    // The admin reads any order and any customer's list, but places and cancels none.
    let (k, v) = admin_auth();
    let got = shop.get_order(id);
    assert_eq!((got.status, got.json()), (200, order.clone()));
    let listed = shop
        .app
        .send("GET", "/api/orders?user_id=alice", &[(k, &v)], None)
        .unwrap();
    assert_eq!(listed.json()["orders"], json!([order]));
    let admin_cancel = shop
        .app
        .send(
            "POST",
            &format!("/api/orders/{id}/cancel"),
            &[(k, &v)],
            None,
        )
        .unwrap();
    assert_problem(&admin_cancel, 401, None);

    let mine = shop.send_as("alice", "POST", &format!("/api/orders/{id}/cancel"));
    assert_eq!(mine.status, 200, "{}", mine.text());
    assert_eq!(shop.levels("ID-1"), (10, 0, 0));
}

/// Every way a token can be wrong, each with what makes it wrong.
fn refused_tokens() -> Vec<(&'static str, Option<String>)> {
    let keys = test_keys();
    let now = devtools::unix_now();
    let with = |key: &str, value: Value| {
        let mut c = customer_claims("alice");
        c[key] = value;
        c
    };
    let es = |c: Value| keys.es256.sign(&c).unwrap();
    let forger = devtools::DevKey::generate_es256(Some("e2e-es256")).unwrap();
    let rsa_as_es_kid = devtools::DevKey::from_pem(
        jsonwebtoken::Algorithm::RS256,
        keys.rs256.private_pem(),
        Some("e2e-es256"),
    )
    .unwrap();
    vec![
        ("missing", None),
        ("not a JWT", Some("not-a-jwt".into())),
        (
            "expired beyond the leeway",
            Some(es(with("exp", (now - 120).into()))),
        ),
        ("not valid yet", Some(es(with("nbf", (now + 600).into())))),
        (
            "alg none",
            Some(devtools::unsigned_token(&customer_claims("alice"))),
        ),
        (
            "HS256 keyed with the RSA public key",
            Some(
                devtools::hs256_token(
                    keys.rs256.public_pem().as_bytes(),
                    Some("e2e-rs256"),
                    &customer_claims("alice"),
                )
                .unwrap(),
            ),
        ),
        (
            "HS256 keyed with the JWKS",
            Some(
                devtools::hs256_token(test_jwks().as_bytes(), None, &customer_claims("alice"))
                    .unwrap(),
            ),
        ),
        (
            "wrong issuer",
            Some(es(with("iss", "https://evil.example".into()))),
        ),
        (
            "wrong audience",
            Some(es(with("aud", "another-api".into()))),
        ),
        (
            "signed by a key not in the JWKS",
            Some(forger.sign(&customer_claims("alice")).unwrap()),
        ),
        (
            "kid of a key of another algorithm",
            Some(rsa_as_es_kid.sign(&customer_claims("alice")).unwrap()),
        ),
    ]
}

#[test]
fn refused_tokens_are_401_with_a_bearer_challenge_and_store_nothing() {
    let shop = boot_with_product();
    // Applies the schema so the counts below can be read.
    assert_eq!(shop.send_as("alice", "GET", "/api/orders").status, 200);
    for (why, token) in refused_tokens() {
        let body = json!({"user_id": "alice", "items": items()});
        let resp = shop.order_with_token(token.as_deref(), &format!("k-{why}"), &body);
        assert_problem(&resp, 401, None);
        let challenge = resp
            .header("www-authenticate")
            .unwrap_or_else(|| panic!("{why}: no challenge"));
        assert!(challenge.starts_with("Bearer "), "{why}: {challenge}");
        assert_eq!(
            challenge.contains(r#"error="invalid_token""#),
            token.is_some(),
            "{why}: {challenge}"
        );
        let bearer = token.map(|t| format!("Bearer {t}")).unwrap_or_default();
        for path in [
            "/api/orders?user_id=alice",
            "/api/orders/ord_00000000000000000000000000000000",
        ] {
            let r = shop
                .app
                .send("GET", path, &[("authorization", &bearer)], None)
                .unwrap();
            assert_problem(&r, 401, None);
            assert!(r.header("www-authenticate").is_some(), "{why} {path}");
        }
    }
    assert_eq!(shop.count_rows("orders"), 0);
    assert_eq!(shop.count_rows("idempotency_keys"), 0);
    assert_eq!(shop.levels("ID-1"), (10, 0, 0));
}

#[test]
fn both_keys_of_the_jwks_are_accepted_and_kid_selects_the_key() {
    let shop = boot_with_product();
    let keys = test_keys();
    let rs = keys.rs256.sign(&customer_claims("carol")).unwrap();
    let es = keys.es256.sign(&customer_claims("carol")).unwrap();
    let created = shop.order_with_token(
        Some(&rs),
        "carol-rs",
        &json!({"user_id": "carol", "items": items()}),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["order_id"].as_str().unwrap().to_owned();
    for token in [&rs, &es] {
        let r = shop
            .app
            .send(
                "GET",
                &format!("/api/orders/{id}"),
                &[("authorization", &format!("Bearer {token}"))],
                None,
            )
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // Within the leeway (a minute of clock skew) a just-expired token still works.
    let mut late = customer_claims("carol");
    late["exp"] = (devtools::unix_now() - 20).into();
    let late = keys.es256.sign(&late).unwrap();
    let r = shop
        .app
        .send(
            "GET",
            "/api/orders",
            &[("authorization", &format!("Bearer {late}"))],
            None,
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn a_body_user_id_other_than_the_subject_is_403_and_stores_nothing() {
    let shop = boot_with_product();
    assert_eq!(shop.send_as("alice", "GET", "/api/orders").status, 200);
    let token = customer_auth("alice").1;
    let token = token.trim_start_matches("Bearer ");
    let resp = shop.order_with_token(
        Some(token),
        "for-bob",
        &json!({"user_id": "bob", "items": items()}),
    );
    let p = assert_problem(&resp, 403, Some("user_id"));
    assert_eq!(p["status"], 403);
    assert_eq!(shop.count_rows("orders"), 0);
    assert_eq!(
        shop.count_rows("idempotency_keys"),
        0,
        "the key was not claimed"
    );
    assert_eq!(shop.levels("ID-1"), (10, 0, 0));
    // The same key is free for the corrected request.
    let ok = shop.order_with_token(
        Some(token),
        "for-bob",
        &json!({"user_id": "alice", "items": items()}),
    );
    assert_eq!(ok.status, 201, "{}", ok.text());
}
