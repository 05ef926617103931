//! Rotating the token signing key across instances without downtime (SECURITY-TESTS T-4,
//! `docs/design/0009-retention-and-prune.md` §9): two instances over one database, a manual
//! clock, and the three steps the operator runs (`cairn_server::signing`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use cairn_server::signing::{self, SigningError};
use cairn_server::{DataDir, RateConfig, RevocationList, Services, policy};
use cairn_token::{
    Capabilities, Capability, ManualClock, Reason, Role, TenantId, Timestamp, TokenRequest, UserId,
    Verifier,
};

type Instance = (
    Arc<Services>,
    Verifier<signing::KeySet, ManualClock, RevocationList>,
);

async fn instance(data: &DataDir, clock: &ManualClock) -> Instance {
    let services = data
        .services_clocked(RateConfig::default(), Arc::new(clock.clone()))
        .await
        .unwrap();
    let verifier = data.verifier(clock.clone(), &services).unwrap();
    (services, verifier)
}

async fn reload(i: &Instance) {
    i.0.issuer.reload(&i.0.db, &i.0.ring).await.unwrap();
}

fn request(lifetime_secs: i64) -> TokenRequest {
    TokenRequest {
        subject: UserId::new("ana").unwrap(),
        tenant: TenantId::new("acme").unwrap(),
        device: None,
        role: Role::User,
        capabilities: Capabilities::of(&[Capability::BackupList]),
        lifetime_secs,
    }
}

fn token(i: &Instance, at: Timestamp, lifetime: i64) -> String {
    i.0.issuer
        .issue(&request(lifetime), at)
        .unwrap()
        .expose()
        .to_owned()
}

fn accepts(i: &Instance, token: &str) -> Result<(), Reason> {
    i.1.verify(token, &TenantId::new("acme").unwrap())
        .map(drop)
        .map_err(|e| e.reason())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t4_the_signing_key_rotates_across_instances_without_downtime() {
    let dir = tempfile::tempdir().unwrap();
    // The embedded defaults, or PostgreSQL and S3 (CAIRN_TEST_BACKENDS=shared).
    let backends = cairn_server::testenv::from_env().await.unwrap();
    let data = DataDir::at(dir.path().join("data")).with_backends(backends);
    data.init(&["localhost".to_owned()], time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let clock = ManualClock::new(Timestamp::from_unix(now).unwrap());
    let (one, two) = (instance(&data, &clock).await, instance(&data, &clock).await);
    let policy = policy().unwrap();
    let (max, leeway) = (policy.max_lifetime(), policy.leeway());
    let at = |secs: i64| Timestamp::from_unix(now + secs).unwrap();
    let db = &one.0.db;
    let ring = &one.0.ring;

    // Before: one key, the data directory's; both instances sign with it and accept it.
    let old_key = one.0.issuer.signer_at(at(0)).unwrap();
    assert_eq!(two.0.issuer.signer_at(at(0)), Some(old_key.clone()));
    let before = token(&one, at(0), max);
    assert_eq!(
        (accepts(&one, &before), accepts(&two, &before)),
        (Ok(()), Ok(()))
    );

    // 1. Publish: the new key is in the set; a switch this early is refused.
    let new_key = signing::publish(db, ring, now).await.unwrap();
    assert_ne!(new_key, old_key);
    assert!(matches!(
        signing::switch(db, &new_key, now + signing::PROPAGATION_SECS - 1).await,
        Err(SigningError::TooEarly(_))
    ));
    reload(&one).await;
    reload(&two).await;
    assert_eq!(
        one.0.issuer.signer_at(at(1)),
        Some(old_key.clone()),
        "not yet"
    );

    // 2. Switch: the first instance to reload signs with the new key, and the other accepts
    // its tokens at once (it has had the key since it was published). Until it reloads, the
    // other still signs with the old key, and those tokens are accepted everywhere.
    let switched = signing::PROPAGATION_SECS;
    clock.set(at(switched));
    signing::switch(db, &new_key, now + switched).await.unwrap();
    reload(&one).await;
    assert_eq!(one.0.issuer.signer_at(at(switched)), Some(new_key.clone()));
    let fresh = token(&one, at(switched), 600);
    assert_eq!(
        (accepts(&one, &fresh), accepts(&two, &fresh)),
        (Ok(()), Ok(()))
    );
    let lagging = token(&two, at(switched + 1), 600);
    clock.set(at(switched + 1));
    assert_eq!(
        (accepts(&one, &lagging), accepts(&two, &lagging)),
        (Ok(()), Ok(()))
    );
    reload(&two).await;
    assert_eq!(
        two.0.issuer.signer_at(at(switched + 1)),
        Some(new_key.clone())
    );
    // The old key's earlier token is still good on both.
    assert_eq!(
        (accepts(&one, &before), accepts(&two, &before)),
        (Ok(()), Ok(()))
    );
    // A token the old key mints after the switch (were it stolen) is refused once the leeway
    // is over.
    let last_signing = Timestamp::from_unix(now + switched + leeway + 1).unwrap();
    clock.set(last_signing);
    let stolen = cairn_token::Issuer::new(data.signing_key().unwrap().0, policy.clone())
        .issue(&request(600), last_signing)
        .unwrap();
    assert_eq!(accepts(&one, stolen.expose()), Err(Reason::KeyNotValid));

    // 3. Retire: refused while a token the old key signed can still be valid, accepted after.
    let until = now + switched + max + leeway;
    assert!(matches!(
        signing::retire(db, &old_key, until, &policy).await,
        Err(SigningError::TooEarly(_))
    ));
    assert!(matches!(
        signing::retire(db, &new_key, until + 1, &policy).await,
        Err(SigningError::State(_))
    ));
    signing::retire(db, &old_key, until + 1, &policy)
        .await
        .unwrap();
    reload(&one).await;
    reload(&two).await;
    clock.set(Timestamp::from_unix(until + 1).unwrap());
    let after = token(&two, Timestamp::from_unix(until + 1).unwrap(), 600);
    assert_eq!(
        (accepts(&one, &after), accepts(&two, &after)),
        (Ok(()), Ok(()))
    );
    let old_signed = cairn_token::Issuer::new(data.signing_key().unwrap().0, policy.clone())
        .issue(&request(600), Timestamp::from_unix(until + 1).unwrap())
        .unwrap();
    assert_eq!(accepts(&two, old_signed.expose()), Err(Reason::UnknownKey));

    // A restart does not bring the retired key back from the data directory's key file.
    drop(one);
    let three = instance(&data, &clock).await;
    assert_eq!(
        three
            .0
            .issuer
            .signer_at(Timestamp::from_unix(until + 1).unwrap()),
        Some(new_key.clone())
    );
    assert_eq!(
        accepts(&three, old_signed.expose()),
        Err(Reason::UnknownKey)
    );
    assert_eq!(accepts(&three, &after), Ok(()));
    let listed = signing::list(&three.0.db).await.unwrap();
    assert!(
        listed
            .iter()
            .any(|k| k.id == old_key && k.removed_unix.is_some())
    );
}
