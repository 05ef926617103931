//! T-3 to T-16 and T-18 of the security catalogue, through the public verifier.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use cairn_token::*;
use common::*;

fn reason(f: &Fixture, token: &str) -> Reason {
    let err = f.verifier.verify(token, &tenant("acme")).unwrap_err();
    assert_eq!(err.to_string(), "unauthorized", "uniform message");
    err.reason()
}

fn signed(f: &Fixture, c: &Claims) -> String {
    f.issuer.sign_claims(c).unwrap().expose().to_owned()
}

fn valid_token(f: &Fixture) -> String {
    f.issuer
        .issue(&request("acme", "alice"), t0())
        .unwrap()
        .expose()
        .to_owned()
}

#[test]
fn t3_leeway_edges() {
    let f = fixture();
    let now = t0();
    let mut c = claims();
    // exp = now - leeway + 1 accepted, now - leeway - 1 rejected.
    c.issued_at = now.saturating_sub(600);
    c.not_before = c.issued_at;
    c.expires_at = now.saturating_sub(LEEWAY - 1);
    assert!(f.verifier.verify(&signed(&f, &c), &tenant("acme")).is_ok());
    c.expires_at = now.saturating_sub(LEEWAY + 1);
    assert_eq!(reason(&f, &signed(&f, &c)), Reason::Expired);
    // nbf = now + leeway - 1 accepted, now + leeway + 1 rejected.
    let mut c = claims();
    c.not_before = now.saturating_add(LEEWAY - 1);
    assert!(f.verifier.verify(&signed(&f, &c), &tenant("acme")).is_ok());
    c.not_before = now.saturating_add(LEEWAY + 1);
    assert_eq!(reason(&f, &signed(&f, &c)), Reason::NotYetValid);
    // iat more than leeway in the future.
    let mut c = claims();
    c.issued_at = now.saturating_add(LEEWAY + 1);
    c.not_before = c.issued_at;
    c.expires_at = c.issued_at.saturating_add(600);
    assert_eq!(reason(&f, &signed(&f, &c)), Reason::IssuedAt);
    c.issued_at = now.saturating_add(LEEWAY);
    c.not_before = c.issued_at;
    assert!(f.verifier.verify(&signed(&f, &c), &tenant("acme")).is_ok());
    // iat after nbf, nbf after exp.
    let mut c = claims();
    c.not_before = now.saturating_sub(1);
    assert_eq!(reason(&f, &signed(&f, &c)), Reason::IssuedAt);
    let mut c = claims();
    c.not_before = c.expires_at.saturating_add(1);
    assert_eq!(reason(&f, &signed(&f, &c)), Reason::IssuedAt);
}

