//! `spin-shop-dev keygen` and `token`, as scripts/up.sh, scripts/token.sh and the benchmarks run
//! them: both development keys, one JWKS, and tokens of either algorithm that verify against it.

use std::path::Path;
use std::process::Command;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::Value;

fn dev(args: &[&str], alg: Option<&str>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spin-shop-dev"));
    cmd.args(args)
        .env_remove("SPIN_VARIABLE_AUTH_ISSUER")
        .env_remove("SPIN_VARIABLE_AUTH_AUDIENCE");
    match alg {
        Some(a) => cmd.env("SPIN_SHOP_DEV_ALG", a),
        None => cmd.env_remove("SPIN_SHOP_DEV_ALG"),
    };
    let out = cmd.output().expect("run spin-shop-dev");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// The claims of `token`, verified against `jwks` with the key its `kid` names.
fn verified(jwks: &JwkSet, token: &str) -> (Algorithm, Value) {
    let header = decode_header(token).expect("a JWT header");
    let kid = header.kid.expect("a kid");
    let jwk = jwks.find(&kid).expect("the kid is in the JWKS");
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[devtools::DEFAULT_ISSUER]);
    validation.set_audience(&[devtools::DEFAULT_AUDIENCE]);
    let key = DecodingKey::from_jwk(jwk).expect("a usable JWK");
    (
        header.alg,
        decode::<Value>(token, &key, &validation)
            .expect("verifies")
            .claims,
    )
}

#[cfg(unix)]
fn private(file: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(file)
        .expect("the key file")
        .permissions()
        .mode()
        & 0o777
        == 0o600
}

#[test]
fn keygen_publishes_both_keys_and_tokens_of_either_algorithm_verify() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().expect("a UTF-8 path");
    let printed = dev(&["keygen", d], None);
    let jwks: JwkSet = serde_json::from_str(&printed).expect("a JWKS");
    assert_eq!(jwks.keys.len(), 2, "{printed}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("jwks.json")).unwrap(),
        printed
    );
    #[cfg(unix)]
    for file in ["es256.pem", "rs256.pem"] {
        assert!(
            private(&dir.path().join(file)),
            "{file} is readable by others"
        );
    }

    let (alg, claims) = verified(&jwks, &dev(&["token", d, "dev-a", "600"], None));
    assert_eq!(
        (alg, claims["sub"].as_str()),
        (Algorithm::ES256, Some("dev-a"))
    );
    let (alg, claims) = verified(&jwks, &dev(&["token", d, "dev-b"], Some("RS256")));
    assert_eq!(
        (alg, claims["sub"].as_str()),
        (Algorithm::RS256, Some("dev-b"))
    );

    // A second keygen keeps the keys: tokens minted before still verify.
    assert_eq!(dev(&["keygen", d], None), printed);
}

#[test]
fn an_unknown_token_algorithm_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().expect("a UTF-8 path");
    dev(&["keygen", d], None);
    let out = Command::new(env!("CARGO_BIN_EXE_spin-shop-dev"))
        .args(["token", d, "dev-a"])
        .env("SPIN_SHOP_DEV_ALG", "HS256")
        .output()
        .expect("run spin-shop-dev");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ES256 or RS256"));
}
