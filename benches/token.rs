//! Tokens: verify + authorize a typical token, and reject hostile ones, single core, in tokens
//! per second (criterion's `Elements` throughput).
//!
//! `cargo bench --bench token`

// A benchmark: a failure may panic.
#![allow(clippy::unwrap_used)]

use cairn::token::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let now = Timestamp::from_unix(1_795_784_400).unwrap();
    let policy = Policy::new("https://cairn.example", "cairn-api").unwrap();
    let issuer = Issuer::new(SigningKey::from_seed(&[7; 32]).unwrap(), policy.clone());
    let mut ring = Keyring::new();
    // A realistic ring: the signer plus two older keys.
    for seed in [5u8, 6] {
        let k = SigningKey::from_seed(&[seed; 32]).unwrap();
        ring.insert(KeyEntry {
            key: k.verifying_key().clone(),
            published_at: Timestamp::MIN,
            signs_from: Timestamp::MIN,
            retired_at: Some(now.saturating_sub(86_400)),
        })
        .unwrap();
    }
    ring.insert(KeyEntry {
        key: issuer.key().verifying_key().clone(),
        published_at: Timestamp::MIN,
        signs_from: Timestamp::MIN,
        retired_at: None,
    })
    .unwrap();
    let revocations = MemoryRevocations::new();
    let acme = TenantId::new("acme").unwrap();
    let alice = UserId::new("alice").unwrap();
    let laptop = DeviceId::new("alice-laptop").unwrap();
    for i in 0..1000 {
        revocations.revoke(
            &acme,
            &TokenId::new(&format!("revoked-token-{i:08}")).unwrap(),
        );
    }
    let revocations = std::sync::Arc::new(revocations);
    let cached = Verifier::new(
        policy.clone(),
        ring.clone(),
        ManualClock::new(now),
        revocations.clone(),
    )
    .with_cache(65_536);
    let verifier = Verifier::new(policy, ring, ManualClock::new(now), revocations);
    let token = issuer
        .issue(
            &TokenRequest {
                subject: alice.clone(),
                tenant: acme.clone(),
                device: Some(laptop.clone()),
                role: Role::User,
                capabilities: Capabilities::of(&[
                    Capability::BackupPut,
                    Capability::BackupRead,
                    Capability::BackupList,
                    Capability::EventsWrite,
                    Capability::EscrowDeposit,
                ]),
                lifetime_secs: 900,
            },
            now,
        )
        .unwrap();

    let mut g = c.benchmark_group("token");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_authorize", |b| {
        b.iter(|| {
            let v = verifier.verify(black_box(token.expose()), &acme).unwrap();
            authorize(
                &v,
                &acme,
                Capability::BackupPut,
                Owner::Device {
                    user: &alice,
                    device: &laptop,
                },
            )
            .unwrap();
        })
    });
    // The same token again through a verifier with the verified-token cache (an agent reuses
    // its token for every call of its 15 minutes): key, times and revocation still checked.
    g.bench_function("verify_authorize_cached", |b| {
        b.iter(|| {
            let v = cached.verify(black_box(token.expose()), &acme).unwrap();
            authorize(
                &v,
                &acme,
                Capability::BackupPut,
                Owner::Device {
                    user: &alice,
                    device: &laptop,
                },
            )
            .unwrap();
        })
    });
    // The floor: one Ed25519 `verify_strict` of a message of the same size, with the same
    // crate, in the same run. No PASETO v4.public verifier can beat it.
    {
        use ed25519_dalek::Signer;
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let vk = sk.verifying_key();
        let msg = vec![0x42u8; token.expose().len() * 3 / 4];
        let sig = sk.sign(&msg);
        g.bench_function("ed25519_verify_strict_floor", |b| {
            b.iter(|| vk.verify_strict(black_box(&msg), &sig).unwrap())
        });
    }
    let oversize = "{".repeat(1 << 20);
    g.bench_function("reject_oversize_1MiB", |b| {
        b.iter(|| verifier.verify(black_box(&oversize), &acme).unwrap_err())
    });
    let mut tampered = token.expose().to_owned();
    tampered.replace_range(40..41, if &tampered[40..41] == "A" { "B" } else { "A" });
    g.bench_function("reject_bad_signature", |b| {
        b.iter(|| verifier.verify(black_box(&tampered), &acme).unwrap_err())
    });
    let garbage = format!("v4.public.{}.{}", "A".repeat(3000), "e30");
    g.bench_function("reject_malformed_footer", |b| {
        b.iter(|| verifier.verify(black_box(&garbage), &acme).unwrap_err())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