#[test]
fn t4_rotation_timeline() {
    // Key 1 signs from long ago; key 2 is published at P, signs from S = P + 1h; key 1 retires
    // at S.
    let p = t0();
    let s = p.saturating_add(3600);
    let old = Issuer::new(key(1), policy());
    let new = Issuer::new(key(2), policy());
    let mut ring = Keyring::new();
    let day_before = p.saturating_sub(86_400);
    ring.insert(KeyEntry {
        key: old.key().verifying_key().clone(),
        published_at: day_before,
        signs_from: day_before,
        retired_at: None,
    })
    .unwrap();
    ring.insert(KeyEntry {
        key: new.key().verifying_key().clone(),
        published_at: p,
        signs_from: s,
        retired_at: None,
    })
    .unwrap();
    ring.retire(old.key().verifying_key().id(), s).unwrap();
    assert_eq!(
        ring.signer_at(s.saturating_sub(1)),
        Some(old.key().verifying_key().id())
    );
    assert_eq!(ring.signer_at(s), Some(new.key().verifying_key().id()));

    let clock = ManualClock::new(p.saturating_sub(10));
    let verifier = Verifier::new(policy(), ring, clock.clone(), MemoryRevocations::new());
    let acme = tenant("acme");
    let mut req = request("acme", "alice");

    // The new key's tokens: refused before publication, accepted from it.
    let early = new.issue(&req, p.saturating_sub(10)).unwrap();
    assert_eq!(
        verifier.verify(early.expose(), &acme).unwrap_err().reason(),
        Reason::KeyNotValid
    );
    clock.set(p);
    let on_publish = new.issue(&req, p).unwrap();
    assert!(verifier.verify(on_publish.expose(), &acme).is_ok());

    // The old key's last token, issued at the retirement instant with the maximum lifetime,
    // is accepted until retire + max_lifetime + leeway and refused one second later.
    req.lifetime_secs = MAX_LIFETIME;
    let last = old.issue(&req, s).unwrap();
    clock.set(s.saturating_add(MAX_LIFETIME + LEEWAY));
    assert!(verifier.verify(last.expose(), &acme).is_ok());
    clock.set(s.saturating_add(MAX_LIFETIME + LEEWAY + 1));
    assert_eq!(
        verifier.verify(last.expose(), &acme).unwrap_err().reason(),
        Reason::KeyNotValid
    );

    // A token the retired key mints afterwards (a leaked key) is refused even while fresh.
    let at = s.saturating_add(LEEWAY + 1);
    clock.set(at);
    req.lifetime_secs = 60;
    let leaked = old.issue(&req, at).unwrap();
    assert_eq!(
        verifier
            .verify(leaked.expose(), &acme)
            .unwrap_err()
            .reason(),
        Reason::KeyNotValid
    );
    // ... while the new key's tokens are fine.
    assert!(
        verifier
            .verify(new.issue(&req, at).unwrap().expose(), &acme)
            .is_ok()
    );

    // Windows out of order, and duplicate keys, are refused.
    let mut ring = Keyring::new();
    let bad = KeyEntry {
        key: key(3).verifying_key().clone(),
        published_at: p,
        signs_from: p.saturating_sub(1),
        retired_at: None,
    };
    assert_eq!(ring.insert(bad.clone()), Err(KeyError::Window));
    let good = KeyEntry {
        signs_from: p,
        ..bad
    };
    ring.insert(good.clone()).unwrap();
    assert_eq!(ring.insert(good), Err(KeyError::Duplicate));
}

