//! Round trips, golden files, every limit just under and just over, and hostile encodings.

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use cairn_events::v1::{
    Activity, Actor, BackupLink, EventBatch, Exposure, ExposureKind, File, FileEvent, HashKeying,
    ServerEnvelope, StoredEvent,
};
use cairn_events::{EventError, Limits, ocsf, validate_batch};
use proptest::prelude::*;
use prost::Message;

const NOW: i64 = 1_800_000_000_000_000_000;
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

fn event(i: u8) -> FileEvent {
    FileEvent {
        event_id: vec![i; 16],
        observed_unix_nanos: NOW - 60_000_000_000 + i64::from(i),
        activity: Activity::Update as i32,
        file: Some(File {
            path: format!("/home/ana/projects/q3/report-{i}.xlsx"),
            previous_path: String::new(),
            size: 48_213 + u64::from(i),
            mode: 0o100644,
            owner: "ana".into(),
            modified_unix_nanos: NOW - 61_000_000_000,
            sha256: vec![0xAB; 32],
            blake3: vec![0xCD; 32],
        }),
        actor: Some(Actor {
            user: "ana".into(),
            process_id: 4242,
            process_name: "excel".into(),
            executable: "/opt/office/excel".into(),
        }),
        exposure: None,
        backup: Some(BackupLink {
            archive_id: vec![7; 16],
            snapshot_id: vec![8; 32],
            file_version: 12,
        }),
    }
}

fn batch(n: usize) -> EventBatch {
    EventBatch {
        device_id: vec![1; 16],
        agent_version: "cairn-agent 0.1.0".into(),
        batch_sequence: 99,
        events: (0..n).map(|i| event(i as u8)).collect(),
    }
}

fn check(b: &EventBatch) -> Result<EventBatch, EventError> {
    validate_batch(&b.encode_to_vec(), &Limits::default(), NOW)
}

fn invalid_field(b: &EventBatch) -> &'static str {
    match check(b) {
        Err(EventError::InvalidEvent { field, .. } | EventError::InvalidBatch { field, .. }) => {
            field
        }
        other => panic!("expected a field error, got {other:?}"),
    }
}

prop_compose! {
    fn arb_event()(
        id in prop::array::uniform16(any::<u8>()),
        dt in 0i64..1_000_000_000_000,
        activity in prop::sample::select(vec![1, 2, 3, 4, 6, 7, 99]),
        path in "/[a-zA-Z0-9 ._/-]{1,200}",
        size in any::<u64>(),
        mode in any::<u32>(),
        user in "[a-z]{0,16}",
        pid in any::<u32>(),
        sha in prop::option::of(prop::array::uniform32(any::<u8>())),
        exposure in prop::option::of((1i32..=5, "[a-z.]{0,40}")),
    ) -> FileEvent {
        FileEvent {
            event_id: id.to_vec(),
            observed_unix_nanos: NOW - dt,
            activity,
            file: Some(File { path, size, mode, sha256: sha.map(|s| s.to_vec()).unwrap_or_default(), ..Default::default() }),
            actor: Some(Actor { user, process_id: pid, ..Default::default() }),
            exposure: exposure.map(|(kind, destination)| Exposure { kind, destination }),
            backup: None,
        }
    }
}

proptest! {
    /// Encode, validate-decode, re-encode: identical messages and bytes.
    #[test]
    fn round_trip(events in prop::collection::vec(arb_event(), 1..20), seq in any::<u64>()) {
        let b = EventBatch { device_id: vec![3; 16], agent_version: "x".into(), batch_sequence: seq, events };
        let bytes = b.encode_to_vec();
        let decoded = validate_batch(&bytes, &Limits::default(), NOW).unwrap();
        prop_assert_eq!(&decoded, &b);
        prop_assert_eq!(decoded.encode_to_vec(), bytes);
        // OCSF export never fails on a valid event.
        for e in decoded.events {
            let stored = StoredEvent { envelope: Some(ServerEnvelope::default()), event: Some(e) };
            let json = serde_json::to_value(ocsf::to_ocsf(&stored, "test")).unwrap();
            prop_assert_eq!(json["class_uid"].as_u64(), Some(1001));
        }
    }

    /// Arbitrary bytes: a typed result, never a panic.
    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = validate_batch(&bytes, &Limits::default(), NOW);
    }
}

/// Golden binary: the wire format of a fixed batch must not drift.
#[test]
fn golden_binary() {
    let path = format!("{GOLDEN}/batch-v1.bin");
    let bytes = batch(3).encode_to_vec();
    if std::env::var_os("CAIRN_REGENERATE_VECTORS").is_some() {
        std::fs::write(&path, &bytes).unwrap();
    }
    let committed = std::fs::read(&path).unwrap();
    assert_eq!(committed, bytes, "the v1 wire encoding changed");
    assert_eq!(
        check(&batch(3)).unwrap(),
        EventBatch::decode(&committed[..]).unwrap()
    );
}

