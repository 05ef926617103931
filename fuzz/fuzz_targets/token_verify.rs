//! F-1: arbitrary bytes into the full verify path with a fixed keyring and clock. Never panics,
//! and accepts nothing but the known-answer tokens it was given (so no mutation of a valid token,
//! in particular no other spelling of it, is accepted).
#![no_main]

use std::sync::LazyLock;

use cairn_token::*;
use libfuzzer_sys::fuzz_target;

struct Setup {
    verifier: Verifier<Keyring, ManualClock, MemoryRevocations>,
    issued: Vec<String>,
    tenant: TenantId,
}

/// The keys, policy and clock of the committed known-answer file, so its `valid_0` token (and
/// the seeds made from it) verify here.
static SETUP: LazyLock<Setup> = LazyLock::new(|| {
    let file: serde_json::Value = serde_json::from_str(include_str!(
        "../../crates/token/tests/vectors/cairn-v1.json"
    ))
    .expect("vector file");
    let policy = Policy::with_limits(
        file["issuer"].as_str().expect("issuer"),
        file["audience"].as_str().expect("audience"),
        file["max_lifetime_secs"].as_i64().expect("lifetime"),
        file["leeway_secs"].as_i64().expect("leeway"),
    )
    .expect("valid policy");
    let mut ring = Keyring::new();
    for seed in 1..=5u8 {
        let key = SigningKey::from_seed(&[seed; 32]).expect("seed");
        ring.insert(KeyEntry {
            key: key.verifying_key().clone(),
            published_at: Timestamp::MIN,
            signs_from: Timestamp::MIN,
            retired_at: None,
        })
        .expect("insert");
    }
    let issued = file["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .filter(|v| v["expect_fail"].is_null())
        .map(|v| v["token"].as_str().expect("token").to_owned())
        .collect();
    let now = Timestamp::parse_rfc3339("2026-11-27T13:00:10Z").expect("time");
    let verifier = Verifier::new(
        policy,
        ring,
        ManualClock::new(now),
        MemoryRevocations::new(),
    );
    Setup {
        verifier,
        issued,
        tenant: TenantId::new("acme").expect("tenant"),
    }
});

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let setup = &*SETUP;
    if let Ok(verified) = setup.verifier.verify(token, &setup.tenant) {
        assert!(
            setup.issued.iter().any(|t| t == token),
            "accepted a token we never issued"
        );
        assert_eq!(verified.claims().tenant, setup.tenant);
    }
});
