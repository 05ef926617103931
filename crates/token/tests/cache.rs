//! The verified-token cache never accepts what the uncached verifier would refuse now.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use cairn_token::*;
use common::*;

fn cached(
    capacity: usize,
) -> (
    Issuer,
    ManualClock,
    Arc<MemoryRevocations>,
    Verifier<Keyring, ManualClock, Arc<MemoryRevocations>>,
) {
    let f = fixture();
    let mut ring = Keyring::new();
    ring.insert(KeyEntry {
        key: f.issuer.key().verifying_key().clone(),
        published_at: t0().saturating_sub(3600),
        signs_from: t0().saturating_sub(3600),
        retired_at: None,
    })
    .unwrap();
    let v =
        Verifier::new(policy(), ring, f.clock.clone(), f.revocations.clone()).with_cache(capacity);
    (f.issuer, f.clock, f.revocations, v)
}

#[test]
fn cache_hits_are_rechecked() {
    let (issuer, clock, revocations, v) = cached(16);
    let acme = tenant("acme");
    let token = issuer.issue(&request("acme", "alice"), t0()).unwrap();
    let first = v.verify(token.expose(), &acme).unwrap();
    assert_eq!(v.verify(token.expose(), &acme).unwrap(), first);
    // Another tenant's scope: a different cache key, and the signature fails.
    assert_eq!(
        v.verify(token.expose(), &tenant("globex"))
            .unwrap_err()
            .reason(),
        Reason::Signature
    );
    // A tampered copy is not a cache hit.
    let mut tampered = token.expose().to_owned();
    tampered.replace_range(30..31, if &tampered[30..31] == "A" { "B" } else { "A" });
    assert!(v.verify(&tampered, &acme).is_err());
    // Time passes beyond expiry: refused although cached.
    clock.advance(600 + LEEWAY + 1);
    assert_eq!(
        v.verify(token.expose(), &acme).unwrap_err().reason(),
        Reason::Expired
    );
    clock.set(t0());
    assert!(v.verify(token.expose(), &acme).is_ok());
    // Revoked after caching: refused.
    revocations.revoke(&acme, &first.claims().token_id);
    assert_eq!(
        v.verify(token.expose(), &acme).unwrap_err().reason(),
        Reason::Revoked
    );
}

#[test]
fn cache_hits_see_key_removal_and_watermarks() {
    let (issuer, _clock, revocations, mut v) = cached(16);
    let acme = tenant("acme");
    let token = issuer.issue(&request("acme", "alice"), t0()).unwrap();
    v.verify(token.expose(), &acme).unwrap();
    revocations.set_watermark(&acme, t0().saturating_add(1));
    assert_eq!(
        v.verify(token.expose(), &acme).unwrap_err().reason(),
        Reason::BeforeWatermark
    );
    let token = issuer
        .issue(&request("acme", "bob"), t0().saturating_add(1))
        .unwrap();
    v.verify(token.expose(), &acme).unwrap();
    let id = issuer.key().verifying_key().id().clone();
    v.keys_mut().remove(&id).unwrap();
    assert_eq!(
        v.verify(token.expose(), &acme).unwrap_err().reason(),
        Reason::UnknownKey
    );
}

#[test]
fn cache_stays_bounded_and_correct_when_full() {
    let (issuer, _clock, _revocations, v) = cached(8);
    let acme = tenant("acme");
    let tokens: Vec<_> = (0..40)
        .map(|i| {
            issuer
                .issue(&request("acme", &format!("user-{i}")), t0())
                .unwrap()
        })
        .collect();
    for round in 0..3 {
        for (i, t) in tokens.iter().enumerate() {
            let got = v.verify(t.expose(), &acme).unwrap();
            assert_eq!(
                got.claims().subject.as_str(),
                format!("user-{i}"),
                "round {round}"
            );
        }
    }
    assert_eq!(
        v.verify(&"x".repeat(MAX_TOKEN_LEN + 1), &acme)
            .unwrap_err()
            .reason(),
        Reason::Oversize
    );
}