fn stored_examples() -> Vec<StoredEvent> {
    let envelope = ServerEnvelope {
        tenant_id: "acme".into(),
        user_id: "u-ana".into(),
        device_id: vec![1; 16],
        received_unix_nanos: NOW,
        server_event_id: vec![0xEE; 16],
        hash_keying: HashKeying::None as i32,
    };
    let mut rename = event(1);
    rename.activity = Activity::Rename as i32;
    rename.file.as_mut().unwrap().previous_path = "/home/ana/draft.xlsx".into();
    let mut exfil = event(2);
    exfil.activity = Activity::Create as i32;
    exfil.file.as_mut().unwrap().path = "/media/ana/USB-STICK/report.xlsx".into();
    exfil.exposure = Some(Exposure {
        kind: ExposureKind::RemovableMedia as i32,
        destination: "USB-STICK".into(),
    });
    exfil.backup = None;
    let mut stored: Vec<StoredEvent> = [event(0), rename, exfil]
        .into_iter()
        .map(|e| StoredEvent {
            envelope: Some(envelope.clone()),
            event: Some(e),
        })
        .collect();
    // As the server stores events now: hashes keyed per tenant.
    stored.push(StoredEvent {
        envelope: Some(ServerEnvelope {
            hash_keying: HashKeying::TenantV1 as i32,
            ..envelope
        }),
        event: Some(event(3)),
    });
    stored
}

/// Golden OCSF NDJSON: the export mapping must not drift.
#[test]
fn golden_ocsf() {
    let path = format!("{GOLDEN}/ocsf-v1.ndjson");
    let mut out = Vec::new();
    let n = ocsf::write_ndjson(&stored_examples(), "0.1.0", &mut out).unwrap();
    assert_eq!(n, 4);
    if std::env::var_os("CAIRN_REGENERATE_VECTORS").is_some() {
        std::fs::write(&path, &out).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        String::from_utf8(out).unwrap()
    );
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["type_uid"], 100103);
    assert_eq!(first["metadata"]["tenant_uid"], "acme");
    assert_eq!(first["file"]["hashes"][0]["algorithm_id"], 3);
    let keyed: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .nth(3)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(keyed["file"]["hashes"][0]["algorithm_id"], 99);
    assert_eq!(
        keyed["file"]["hashes"][0]["algorithm"],
        ocsf::TENANT_KEYED_SHA256
    );
}

#[test]
fn batch_size_limit_is_checked_before_decoding() {
    let limits = Limits {
        max_batch_bytes: 1000,
        ..Limits::default()
    };
    let garbage = vec![0xFF; 1001];
    assert_eq!(
        validate_batch(&garbage, &limits, NOW),
        Err(EventError::TooLarge {
            len: 1001,
            max: 1000
        })
    );
    // Exactly at the limit it is decoded (and here fails as protobuf).
    assert!(matches!(
        validate_batch(&garbage[..1000], &limits, NOW),
        Err(EventError::Decode(_))
    ));
}

#[test]
fn event_count_limit() {
    let limits = Limits {
        max_events: 5,
        ..Limits::default()
    };
    assert!(validate_batch(&batch(5).encode_to_vec(), &limits, NOW).is_ok());
    assert_eq!(
        validate_batch(&batch(6).encode_to_vec(), &limits, NOW),
        Err(EventError::TooManyEvents { count: 6, max: 5 })
    );
    let mut empty = batch(1);
    empty.events.clear();
    assert_eq!(invalid_field(&empty), "events");
}

#[test]
fn path_and_string_limits() {
    let mut b = batch(1);
    b.events[0].file.as_mut().unwrap().path =
        format!("/{}", "a".repeat(Limits::MAX_PATH_BYTES - 1));
    assert!(check(&b).is_ok());
    b.events[0].file.as_mut().unwrap().path.push('a');
    assert_eq!(invalid_field(&b), "file.path");

    let mut b = batch(1);
    b.events[0].actor.as_mut().unwrap().user = "u".repeat(Limits::MAX_STRING_BYTES);
    assert!(check(&b).is_ok());
    b.events[0].actor.as_mut().unwrap().user.push('u');
    assert_eq!(invalid_field(&b), "actor.user");

    let mut b = batch(1);
    b.agent_version = "v".repeat(Limits::MAX_AGENT_VERSION_BYTES);
    assert!(check(&b).is_ok());
    b.agent_version.push('v');
    assert_eq!(invalid_field(&b), "agent_version");
}

