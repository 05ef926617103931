//! Shared fixtures: fixed keys, a policy, a verifier on a manual clock.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use cairn_token::*;

pub const ISSUER: &str = "https://cairn.test";
pub const AUDIENCE: &str = "cairn-api";
pub const MAX_LIFETIME: i64 = 900;
pub const LEEWAY: i64 = 60;

/// 2026-11-27T13:00:00Z
pub fn t0() -> Timestamp {
    Timestamp::from_unix(1_795_784_400).unwrap()
}

pub fn policy() -> Policy {
    Policy::with_limits(ISSUER, AUDIENCE, MAX_LIFETIME, LEEWAY).unwrap()
}

pub fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32]).unwrap()
}

/// A keyring holding `key`, published and signing since the beginning of time, never retired.
pub fn ring_of(key: &VerifyingKey) -> Keyring {
    let mut ring = Keyring::new();
    ring.insert(KeyEntry {
        key: key.clone(),
        published_at: Timestamp::MIN,
        signs_from: Timestamp::MIN,
        retired_at: None,
    })
    .unwrap();
    ring
}

pub fn tenant(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

pub fn user(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

pub struct Fixture {
    pub issuer: Issuer,
    pub clock: ManualClock,
    pub revocations: Arc<MemoryRevocations>,
    pub verifier: Verifier<Keyring, ManualClock, Arc<MemoryRevocations>>,
}

/// One key (seed 1), published and signing since an hour before t0, clock at t0.
pub fn fixture() -> Fixture {
    let issuer = Issuer::new(key(1), policy());
    let mut keyring = Keyring::new();
    keyring
        .insert(KeyEntry {
            key: issuer.key().verifying_key().clone(),
            published_at: t0().saturating_sub(3600),
            signs_from: t0().saturating_sub(3600),
            retired_at: None,
        })
        .unwrap();
    let clock = ManualClock::new(t0());
    let revocations = Arc::new(MemoryRevocations::new());
    let verifier = Verifier::new(policy(), keyring, clock.clone(), revocations.clone());
    Fixture {
        issuer,
        clock,
        revocations,
        verifier,
    }
}

pub fn request(tenant_id: &str, subject: &str) -> TokenRequest {
    TokenRequest {
        subject: user(subject),
        tenant: tenant(tenant_id),
        device: None,
        role: Role::User,
        capabilities: Capabilities::of(&[Capability::BackupPut, Capability::BackupRead]),
        lifetime_secs: 600,
    }
}

/// Claims as the issuer would make them at t0 for acme/alice.
pub fn claims() -> Claims {
    Claims {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        subject: user("alice"),
        tenant: tenant("acme"),
        device: None,
        role: Role::User,
        capabilities: Capabilities::of(&[Capability::BackupPut]),
        issued_at: t0(),
        not_before: t0(),
        expires_at: t0().saturating_add(600),
        token_id: TokenId::new("AAAAAAAAAAAAAAAAAAAAAA").unwrap(),
    }
}

/// base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    use ct_codecs::{Base64UrlSafeNoPadding, Encoder};
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
}

/// base64url decode (the test's own view of a token).
pub fn unb64(s: &str) -> Vec<u8> {
    use ct_codecs::{Base64UrlSafeNoPadding, Decoder};
    Base64UrlSafeNoPadding::decode_to_vec(s, None).unwrap()
}

/// Signs `payload` with `key` under an arbitrary footer and implicit assertion, bypassing the
/// issuer: the attacker-with-a-valid-key view, to prove the verifier's later checks hold.
pub fn sign_with(key_seed: u8, payload: &[u8], footer: &[u8], assertion: &[u8]) -> String {
    let k = key(key_seed);
    let mut secret = [0u8; 64];
    secret[..32].copy_from_slice(&[key_seed; 32]);
    secret[32..].copy_from_slice(&k.verifying_key().to_bytes());
    let sk = pasetors::keys::AsymmetricSecretKey::<pasetors::version4::V4>::from(&secret).unwrap();
    pasetors::version4::PublicToken::sign(&sk, payload, Some(footer), Some(assertion)).unwrap()
}

/// The footer our issuer writes for key `seed`.
pub fn footer_for(seed: u8) -> String {
    format!(r#"{{"kid":"{}"}}"#, key(seed).verifying_key().id())
}

/// Splits `v4.public.<m||sig>.<footer>` into (message+signature bytes, footer bytes).
pub fn split(token: &str) -> (Vec<u8>, Vec<u8>) {
    let rest = token.strip_prefix("v4.public.").unwrap();
    let (m, f) = rest.split_once('.').unwrap();
    (unb64(m), unb64(f))
}

/// Reassembles a token from its parts.
pub fn join(message_and_sig: &[u8], footer: &[u8]) -> String {
    format!("v4.public.{}.{}", b64(message_and_sig), b64(footer))
}
