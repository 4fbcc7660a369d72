//! Verified customer tokens are remembered in Redis so that the customer routes that use Redis
//! anyway (placing and cancelling orders) skip the signature check. The memory never decides
//! alone and never outlives what made the token valid:
//! - removing the token's key from the JWKS (a rotation finished) refuses it again at once,
//!   although Redis still holds the entry of the earlier JWKS;
//! - an entry someone else wrote into Redis (anyone who can reach it, without the app's secret)
//!   authenticates nobody: it is ignored, logged and counted in `auth:forged-verdicts`;
//! - a genuine entry is used as it is (not written again);
//! - an entry that outlives its token (Redis's TTL removed, a restored backup) is ignored.
//!
//! The probe is `POST /api/orders` without an `Idempotency-Key`: the token is checked first, so
//! an accepted token gets 400 (the missing header) and a refused one 401, and nothing is stored.

use e2e::{customer_auth, test_jwks, test_keys, unix_now, Shop, AUTH_AUDIENCE, AUTH_ISSUER};
use sha2::{Digest, Sha256};

/// Where forged entries are counted (crates/adapter/src/identity/verdicts.rs).
const FORGED_COUNTER: &str = "auth:forged-verdicts";

/// `POST /api/orders` with `authorization` and no Idempotency-Key: 400 if the token was
/// accepted, 401 if not.
fn probe(shop: &Shop, authorization: &str) -> u16 {
    let resp = shop
        .app
        .send(
            "POST",
            "/api/orders",
            &[("authorization", authorization)],
            Some(b"{}"),
        )
        .expect("POST /api/orders");
    assert!(
        matches!(resp.status, 400 | 401),
        "{} {}",
        resp.status,
        resp.text()
    );
    resp.status
}

/// The names of the remembered verdicts.
fn entries(shop: &Shop) -> Vec<String> {
    let keys = shop.cli(&["KEYS", "auth:verified:*"]);
    keys.lines().map(str::to_owned).collect()
}

fn forged_count(shop: &Shop) -> String {
    shop.cli(&["GET", FORGED_COUNTER])
}

#[test]
fn a_remembered_token_is_refused_once_its_key_leaves_the_jwks() {
    let mut shop = Shop::boot_without_cron();
    let (_, bearer) = customer_auth("cache-user");
    assert_eq!(probe(&shop, &bearer), 400, "accepted");
    assert_eq!(entries(&shop).len(), 1, "verified once, remembered");
    assert_eq!(probe(&shop, &bearer), 400, "accepted again");

    // The ES256 key that signed it is retired: only the RS256 key stays in the JWKS.
    let only_rsa = devtools::jwks(&[&test_keys().rs256]);
    shop.restart_without_cron_with(|b| b.variable("auth_jwks", only_rsa));
    let refused = shop
        .app
        .send("GET", "/api/orders", &[("authorization", &bearer)], None)
        .expect("GET");
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert!(refused.header("www-authenticate").is_some());
    assert_eq!(
        probe(&shop, &bearer),
        401,
        "the cache does not vouch for it"
    );
}

/// The entry name the app looks up for `token`, computed as anyone reading the source can:
/// SHA-256 over the length-prefixed JWKS, issuer, audience and token (all public).
fn entry_name(token: &str) -> String {
    let mut h = Sha256::new();
    for part in [test_jwks().as_str(), AUTH_ISSUER, AUTH_AUDIENCE, token] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    format!("auth:verified:{}", hex::encode(h.finalize()))
}

/// Before the verdicts were sealed, `SET auth:verified:<name of any string> victim` made that
/// string a token of `victim`.
#[test]
fn an_entry_written_from_outside_authenticates_nobody_and_is_counted() {
    let shop = Shop::boot_without_cron();
    let made_up = "not-a-jwt-at-all";
    let name = entry_name(made_up);
    let bearer = format!("Bearer {made_up}");
    shop.cli(&["SET", &name, "victim"]);
    assert_eq!(
        probe(&shop, &bearer),
        401,
        "a made-up token with a planted entry"
    );
    assert_eq!(forged_count(&shop), "1");

    // Sealed-looking, with a MAC the forger had to make up too.
    let forged = format!("{} 9999999999 victim", "ab".repeat(32));
    shop.cli(&["SET", &name, &forged]);
    assert_eq!(probe(&shop, &bearer), 401, "a made-up seal");
    assert_eq!(forged_count(&shop), "2");
    assert!(
        shop.app
            .wait_for_log(std::time::Duration::from_secs(5), |log| log
                .contains("forged token-cache entry")),
        "the operator is told\n{}",
        shop.app.stderr()
    );
}

#[test]
fn a_genuine_entry_is_used_as_it_is() {
    let shop = Shop::boot_without_cron();
    let (_, bearer) = customer_auth("genuine");
    assert_eq!(probe(&shop, &bearer), 400);
    let names = entries(&shop);
    assert_eq!(names.len(), 1, "remembered: {names:?}");
    let value = shop.cli(&["GET", &names[0]]);
    assert!(value.ends_with(" genuine"), "{value}");
    // Longer than the app ever sets (an hour at most): a request that wrote the entry again
    // would shorten it.
    shop.cli(&["EXPIRE", &names[0], "100000"]);

    assert_eq!(probe(&shop, &bearer), 400, "accepted from the cache");
    let ttl: i64 = shop.cli(&["TTL", &names[0]]).parse().expect("TTL");
    assert!(
        ttl > 3600,
        "the entry was written again (TTL {ttl}), not used"
    );
    assert_eq!(shop.cli(&["GET", &names[0]]), value);
    assert_eq!(forged_count(&shop), "", "nothing counted as forged");
}

/// The token is already past its `exp` but inside the minute of leeway, so it verifies and is
/// remembered; Redis's TTL is then removed (as a restored backup or a tampering operator would),
/// and once the leeway has passed too the entry must no longer vouch for it.
#[test]
fn an_entry_past_its_tokens_expiry_is_ignored() {
    let shop = Shop::boot_without_cron();
    let exp = unix_now() - 55;
    let mut claims = e2e::customer_claims("late");
    claims["exp"] = exp.into();
    let token = test_keys().es256.sign(&claims).expect("sign");
    let bearer = format!("Bearer {token}");
    assert_eq!(probe(&shop, &bearer), 400, "inside the leeway");
    let names = entries(&shop);
    assert_eq!(names.len(), 1, "remembered: {names:?}");
    shop.cli(&["PERSIST", &names[0]]);

    // exp + 60 s of leeway, and a second for the clocks' rounding.
    while unix_now() <= exp + 61 {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(entries(&shop).len(), 1, "the entry is still in Redis");
    assert_eq!(probe(&shop, &bearer), 401, "but it no longer vouches");
    assert_eq!(forged_count(&shop), "", "expired is not forged");
}
