//! Cairn's own frozen token vectors (`tests/vectors/cairn-v1.json`): known signing seed, footer,
//! implicit assertion, claims and token; valid ones and `fail_` ones with the reason expected.
//!
//! `vectors_are_up_to_date` regenerates the file from the code and compares; to regenerate after
//! an intended format change, run
//! `CAIRN_REGENERATE_VECTORS=1 cargo test -p cairn-token --test vectors`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use cairn_token::*;
use common::*;
use serde::{Deserialize, Serialize};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/cairn-v1.json");

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Vector {
    name: String,
    seed: String,
    public_key: String,
    key_id: String,
    now: String,
    request_tenant: String,
    footer: String,
    implicit_assertion: String,
    claims: String,
    token: String,
    /// `null` when valid, else the `Reason` in Debug form.
    expect_fail: Option<String>,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct File {
    description: String,
    issuer: String,
    audience: String,
    max_lifetime_secs: i64,
    leeway_secs: i64,
    vectors: Vec<Vector>,
}

fn generate() -> File {
    let mut vectors = Vec::new();
    let mut push =
        |name: &str, seed: u8, claims: &Claims, token: String, tenant: &str, now: Timestamp| {
            let k = key(seed);
            let verifier = {
                let ring = ring_of(k.verifying_key());
                Verifier::new(
                    policy(),
                    ring,
                    ManualClock::new(now),
                    MemoryRevocations::new(),
                )
            };
            let outcome = verifier.verify(&token, &common::tenant(tenant));
            vectors.push(Vector {
                name: name.into(),
                seed: hex::encode([seed; 32]),
                public_key: hex::encode(k.verifying_key().to_bytes()),
                key_id: k.verifying_key().id().to_string(),
                now: now.to_rfc3339(),
                request_tenant: tenant.into(),
                footer: footer_for(seed),
                implicit_assertion: format!("tenant:{tenant}"),
                claims: String::from_utf8(claims.to_json()).unwrap(),
                token,
                expect_fail: outcome.err().map(|e| format!("{:?}", e.reason())),
            });
        };
    let devices = [None, Some("laptop"), None, Some("build-01"), None];
    let roles = [
        Role::User,
        Role::User,
        Role::Admin,
        Role::Service,
        Role::User,
    ];
    for n in 0..5u8 {
        let issuer = Issuer::new(key(n + 1), policy());
        let capabilities = Capabilities::of(
            &Capability::ALL[..usize::from(n) + 2]
                .iter()
                .copied()
                .filter(|c| *c != Capability::Admin || roles[usize::from(n)] == Role::Admin)
                .collect::<Vec<_>>(),
        );
        let req = TokenRequest {
            subject: user(&format!("user-{n}")),
            tenant: tenant(["acme", "globex", "acme", "initech", "a"][usize::from(n)]),
            device: devices[usize::from(n)].map(|d| DeviceId::new(d).unwrap()),
            role: roles[usize::from(n)],
            capabilities,
            lifetime_secs: 180 * i64::from(n + 1),
        };
        let iat = t0().saturating_add(i64::from(n) * 3600);
        let jti = TokenId::new(&format!("kat-token-{n:0>12}")).unwrap();
        let token = issuer
            .issue_with_id(&req, iat, jti)
            .unwrap()
            .expose()
            .to_owned();
        let claims = Claims::from_json(&split_payload(&token)).unwrap();
        let t = req.tenant.as_str().to_owned();
        push(
            &format!("valid_{n}"),
            n + 1,
            &claims,
            token.clone(),
            &t,
            iat.saturating_add(10),
        );
        if n == 0 {
            push(
                "fail_other_tenant",
                1,
                &claims,
                token.clone(),
                "globex",
                iat,
            );
            push(
                "fail_expired",
                1,
                &claims,
                token.clone(),
                &t,
                iat.saturating_add(180 + LEEWAY + 1),
            );
            let mut tampered = token.clone();
            let last = tampered.pop().unwrap();
            tampered.push(if last == 'A' { 'Q' } else { 'A' });
            push("fail_footer_tampered", 1, &claims, tampered, &t, iat);
        }
    }
    File {
        description: "cairn-token v1: PASETO v4.public, footer {\"kid\":\"k4.pid...\"}, implicit \
                      assertion \"tenant:<request tenant>\", strict claims JSON"
            .into(),
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        max_lifetime_secs: MAX_LIFETIME,
        leeway_secs: LEEWAY,
        vectors,
    }
}

fn split_payload(token: &str) -> Vec<u8> {
    let (m, _) = split(token);
    m[..m.len() - 64].to_vec()
}

#[test]
fn vectors_are_up_to_date() {
    let fresh = serde_json::to_string_pretty(&generate()).unwrap() + "\n";
    if std::env::var_os("CAIRN_REGENERATE_VECTORS").is_some() {
        std::fs::write(PATH, &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(PATH).expect("committed vector file");
    assert_eq!(
        committed, fresh,
        "token format changed: new version and new vectors, not an edit"
    );
}

#[test]
fn committed_vectors_verify() {
    let file: File = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    assert!(
        file.vectors
            .iter()
            .filter(|v| v.expect_fail.is_none())
            .count()
            >= 5
    );
    assert!(file.vectors.iter().any(|v| v.expect_fail.is_some()));
    let policy = Policy::with_limits(
        &file.issuer,
        &file.audience,
        file.max_lifetime_secs,
        file.leeway_secs,
    )
    .unwrap();
    for v in &file.vectors {
        let seed: [u8; 32] = hex::decode(&v.seed).unwrap().try_into().unwrap();
        let k = SigningKey::from_seed(&seed).unwrap();
        assert_eq!(
            hex::encode(k.verifying_key().to_bytes()),
            v.public_key,
            "{}",
            v.name
        );
        assert_eq!(k.verifying_key().id().to_string(), v.key_id, "{}", v.name);
        let ring = ring_of(k.verifying_key());
        let now = Timestamp::parse_rfc3339(&v.now).unwrap();
        let verifier = Verifier::new(
            policy.clone(),
            ring,
            ManualClock::new(now),
            MemoryRevocations::new(),
        );
        let got = verifier.verify(&v.token, &TenantId::new(&v.request_tenant).unwrap());
        match &v.expect_fail {
            None => {
                let verified = got.unwrap_or_else(|e| panic!("{}: {e:?}", v.name));
                assert_eq!(
                    verified.claims().to_json(),
                    v.claims.as_bytes(),
                    "{}",
                    v.name
                );
                // Deterministic: re-signing the claims gives the same token.
                let issuer = Issuer::new(k, policy.clone());
                assert_eq!(
                    issuer.sign_claims(verified.claims()).unwrap().expose(),
                    v.token
                );
            }
            Some(reason) => {
                assert_eq!(
                    format!("{:?}", got.unwrap_err().reason()),
                    *reason,
                    "{}",
                    v.name
                );
            }
        }
    }
}
