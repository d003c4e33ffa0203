use super::*;
use courier_config::Secret;

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");

fn hs256() -> AuthSettings {
    AuthSettings {
        jwt_secret: Secret::new("a-test-secret-of-at-least-32-bytes!"),
        ..AuthSettings::default()
    }
}

fn pair(kind: &str) -> AuthSettings {
    AuthSettings {
        jwt_public_key: format!("{KEYS}/{kind}-public.pem"),
        jwt_private_key: format!("{KEYS}/{kind}-private.pem"),
        ..AuthSettings::default()
    }
}

fn tokens(settings: &AuthSettings) -> Tokens {
    Tokens::from_settings(settings).unwrap().unwrap()
}

fn b64(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn claims(exp_from_now: i64) -> Claims {
    let now = unix_now();
    Claims {
        sub: "u1".into(),
        email: Some("a@b.test".into()),
        roles: vec!["admin".into()],
        iat: now,
        exp: now.saturating_add_signed(exp_from_now),
        iss: None,
        aud: None,
    }
}

#[test]
fn issued_tokens_verify_with_each_kind_of_key() {
    for settings in [hs256(), pair("rsa"), pair("ec")] {
        let tokens = tokens(&settings);
        let token = tokens
            .issue("u1", Some("a@b.test"), &["admin".into()])
            .unwrap();
        let claims = tokens.verify(&token).unwrap();
        assert_eq!(claims.sub, "u1");
        assert_eq!(claims.roles, ["admin"]);
        assert_eq!(claims.exp - claims.iat, 3600);
    }
    assert_eq!(tokens(&pair("rsa")).algorithm, Algorithm::RS256);
    assert_eq!(tokens(&pair("ec")).algorithm, Algorithm::ES256);
}

#[test]
fn nothing_configured_is_none_and_a_public_key_alone_cannot_issue() {
    assert!(Tokens::from_settings(&AuthSettings::default())
        .unwrap()
        .is_none());
    let verify_only = AuthSettings {
        jwt_private_key: String::new(),
        ..pair("rsa")
    };
    let tokens = tokens(&verify_only);
    assert!(!tokens.can_issue());
    assert!(tokens.issue("u1", None, &[]).is_none());
}

#[test]
fn alg_none_is_refused() {
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let body = b64(&serde_json::to_vec(&claims(600)).unwrap());
    for token in [format!("{header}.{body}."), format!("{header}.{body}")] {
        assert_eq!(tokens(&hs256()).verify(&token), Err(TokenError::Invalid));
    }
}

#[test]
fn an_hs256_token_signed_with_the_rsa_public_key_is_refused() {
    let public = std::fs::read(format!("{KEYS}/rsa-public.pem")).unwrap();
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(600),
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert_eq!(
        tokens(&pair("rsa")).verify(&forged),
        Err(TokenError::Invalid)
    );
}

#[test]
fn expired_tampered_and_foreign_tokens_are_refused() {
    let tokens = tokens(&hs256());
    let key = EncodingKey::from_secret(hs256().jwt_secret.expose().as_bytes());
    let expired = jsonwebtoken::encode(&Header::default(), &claims(-60), &key).unwrap();
    assert_eq!(tokens.verify(&expired), Err(TokenError::Expired));

    let good = tokens.issue("u1", None, &[]).unwrap();
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = b64(&serde_json::to_vec(&Claims {
        sub: "u2".into(),
        ..claims(600)
    })
    .unwrap());
    assert_eq!(tokens.verify(&parts.join(".")), Err(TokenError::Invalid));

    let other = EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!");
    let foreign = jsonwebtoken::encode(&Header::default(), &claims(600), &other).unwrap();
    assert_eq!(tokens.verify(&foreign), Err(TokenError::Invalid));
    assert_eq!(tokens.verify("not a token"), Err(TokenError::Invalid));
}

#[test]
fn issuer_and_audience_are_required_when_configured() {
    let strict = AuthSettings {
        issuer: "courier".into(),
        audience: "api".into(),
        ..hs256()
    };
    let tokens = tokens(&strict);
    let token = tokens.issue("u1", None, &[]).unwrap();
    let strict_ok = jsonwebtoken::decode::<Claims>(&token, &tokens.verify, &tokens.validation);
    assert!(strict_ok.is_ok(), "{strict_ok:?}");
    let lax = super::Tokens::from_settings(&hs256()).unwrap().unwrap();
    let without = lax.issue("u1", None, &[]).unwrap();
    assert_eq!(tokens.verify(&without), Err(TokenError::Invalid));
}

#[test]
fn the_bearer_scheme_is_read_in_any_case() {
    assert_eq!(Tokens::bearer(Some("Bearer abc")), Ok("abc"));
    assert_eq!(Tokens::bearer(Some("bearer  abc ")), Ok("abc"));
    for bad in [
        None,
        Some(""),
        Some("Basic abc"),
        Some("Bearer"),
        Some("Bearer  "),
    ] {
        assert_eq!(Tokens::bearer(bad), Err(TokenError::Missing), "{bad:?}");
    }
}

#[test]
fn debug_never_shows_the_key() {
    let shown = format!("{:?}", tokens(&hs256()));
    assert!(!shown.contains("a-test-secret"), "{shown}");
}

#[test]
fn a_remembered_token_still_expires() {
    let tokens = tokens(&hs256());
    let key = EncodingKey::from_secret(hs256().jwt_secret.expose().as_bytes());
    // Valid for the leeway only: verified now, remembered, and refused once it has passed.
    let short = jsonwebtoken::encode(
        &Header::default(),
        &claims(-(LEEWAY.as_secs() as i64) + 1),
        &key,
    )
    .unwrap();
    assert!(tokens.verify(&short).is_ok());
    assert!(tokens.verified.lock().unwrap().contains_key(&short));
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(tokens.verify(&short), Err(TokenError::Expired));
    assert!(!tokens.verified.lock().unwrap().contains_key(&short));
}

#[test]
fn a_token_that_differs_by_one_byte_is_not_a_hit() {
    let tokens = tokens(&hs256());
    let good = tokens.issue("u1", None, &[]).unwrap();
    assert!(tokens.verify(&good).is_ok());
    let mut bad = good.clone().into_bytes();
    let last = bad.len() - 2;
    bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        tokens.verify(std::str::from_utf8(&bad).unwrap()),
        Err(TokenError::Invalid)
    );
}
