//! T-1 (sign then verify returns the same claims, 1 000 random claim sets) and the
//! authorization matrix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use cairn_token::*;
use common::*;
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9-]{1,63}"
}

fn arb_claims() -> impl Strategy<Value = (Claims, i64)> {
    (
        name(),
        name(),
        proptest::option::of(name()),
        0..3u8,
        proptest::collection::vec(any::<bool>(), 8),
        0..MAX_LIFETIME,
        1..=MAX_LIFETIME,
        "[A-Za-z0-9_-]{16,64}",
        -LEEWAY..=LEEWAY,
    )
        .prop_map(|(sub, tid, dev, role, caps, back, life, jti, skew)| {
            let role = [Role::User, Role::Admin, Role::Service][usize::from(role)];
            let caps: Vec<Capability> = Capability::ALL
                .into_iter()
                .zip(caps)
                .filter(|(c, on)| *on && (*c != Capability::Admin || role == Role::Admin))
                .map(|(c, _)| c)
                .collect();
            let iat = t0().saturating_sub(back.min(life));
            let claims = Claims {
                issuer: ISSUER.into(),
                audience: AUDIENCE.into(),
                subject: UserId::new(&sub).unwrap(),
                tenant: TenantId::new(&tid).unwrap(),
                device: dev.map(|d| DeviceId::new(&d).unwrap()),
                role,
                capabilities: Capabilities::of(&caps),
                issued_at: iat,
                not_before: iat,
                expires_at: iat.saturating_add(life),
                token_id: TokenId::new(&jti).unwrap(),
            };
            (claims, skew)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn t1_round_trip((claims, skew) in arb_claims()) {
        let f = fixture();
        f.clock.set(t0().saturating_add(skew));
        let token = f.issuer.sign_claims(&claims).unwrap();
        let verified = f.verifier.verify(token.expose(), &claims.tenant).unwrap();
        prop_assert_eq!(verified.claims(), &claims);
        let k = key(1);
        prop_assert_eq!(verified.key_id(), k.verifying_key().id());
        // The JSON form parses back to the same claims.
        prop_assert_eq!(Claims::from_json(&claims.to_json()).unwrap(), claims);
    }

    #[test]
    fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Claims::from_json(&bytes);
    }
}

#[test]
fn issuer_refuses_what_it_must_not_mint() {
    let f = fixture();
    let mut req = request("acme", "alice");
    req.lifetime_secs = MAX_LIFETIME + 1;
    assert_eq!(
        f.issuer.issue(&req, t0()).unwrap_err(),
        IssueError::Lifetime
    );
    req.lifetime_secs = 0;
    assert_eq!(
        f.issuer.issue(&req, t0()).unwrap_err(),
        IssueError::Lifetime
    );
    let mut req = request("acme", "alice");
    req.capabilities = Capabilities::of(&[Capability::Admin]);
    assert_eq!(
        f.issuer.issue(&req, t0()).unwrap_err(),
        IssueError::AdminCapability
    );
    req.role = Role::Admin;
    assert!(f.issuer.issue(&req, t0()).is_ok());
    assert!(Policy::with_limits(ISSUER, AUDIENCE, 900, 61).is_err());
    assert!(Policy::with_limits(ISSUER, AUDIENCE, 0, 0).is_err());
    assert!(Policy::with_limits("", AUDIENCE, 900, 0).is_err());
}

/// Every (role, device binding, capability held, owner) combination against the rules written
/// in `authorize`'s documentation, computed independently here.
#[test]
fn authorization_matrix() {
    let f = fixture();
    let acme = tenant("acme");
    let alice = user("alice");
    let bob = user("bob");
    let laptop = DeviceId::new("laptop").unwrap();
    let phone = DeviceId::new("phone").unwrap();
    let owners: Vec<(Owner<'_>, &str)> = vec![
        (Owner::Tenant, "tenant"),
        (Owner::User(&alice), "alice"),
        (Owner::User(&bob), "bob"),
        (
            Owner::Device {
                user: &alice,
                device: &laptop,
            },
            "alice/laptop",
        ),
        (
            Owner::Device {
                user: &alice,
                device: &phone,
            },
            "alice/phone",
        ),
        (
            Owner::Device {
                user: &bob,
                device: &laptop,
            },
            "bob/laptop",
        ),
    ];
    let mut checked = 0;
    for role in [Role::User, Role::Admin, Role::Service] {
        for device in [None, Some(laptop.clone())] {
            for held in Capability::ALL {
                if held == Capability::Admin && role != Role::Admin {
                    continue;
                }
                let req = TokenRequest {
                    subject: alice.clone(),
                    tenant: acme.clone(),
                    device: device.clone(),
                    role,
                    capabilities: Capabilities::of(&[held]),
                    lifetime_secs: 60,
                };
                let token = f.issuer.issue(&req, t0()).unwrap();
                let verified = f.verifier.verify(token.expose(), &acme).unwrap();
                for needed in Capability::ALL {
                    for (owner, label) in &owners {
                        let got = authorize(&verified, &acme, needed, *owner).is_ok();
                        let reach = match role {
                            Role::Admin | Role::Service => true,
                            Role::User => match *label {
                                "alice" => true,
                                "alice/laptop" => true,
                                "alice/phone" => device.is_none(),
                                _ => false,
                            },
                        };
                        let want = held == needed && reach;
                        assert_eq!(
                            got, want,
                            "{role:?} dev={device:?} held={held:?} needed={needed:?} owner={label}"
                        );
                        checked += 1;
                    }
                }
                // Another tenant's request is always denied.
                let globex = tenant("globex");
                assert_eq!(
                    authorize(&verified, &globex, held, Owner::Tenant),
                    Err(Denied::OtherTenant)
                );
            }
        }
    }
    assert!(checked > 1000);
}