#[test]
fn time_bounds() {
    let mut b = batch(1);
    b.events[0].observed_unix_nanos = NOW + Limits::MAX_FUTURE_SKEW_NANOS;
    assert!(check(&b).is_ok());
    b.events[0].observed_unix_nanos += 1;
    assert_eq!(invalid_field(&b), "observed_unix_nanos");
    b.events[0].observed_unix_nanos = Limits::MIN_OBSERVED_UNIX_NANOS;
    assert!(check(&b).is_ok());
    b.events[0].observed_unix_nanos -= 1;
    assert_eq!(invalid_field(&b), "observed_unix_nanos");
    b.events[0].observed_unix_nanos = i64::MIN;
    assert_eq!(invalid_field(&b), "observed_unix_nanos");
}

#[test]
fn required_fields_and_enums() {
    type Mutation = Box<dyn Fn(&mut EventBatch)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("device_id", Box::new(|b| b.device_id = vec![1; 15])),
        ("event_id", Box::new(|b| b.events[0].event_id = vec![])),
        ("activity", Box::new(|b| b.events[0].activity = 0)),
        ("activity", Box::new(|b| b.events[0].activity = 42)),
        ("file", Box::new(|b| b.events[0].file = None)),
        (
            "file.path",
            Box::new(|b| b.events[0].file.as_mut().unwrap().path.clear()),
        ),
        (
            "file.sha256",
            Box::new(|b| b.events[0].file.as_mut().unwrap().sha256 = vec![1; 31]),
        ),
        (
            "file.blake3",
            Box::new(|b| b.events[0].file.as_mut().unwrap().blake3 = vec![1; 33]),
        ),
        (
            "file.previous_path",
            Box::new(|b| b.events[0].activity = Activity::Rename as i32),
        ),
        (
            "file.previous_path",
            Box::new(|b| b.events[0].file.as_mut().unwrap().previous_path = "/x".into()),
        ),
        (
            "exposure.kind",
            Box::new(|b| {
                b.events[0].exposure = Some(Exposure {
                    kind: 0,
                    destination: String::new(),
                })
            }),
        ),
        (
            "exposure.kind",
            Box::new(|b| {
                b.events[0].exposure = Some(Exposure {
                    kind: 77,
                    destination: String::new(),
                })
            }),
        ),
        (
            "backup.archive_id",
            Box::new(|b| b.events[0].backup.as_mut().unwrap().archive_id = vec![1; 8]),
        ),
        (
            "backup.snapshot_id",
            Box::new(|b| b.events[0].backup.as_mut().unwrap().snapshot_id = vec![]),
        ),
    ];
    for (field, mutate) in cases {
        let mut b = batch(2);
        mutate(&mut b);
        assert_eq!(invalid_field(&b), field);
    }
    // The second event is checked too, and named.
    let mut b = batch(3);
    b.events[2].event_id = vec![0; 3];
    assert!(matches!(
        check(&b),
        Err(EventError::InvalidEvent {
            index: 2,
            field: "event_id",
            ..
        })
    ));
}

/// S-14: nesting deeper than prost's limit of 100 fails to decode; a length prefix larger than
/// the remaining bytes fails without allocating it.
#[test]
fn hostile_encodings() {
    let nested = |depth: usize| {
        let mut v = batch(1).encode_to_vec();
        // Unknown field 50 as nested groups: start-group tags, then end-group tags.
        v.extend(std::iter::repeat_n([0x93u8, 0x03], depth).flatten());
        v.extend(std::iter::repeat_n([0x94u8, 0x03], depth).flatten());
        v
    };
    assert!(validate_batch(&nested(50), &Limits::default(), NOW).is_ok());
    assert!(matches!(
        validate_batch(&nested(101), &Limits::default(), NOW),
        Err(EventError::Decode(_))
    ));

    // Field 4 (events) claims 2^31 bytes but only a few follow.
    let mut lying = vec![0x22];
    lying.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x08]);
    lying.extend_from_slice(&[0; 10]);
    assert!(matches!(
        validate_batch(&lying, &Limits::default(), NOW),
        Err(EventError::Decode(_))
    ));

    // Invalid UTF-8 in a string field.
    let mut b = batch(1).encode_to_vec();
    let at = b.windows(5).position(|w| w == b"cairn").unwrap();
    b[at] = 0xFF;
    assert!(matches!(
        validate_batch(&b, &Limits::default(), NOW),
        Err(EventError::Decode(_))
    ));
}

/// Unknown fields from a newer agent are tolerated (and dropped by this reader).
#[test]
fn unknown_fields_are_tolerated() {
    let mut v = batch(1).encode_to_vec();
    v.extend_from_slice(&[0xA8, 0x06, 0x01]); // field 101, varint 1
    assert_eq!(
        validate_batch(&v, &Limits::default(), NOW).unwrap(),
        batch(1)
    );
}