#[test]
fn t5_jwt_shapes_are_not_paseto() {
    let f = fixture();
    let payload = b64(br#"{"sub":"alice","tid":"acme","exp":99999999999}"#);
    let mut tokens = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
        tokens.push(format!("{header}.{payload}."));
        tokens.push(format!("{header}.{payload}"));
    }
    for alg in ["HS256", "RS256", "ES256", "PS256", "EdDSA"] {
        let header = b64(format!(r#"{{"alg":"{alg}"}}"#).as_bytes());
        tokens.push(format!("{header}.{payload}.{}", b64(&[7u8; 32])));
    }
    for t in tokens {
        assert_eq!(reason(&f, &t), Reason::NotPaseto, "{t}");
    }
}

#[test]
fn t6_footer_key_injection() {
    let f = fixture();
    let payload = claims().to_json();
    let kid = key(1).verifying_key().id().to_string();
    for extra in [
        r#""jwk":{"kty":"OKP","crv":"Ed25519","x":"AAAA"}"#,
        r#""jku":"https://evil.example/keys""#,
        r#""x5u":"https://evil.example/cert""#,
        r#""x5c":["AAAA"]"#,
        r#""crit":["exp"]"#,
        r#""alg":"none""#,
    ] {
        let footer = format!(r#"{{"kid":"{kid}",{extra}}}"#);
        let token = sign_with(1, &payload, footer.as_bytes(), b"tenant:acme");
        assert_eq!(reason(&f, &token), Reason::Footer, "{footer}");
    }
}

/// A resolver that counts lookups, to show malformed key ids never reach the key store.
struct Counting {
    inner: Keyring,
    lookups: AtomicUsize,
}

impl KeyResolver for Counting {
    fn resolve(&self, id: &KeyId) -> Option<KeyEntry> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.resolve(id)
    }
}

#[test]
fn t7_kid_attacks_fail_closed_without_lookups() {
    let f = fixture();
    let mut ring = Keyring::new();
    ring.insert(KeyEntry {
        key: key(1).verifying_key().clone(),
        published_at: t0(),
        signs_from: t0(),
        retired_at: None,
    })
    .unwrap();
    let counting = Counting {
        inner: ring,
        lookups: AtomicUsize::new(0),
    };
    let verifier = Verifier::new(
        policy(),
        counting,
        f.clock.clone(),
        MemoryRevocations::new(),
    );
    let payload = claims().to_json();
    let real = key(1).verifying_key().id().to_string();
    // A Cyrillic 'е' in place of the first Latin letter of the id body after "k4.pid.".
    let lookalike = {
        let (head, body) = real.split_at(7);
        let mut chars: Vec<char> = body.chars().collect();
        chars[0] = 'е';
        format!("{head}{}", chars.into_iter().collect::<String>())
    };
    let long = "a".repeat(10 * 1024);
    let malformed = [
        "../../etc/passwd",
        "/dev/null",
        "' OR 1=1--",
        "",
        "k4.pid.\0AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        lookalike.as_str(),
        "k4.lid.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "k4.pid.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        long.as_str(),
    ];
    for kid in malformed {
        let footer = serde_json::json!({ "kid": kid }).to_string();
        let token = sign_with(1, &payload, footer.as_bytes(), b"tenant:acme");
        let err = verifier.verify(&token, &tenant("acme")).unwrap_err();
        assert!(
            matches!(
                err.reason(),
                Reason::Footer | Reason::FooterTooLarge | Reason::Oversize
            ),
            "{kid:?}: {err:?}"
        );
    }
    assert_eq!(verifier_lookups(&verifier), 0);
    // A well-formed id of a key we do not hold (another tenant's, say): one lookup, refused.
    let token = sign_with(2, &payload, footer_for(2).as_bytes(), b"tenant:acme");
    let err = verifier.verify(&token, &tenant("acme")).unwrap_err();
    assert_eq!(err.reason(), Reason::UnknownKey);
    assert_eq!(verifier_lookups(&verifier), 1);
    // A token signed by key 2 but naming key 1's id: the signature fails.
    let token = sign_with(2, &payload, footer_for(1).as_bytes(), b"tenant:acme");
    assert_eq!(
        verifier
            .verify(&token, &tenant("acme"))
            .unwrap_err()
            .reason(),
        Reason::Signature
    );
}

fn verifier_lookups(v: &Verifier<Counting, ManualClock, MemoryRevocations>) -> usize {
    v.keys().lookups.load(Ordering::SeqCst)
}

#[test]
fn t8_signature_tampering() {
    let f = fixture();
    let token = valid_token(&f);
    let (m_sig, footer) = split(&token);
    let m_len = m_sig.len() - 64;
    // Every bit of the signature.
    for bit in 0..512 {
        let mut t = m_sig.clone();
        t[m_len + bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            reason(&f, &join(&t, &footer)),
            Reason::Signature,
            "sig bit {bit}"
        );
    }
    // Every byte of the payload.
    for i in 0..m_len {
        let mut t = m_sig.clone();
        t[i] ^= 0x01;
        assert_eq!(
            reason(&f, &join(&t, &footer)),
            Reason::Signature,
            "payload byte {i}"
        );
    }
    // Truncated (63-byte) and extended (65-byte) signatures, an all-zero signature.
    assert_eq!(
        reason(&f, &join(&m_sig[..m_sig.len() - 1], &footer)),
        Reason::Signature
    );
    let mut longer = m_sig.clone();
    longer.push(0);
    assert_eq!(reason(&f, &join(&longer, &footer)), Reason::Signature);
    let mut zero = m_sig.clone();
    zero[m_len..].fill(0);
    assert_eq!(reason(&f, &join(&zero, &footer)), Reason::Signature);
    // The malleable twin: S + L (the group order) verifies in lax implementations.
    let mut malleable = m_sig.clone();
    add_group_order(&mut malleable[m_len + 32..]);
    assert_ne!(malleable, m_sig);
    assert_eq!(reason(&f, &join(&malleable, &footer)), Reason::Signature);
    // The footer is signed too: a different (valid) footer fails the signature.
    let other_footer = format!(r#"{{"kid":"{}" }}"#, key(1).verifying_key().id());
    assert_eq!(
        reason(&f, &join(&m_sig, other_footer.as_bytes())),
        Reason::Signature
    );
}

/// s += L (little-endian), L = 2^252 + 27742317777372353535851937790883648493.
fn add_group_order(s: &mut [u8]) {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (b, l) in s.iter_mut().zip(L) {
        let sum = u16::from(*b) + u16::from(l) + carry;
        *b = (sum & 0xff) as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
}

#[test]
fn t8_small_order_keys_are_refused() {
    // The identity point and the other small-order points: with A = identity, R = identity and
    // S = 0, a lax verifier accepts any message.
    let identity = {
        let mut b = [0u8; 32];
        b[0] = 1;
        b
    };
    let order_two = {
        let mut b = [0xffu8; 32];
        b[0] = 0xec;
        b[31] = 0x7f;
        b
    };
    for k in [identity, order_two, [0u8; 32]] {
        assert_eq!(
            VerifyingKey::from_bytes(&k).unwrap_err(),
            KeyError::WeakPublicKey
        );
    }
    assert_eq!(
        SigningKey::from_seed(&[0; 32]).unwrap_err(),
        KeyError::WeakSeed
    );
}

#[test]
fn t9_signature_stripping() {
    let f = fixture();
    let token = valid_token(&f);
    let (m_sig, footer) = split(&token);
    let payload_only = b64(&m_sig[..m_sig.len() - 64]);
    let m_sig_b64 = b64(&m_sig);
    let footer_b64 = b64(&footer);
    for t in [
        format!("v4.public.{payload_only}."),
        format!("v4.public.{payload_only}"),
        format!("v4.public.{payload_only}.{footer_b64}"),
        format!("v4.public.{m_sig_b64}"),
        format!("v4.public.{m_sig_b64}."),
        format!("v4.public..{footer_b64}"),
        format!("v4.public.{m_sig_b64}.{footer_b64}."),
        format!("v4.public.{m_sig_b64}.{footer_b64}.{footer_b64}"),
        "v4.public.".to_owned(),
        "v4.public".to_owned(),
    ] {
        let r = reason(&f, &t);
        assert!(
            matches!(r, Reason::Malformed | Reason::Signature | Reason::NotPaseto),
            "{t}: {r:?}"
        );
    }
}

#[test]
fn t10_claims_missing_mistyped_or_wrong() {
    let f = fixture();
    let good: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&claims().to_json()).unwrap();
    assert_eq!(good.len(), 11);
    let footer = footer_for(1);
    let sign = |v: &serde_json::Value| {
        sign_with(
            1,
            v.to_string().as_bytes(),
            footer.as_bytes(),
            b"tenant:acme",
        )
    };
    assert!(
        f.verifier
            .verify(&sign(&good.clone().into()), &tenant("acme"))
            .is_ok()
    );
    // Missing each claim in turn.
    for k in good.keys() {
        let mut m = good.clone();
        m.remove(k);
        assert_eq!(reason(&f, &sign(&m.into())), Reason::Claims, "missing {k}");
    }
    // Wrong types, including CVE-2026-25537's numeric forms, and overflowing numbers.
    let wrong: &[(&str, serde_json::Value)] = &[
        ("exp", serde_json::json!(99_999_999_999u64)),
        ("exp", serde_json::json!(1e20)),
        ("exp", serde_json::json!("99999999999")),
        ("exp", serde_json::json!(u64::MAX)),
        ("exp", serde_json::json!(-1)),
        ("iat", serde_json::json!("-0001-01-01T00:00:00Z")),
        ("nbf", serde_json::json!("2026-11-27T13:00:00+00:00")),
        ("exp", serde_json::json!(null)),
        ("sub", serde_json::json!(42)),
        ("tid", serde_json::json!(["acme"])),
        ("dev", serde_json::json!(7)),
        ("dev", serde_json::json!("Laptop")),
        ("role", serde_json::json!("root")),
        ("cap", serde_json::json!("backup:put")),
        ("cap", serde_json::json!(["backup:put", "backup:put"])),
        ("cap", serde_json::json!(["backup:delete"])),
        ("jti", serde_json::json!("short")),
        ("iss", serde_json::json!("")),
    ];
    for (k, v) in wrong {
        let mut m = good.clone();
        m.insert((*k).to_owned(), v.clone());
        assert_eq!(reason(&f, &sign(&m.into())), Reason::Claims, "{k}={v}");
    }
    // An unknown extra claim.
    let mut m = good.clone();
    m.insert("admin".into(), true.into());
    assert_eq!(reason(&f, &sign(&m.into())), Reason::Claims);
    // Well-formed but wrong.
    let cases: Vec<(Claims, Reason)> = vec![
        (
            Claims {
                issuer: "https://evil.test".into(),
                ..claims()
            },
            Reason::Issuer,
        ),
        (
            Claims {
                audience: "other-api".into(),
                ..claims()
            },
            Reason::Audience,
        ),
        (
            Claims {
                issued_at: t0().saturating_sub(2000),
                not_before: t0().saturating_sub(2000),
                expires_at: t0().saturating_sub(1200),
                ..claims()
            },
            Reason::Expired,
        ),
        (
            Claims {
                not_before: t0().saturating_add(600),
                expires_at: t0().saturating_add(900),
                ..claims()
            },
            Reason::NotYetValid,
        ),
        (
            Claims {
                expires_at: t0().saturating_add(MAX_LIFETIME + 1),
                ..claims()
            },
            Reason::Lifetime,
        ),
        (
            Claims {
                expires_at: Timestamp::MAX,
                ..claims()
            },
            Reason::Lifetime,
        ),
    ];
    for (c, want) in cases {
        assert_eq!(reason(&f, &signed(&f, &c)), want, "{c:?}");
    }
    // A mis-issued token: bound to acme by its signature, but claiming globex.
    let c = Claims {
        tenant: tenant("globex"),
        ..claims()
    };
    let t = f.issuer.sign_raw(&c.to_json(), &tenant("acme")).unwrap();
    assert_eq!(reason(&f, t.expose()), Reason::TenantMismatch);
}

#[test]
fn t11_tenant_lookalikes() {
    let f = fixture();
    let token = valid_token(&f);
    // Spellings that are not tenant ids at all: the request cannot even be scoped to them.
    for s in [
        "ACME",
        "acme ",
        "acme%00",
        "acme\0",
        "acme/../other",
        "аcme",
        "ａｃｍｅ",
        "",
    ] {
        assert!(TenantId::new(s).is_err(), "{s:?}");
    }
    // Valid but different tenants: the signature (implicit assertion) fails.
    for s in ["acme-", "acme2", "globex", "acm", "a"] {
        let err = f.verifier.verify(&token, &tenant(s)).unwrap_err();
        assert_eq!(err.reason(), Reason::Signature, "{s}");
    }
    assert!(f.verifier.verify(&token, &tenant("acme")).is_ok());
}

#[test]
fn t12_duplicate_keys() {
    let f = fixture();
    let good = String::from_utf8(claims().to_json()).unwrap();
    let footer = footer_for(1);
    let body = good.trim_start_matches('{');
    for dup in [
        r#""tid":"globex","#.to_owned(),
        r#""exp":"2026-11-27T12:00:00Z","#.to_owned(),
        r#""exp":"2026-11-27T13:10:00Z","#.to_owned(),
        r#""jti":"BBBBBBBBBBBBBBBBBBBBBB","#.to_owned(),
    ] {
        // The duplicate first, then the original: last-wins would accept some of these.
        let payload = format!("{{{dup}{body}");
        let token = sign_with(1, payload.as_bytes(), footer.as_bytes(), b"tenant:acme");
        assert_eq!(reason(&f, &token), Reason::Claims, "{payload}");
        // And the original first.
        let payload = format!(
            "{}{}}}",
            &good[..good.len() - 1],
            format_args!(",{}", dup.trim_end_matches(','))
        );
        let token = sign_with(1, payload.as_bytes(), footer.as_bytes(), b"tenant:acme");
        assert_eq!(reason(&f, &token), Reason::Claims, "{payload}");
    }
    let kid = key(1).verifying_key().id().to_string();
    let footer = format!(r#"{{"kid":"{kid}","kid":"{kid}"}}"#);
    let token = sign_with(1, good.as_bytes(), footer.as_bytes(), b"tenant:acme");
    assert_eq!(reason(&f, &token), Reason::Footer);
}

#[test]
fn t13_size_limits() {
    let f = fixture();
    let token = valid_token(&f);
    assert!(token.len() < 1024);
    // 4 KiB + 1, of otherwise plausible shape.
    let big = format!("v4.public.{}.{}", "A".repeat(MAX_TOKEN_LEN - 12), "AA");
    assert_eq!(big.len(), MAX_TOKEN_LEN + 1);
    assert_eq!(reason(&f, &big), Reason::Oversize);
    assert_eq!(reason(&f, &"{".repeat(1 << 20)), Reason::Oversize);
    assert_eq!(reason(&f, &"\"a\":1,".repeat(1 << 18)), Reason::Oversize);
    // Footers: 257 bytes, nesting, many keys.
    let payload = claims().to_json();
    let kid = key(1).verifying_key().id().to_string();
    let pad = "x".repeat(257 - format!(r#"{{"kid":"{kid}","p":""}}"#).len());
    let footer = format!(r#"{{"kid":"{kid}","p":"{pad}"}}"#);
    assert_eq!(footer.len(), 257);
    let t = sign_with(1, &payload, footer.as_bytes(), b"tenant:acme");
    assert_eq!(reason(&f, &t), Reason::FooterTooLarge);
    let footer = format!(r#"{{"kid":"{kid}","n":{{"n":{{}}}}}}"#);
    let t = sign_with(1, &payload, footer.as_bytes(), b"tenant:acme");
    assert_eq!(reason(&f, &t), Reason::Footer);
    let footer = format!("{}{}", "[".repeat(127), "]".repeat(127));
    let t = sign_with(1, &payload, footer.as_bytes(), b"tenant:acme");
    assert_eq!(reason(&f, &t), Reason::Footer);
    let many: String = (0..513).map(|i| format!(r#","k{i}":1"#)).collect();
    let footer = format!(r#"{{"kid":"{kid}"{many}}}"#);
    let t = sign_with(1, &payload, footer.as_bytes(), b"tenant:acme");
    assert!(matches!(
        reason(&f, &t),
        Reason::FooterTooLarge | Reason::Oversize
    ));
}

#[test]
fn t14_encoding() {
    let f = fixture();
    let token = valid_token(&f);
    let (m_sig, footer) = split(&token);
    let m = b64(&m_sig);
    let fb = b64(&footer);
    let std_alphabet = m.replace('-', "+").replace('_', "/");
    let mut cases = vec![
        format!("v4.public.{m}=.{fb}"),
        format!("v4.public.{m}.{fb}="),
        format!("v4.public.{m}==.{fb}"),
        format!("v4.public. {m}.{fb}"),
        format!("v4.public.{m}.{fb}\n"),
        format!("v4.public.{}\n{}.{fb}", &m[..10], &m[10..]),
        format!("{token}, Bearer {token}"),
        format!("v4.public.{m}\t.{fb}"),
    ];
    if std_alphabet != m {
        cases.push(format!("v4.public.{std_alphabet}.{fb}"));
    }
    for t in &cases {
        let r = reason(&f, t);
        assert!(
            matches!(r, Reason::Encoding | Reason::Malformed),
            "{t:?}: {r:?}"
        );
    }
    // Non-canonical trailing bits: a footer whose length leaves spare bits, with them set.
    assert!(
        !fb.len().is_multiple_of(4),
        "the fixture footer leaves spare bits"
    );
    let last = fb.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.find(last).unwrap();
    let bumped = alphabet.chars().nth(idx + 1).unwrap();
    let t = format!("v4.public.{m}.{}{bumped}", &fb[..fb.len() - 1]);
    assert_eq!(reason(&f, &t), Reason::Encoding);
}

#[test]
fn t15_purpose_and_version_confusion() {
    let f = fixture();
    let token = valid_token(&f);
    let rest = token.strip_prefix("v4.public.").unwrap();
    assert_eq!(
        reason(&f, &format!("v4.local.{rest}")),
        Reason::WrongPurpose
    );
    assert_eq!(
        reason(&f, &format!("v4.secret.{rest}")),
        Reason::WrongPurpose
    );
    for v in ["v1", "v2", "v3"] {
        assert_eq!(
            reason(&f, &format!("{v}.public.{rest}")),
            Reason::WrongVersion
        );
    }
    assert_eq!(reason(&f, &format!("V4.public.{rest}")), Reason::NotPaseto);
    assert_eq!(reason(&f, ""), Reason::NotPaseto);
}

#[test]
fn t16_replay_revoked_and_watermark() {
    let f = fixture();
    let token = f.issuer.issue(&request("acme", "alice"), t0()).unwrap();
    let verified = f.verifier.verify(token.expose(), &tenant("acme")).unwrap();
    f.revocations
        .revoke(&tenant("acme"), &verified.claims().token_id);
    assert_eq!(reason(&f, token.expose()), Reason::Revoked);
    // Another token of the same tenant still works, until the watermark passes its iat.
    let other = f.issuer.issue(&request("acme", "bob"), t0()).unwrap();
    assert!(f.verifier.verify(other.expose(), &tenant("acme")).is_ok());
    // Revoking in another tenant does not touch acme.
    let globex = f.issuer.issue(&request("globex", "carol"), t0()).unwrap();
    f.revocations
        .set_watermark(&tenant("acme"), t0().saturating_add(1));
    assert_eq!(reason(&f, other.expose()), Reason::BeforeWatermark);
    assert!(
        f.verifier
            .verify(globex.expose(), &tenant("globex"))
            .is_ok()
    );
    // The watermark only moves forward; a token issued at the watermark is fine.
    f.revocations.set_watermark(&tenant("acme"), t0());
    let fresh = f
        .issuer
        .issue(&request("acme", "bob"), t0().saturating_add(1))
        .unwrap();
    assert!(f.verifier.verify(fresh.expose(), &tenant("acme")).is_ok());
}

#[test]
fn t18_nothing_secret_in_debug_or_display() {
    let f = fixture();
    let token = valid_token(&f);
    let bearer = f.issuer.issue(&request("acme", "alice"), t0()).unwrap();
    let (m_sig, _) = split(&token);
    let sig_b64 = b64(&m_sig[m_sig.len() - 64..]);
    let seed_hex = hex::encode([1u8; 32]);
    let verified = f.verifier.verify(&token, &tenant("acme")).unwrap();
    let mut tampered = token.clone();
    tampered.insert(20, 'A');
    let err = f.verifier.verify(&tampered, &tenant("acme")).unwrap_err();
    let outputs = [
        format!("{bearer:?}"),
        format!("{:?}", f.issuer),
        format!("{:?}", key(1)),
        format!("{verified:?}"),
        format!("{err:?}"),
        format!("{err}"),
        format!("{:?}", err.reason()),
    ];
    for out in outputs {
        assert!(!out.contains("v4.public."), "{out}");
        assert!(!out.contains(&sig_b64[..20]), "{out}");
        assert!(!out.contains(&seed_hex[..16]), "{out}");
        assert!(!out.contains(&token[10..40]), "{out}");
    }
}
