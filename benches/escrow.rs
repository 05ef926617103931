//! Escrow: HPKE wrap + unwrap of an archive key (single core, per second), a password wrap at the
//! default Argon2id costs, and the rejection of a hostile envelope that asks for 4 GiB.
//!
//! `cargo bench --bench escrow`

// A benchmark: a failure may panic.
#![allow(clippy::unwrap_used)]

use cairn::escrow::*;
use cairn::keys::ArchiveKey;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let key = ArchiveKey::from_bytes([0x42; 32]);
    let authority = EscrowSecretKey::derive(b"bench authority").unwrap();
    let recipient = EscrowRecipient(authority.public().clone());
    let identity = EscrowIdentity(authority.clone());
    let header = Header::new(Mode::Standard, key.fingerprint(), "acme", "alice").unwrap();

    let mut g = c.benchmark_group("escrow");
    g.throughput(Throughput::Elements(1));
    g.bench_function("hpke_wrap_unwrap", |b| {
        b.iter(|| {
            let e = Envelope::wrap(&key, header.clone(), &[&recipient]).unwrap();
            let bytes = e.to_bytes();
            let back = Envelope::parse(black_box(&bytes))
                .unwrap()
                .unwrap(&[&identity])
                .unwrap();
            black_box(back);
        })
    });
    // The floor: the X25519 operations HPKE cannot avoid (wrap = key generation + DH, unwrap =
    // DH), with the same crate, in the same run.
    let secret = x25519_dalek::StaticSecret::from([7; 32]);
    let public = x25519_dalek::PublicKey::from(&secret);
    g.bench_function("x25519_dh_floor", |b| {
        b.iter(|| secret.diffie_hellman(black_box(&public)))
    });
    g.bench_function("x25519_keygen_floor", |b| {
        b.iter(|| x25519_dalek::PublicKey::from(black_box(&secret)))
    });
    let e = Envelope::wrap(&key, header.clone(), &[&recipient]).unwrap();
    g.bench_function("hpke_wrap", |b| {
        b.iter(|| Envelope::wrap(&key, header.clone(), &[&recipient]).unwrap())
    });
    g.bench_function("hpke_unwrap", |b| {
        b.iter(|| e.unwrap(&[&identity]).unwrap())
    });

    // A hostile archive-password envelope asking for m = 4 GiB: refused before Argon2 runs.
    let pe = PasswordEscrowRecipient::new(
        authority.public().clone(),
        Password::new("pw"),
        Argon2Params::FLOOR,
    )
    .unwrap();
    let ap_header = Header::new(Mode::ArchivePassword, key.fingerprint(), "acme", "alice").unwrap();
    let ap = Envelope::wrap(&key, ap_header.clone(), &[&pe]).unwrap();
    let mut stanzas = ap.stanzas().to_vec();
    stanzas[0].params[..4].copy_from_slice(&(4u32 * 1024 * 1024).to_le_bytes());
    let hostile = Envelope::from_parts(ap_header, stanzas).unwrap().to_bytes();
    let pid = PasswordEscrowIdentity {
        escrow: authority.clone(),
        password: Password::new("pw"),
    };
    g.bench_function("reject_hostile_4GiB_envelope", |b| {
        b.iter(|| {
            let e = Envelope::parse(black_box(&hostile)).unwrap();
            e.unwrap(&[&pid]).unwrap_err()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("escrow_password");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(1));
    let r = PasswordRecipient::new(Password::new("correct horse"), Argon2Params::DEFAULT).unwrap();
    let custom = Header::new(Mode::CustomKey, key.fingerprint(), "acme", "alice").unwrap();
    g.bench_function("password_wrap_default_m64MiB_t3_p4", |b| {
        b.iter(|| Envelope::wrap(&key, custom.clone(), &[&r]).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
