//! Verified customer tokens are remembered in Redis so later requests skip the signature check;
//! the memory never outlives what made the token valid: removing its key from the JWKS (a
//! rotation finished) refuses it again at once, although Redis still holds the entry of the
//! earlier JWKS.

use e2e::{customer_auth, test_keys, Shop};

#[test]
fn a_remembered_token_is_refused_once_its_key_leaves_the_jwks() {
    let mut shop = Shop::boot_without_cron();
    let (k, v) = customer_auth("cache-user");
    let first = shop
        .app
        .send("GET", "/api/orders", &[(k, &v)], None)
        .expect("GET");
    assert_eq!(first.status, 200, "{}", first.text());
    let remembered = shop
        .redis
        .cli(&["--raw", "KEYS", "auth:verified:*"])
        .expect("KEYS");
    assert_eq!(
        remembered.lines().count(),
        1,
        "verified once, remembered: {remembered:?}"
    );
    let again = shop
        .app
        .send("GET", "/api/orders", &[(k, &v)], None)
        .expect("GET");
    assert_eq!(again.status, 200, "{}", again.text());

    // The ES256 key that signed it is retired: only the RS256 key stays in the JWKS.
    let only_rsa = devtools::jwks(&[&test_keys().rs256]);
    shop.restart_without_cron_with(|b| b.variable("auth_jwks", only_rsa));
    let refused = shop
        .app
        .send("GET", "/api/orders", &[(k, &v)], None)
        .expect("GET");
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert!(refused.header("www-authenticate").is_some());
}
