//! Every record the OCSF export writes is valid File System Activity under the official OCSF
//! 1.1.0 schema, as the OCSF server exports it (the subset under `tests/ocsf-1.1.0/`, with its
//! provenance and licence there).
//!
//! The checks are the schema's own rules, read from the schema file, not restated here: every
//! attribute the record has exists in its class or object (unknown attributes are errors, and
//! so are attributes of profiles the record does not declare in `metadata.profiles`); every
//! required attribute is present; `at_least_one` and `just_one` constraints hold; values have
//! their data type (JSON kind, `integer_t` within 32 bits, `max_len`, `range`, `regex`, arrays
//! where `is_array`); enum attributes take only listed values; an enum's sibling name, when
//! present, is the enum value's caption (except for 99 "Other", whose sibling is free text).

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use cairn_events::ocsf;
use cairn_events::v1::{
    Activity, Actor, BackupLink, Exposure, ExposureKind, File, FileEvent, HashKeying,
    ServerEnvelope, StoredEvent,
};
use proptest::prelude::*;
use serde_json::{Map, Value};

const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/ocsf-1.1.0/file_activity.json"
);

struct Schema {
    doc: Value,
}

/// Where a set of attributes comes from: the class, or one object.
struct Shape<'a> {
    attributes: &'a Map<String, Value>,
    constraints: Option<&'a Value>,
}

impl Schema {
    fn load() -> &'static Self {
        static SCHEMA_DOC: std::sync::OnceLock<Schema> = std::sync::OnceLock::new();
        SCHEMA_DOC.get_or_init(|| {
            let text = std::fs::read_to_string(SCHEMA).unwrap();
            let doc: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                doc["version"], "1.1.0",
                "the fixture is not the 1.1.0 schema"
            );
            Self { doc }
        })
    }

    fn class(&self) -> Shape<'_> {
        let class = &self.doc["classes"]["file_activity"];
        Shape {
            attributes: class["attributes"].as_object().unwrap(),
            constraints: class.get("constraints"),
        }
    }

    fn object(&self, name: &str) -> Option<Shape<'_>> {
        let object = self.doc["objects"].get(name)?;
        Some(Shape {
            attributes: object["attributes"].as_object()?,
            constraints: object.get("constraints"),
        })
    }

    /// All violations of one record, each naming where it is.
    fn violations(&self, record: &Value) -> Vec<String> {
        let profiles: BTreeSet<String> = record["metadata"]["profiles"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let mut errors = Vec::new();
        self.check_shape(&self.class(), record, "", &profiles, &mut errors);
        errors
    }

    fn check_shape(
        &self,
        shape: &Shape<'_>,
        value: &Value,
        at: &str,
        profiles: &BTreeSet<String>,
        errors: &mut Vec<String>,
    ) {
        let Some(fields) = value.as_object() else {
            errors.push(format!("{at}: not an object"));
            return;
        };
        let applies = |attr: &Value| {
            attr.get("profile")
                .and_then(Value::as_str)
                .is_none_or(|p| profiles.contains(p))
        };
        for (name, v) in fields {
            let path = if at.is_empty() {
                name.clone()
            } else {
                format!("{at}.{name}")
            };
            match shape.attributes.get(name) {
                None => errors.push(format!("{path}: not an attribute in OCSF 1.1.0")),
                Some(attr) if !applies(attr) => errors.push(format!(
                    "{path}: attribute of profile {} which metadata.profiles does not declare",
                    attr["profile"]
                )),
                Some(attr) => self.check_attribute(attr, v, &path, fields, profiles, errors),
            }
        }
        for (name, attr) in shape.attributes {
            if attr["requirement"] == "required" && applies(attr) && !fields.contains_key(name) {
                errors.push(format!("{at}: required attribute {name} is missing"));
            }
        }
        if let Some(constraints) = shape.constraints.and_then(Value::as_object) {
            for (kind, names) in constraints {
                let names: Vec<&str> = names
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                let present = names.iter().filter(|n| fields.contains_key(**n)).count();
                let ok = match kind.as_str() {
                    "at_least_one" => present >= 1,
                    "just_one" => present == 1,
                    other => panic!("constraint {other} is not known to this validator"),
                };
                if !ok {
                    errors.push(format!("{at}: {kind} of {names:?} (has {present})"));
                }
            }
        }
    }

    fn check_attribute(
        &self,
        attr: &Value,
        value: &Value,
        at: &str,
        siblings: &Map<String, Value>,
        profiles: &BTreeSet<String>,
        errors: &mut Vec<String>,
    ) {
        if attr["is_array"] == true {
            let Some(items) = value.as_array() else {
                errors.push(format!("{at}: must be an array"));
                return;
            };
            for (i, item) in items.iter().enumerate() {
                self.check_single(attr, item, &format!("{at}[{i}]"), profiles, errors);
            }
        } else {
            self.check_single(attr, value, at, profiles, errors);
        }
        if let Some(values) = attr.get("enum").and_then(Value::as_object) {
            let key = match value {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match values.get(&key) {
                None => errors.push(format!("{at}: {key} is not one of the enum's values")),
                Some(member) => {
                    let sibling = attr.get("sibling").and_then(Value::as_str);
                    if let Some(name) = sibling.filter(|_| key != "99")
                        && let Some(given) = siblings.get(name)
                        && given != &member["caption"]
                    {
                        errors.push(format!(
                            "{at}: sibling {name} is {given}, the caption of {key} is {}",
                            member["caption"]
                        ));
                    }
                }
            }
        }
    }

    fn check_single(
        &self,
        attr: &Value,
        value: &Value,
        at: &str,
        profiles: &BTreeSet<String>,
        errors: &mut Vec<String>,
    ) {
        let type_name = attr["type"].as_str().unwrap();
        if type_name == "object_t" {
            let object = attr["object_type"].as_str().unwrap();
            if object == "object" {
                // OCSF's generic object (`unmapped`): any JSON object.
                if !value.is_object() {
                    errors.push(format!("{at}: not an object"));
                }
                return;
            }
            match self.object(object) {
                Some(shape) => self.check_shape(&shape, value, at, profiles, errors),
                None => errors.push(format!("{at}: object {object} is not in the fixture")),
            }
            return;
        }
        self.check_scalar(type_name, value, at, errors);
    }

    /// A data type and the types it refines (`timestamp_t` is a `long_t`, `file_hash_t` a
    /// `string_t` of at most 64 bytes), each one's constraints checked.
    fn check_scalar(&self, type_name: &str, value: &Value, at: &str, errors: &mut Vec<String>) {
        let Some(def) = self.doc["types"].get(type_name) else {
            errors.push(format!("{at}: type {type_name} is not in the schema"));
            return;
        };
        if let Some(max) = def.get("max_len").and_then(Value::as_u64)
            && value.as_str().is_some_and(|s| s.len() as u64 > max)
        {
            errors.push(format!("{at}: longer than {type_name}'s {max}"));
        }
        if let Some(range) = def.get("range").and_then(Value::as_array) {
            let (lo, hi) = (range[0].as_i64().unwrap(), range[1].as_i64().unwrap());
            if value.as_i64().is_none_or(|n| n < lo || n > hi) {
                errors.push(format!("{at}: outside {type_name}'s range {lo}..={hi}"));
            }
        }
        if let Some(pattern) = def.get("regex").and_then(Value::as_str) {
            let re = regex::Regex::new(pattern).unwrap();
            if value.as_str().is_none_or(|s| !re.is_match(s)) {
                errors.push(format!("{at}: does not match {type_name}'s pattern"));
            }
        }
        if let Some(base) = def.get("type").and_then(Value::as_str) {
            return self.check_scalar(base, value, at, errors);
        }
        let ok = match type_name {
            "string_t" => value.is_string(),
            "integer_t" => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
            "long_t" => value.is_i64() || value.is_u64() && value.as_i64().is_some(),
            "float_t" => value.is_number(),
            "boolean_t" => value.is_boolean(),
            "json_t" => true,
            other => panic!("base type {other} is not known to this validator"),
        };
        if !ok {
            errors.push(format!("{at}: {value} is not of type {type_name}"));
        }
    }
}

fn envelope() -> ServerEnvelope {
    ServerEnvelope {
        tenant_id: "acme".into(),
        user_id: "u-ana".into(),
        device_id: vec![1; 16],
        received_unix_nanos: 1_800_000_000_000_000_000,
        server_event_id: vec![0xEE; 16],
        hash_keying: 0,
    }
}

fn full_event(activity: i32) -> FileEvent {
    FileEvent {
        event_id: vec![9; 16],
        observed_unix_nanos: 1_799_999_999_000_000_000,
        activity,
        file: Some(File {
            path: "/home/ana/q3/report.xlsx".into(),
            previous_path: "/home/ana/q3/draft.xlsx".into(),
            size: 48_213,
            mode: 0o100_644,
            owner: "ana".into(),
            modified_unix_nanos: 1_799_999_998_000_000_000,
            sha256: vec![0xAB; 32],
            blake3: vec![0xCD; 32],
        }),
        actor: Some(Actor {
            user: "ana".into(),
            process_id: 4242,
            process_name: "excel".into(),
            executable: "/opt/office/excel".into(),
        }),
        exposure: Some(Exposure {
            kind: ExposureKind::RemovableMedia as i32,
            destination: "USB-STICK".into(),
        }),
        backup: Some(BackupLink {
            archive_id: vec![7; 16],
            snapshot_id: vec![8; 32],
            file_version: 12,
        }),
    }
}

/// The export's shapes: every activity, each optional part present and absent, an actor whose
/// process the agent knows only by name or path (no pid: the case 1.1.0 refuses as a process).
fn examples() -> Vec<StoredEvent> {
    let activities = [0, 1, 2, 3, 4, 5, 6, 7, 99];
    let mut events = Vec::new();
    for activity in activities {
        events.push(full_event(activity));
        let mut bare = full_event(activity);
        bare.actor = None;
        bare.exposure = None;
        bare.backup = None;
        let file = bare.file.as_mut().unwrap();
        file.sha256.clear();
        file.blake3.clear();
        file.owner.clear();
        file.modified_unix_nanos = 0;
        events.push(bare);
    }
    for (pid, name, exe) in [
        (0, "excel", ""),
        (0, "", "/opt/office/excel"),
        (0, "excel", "/opt/office/excel"),
        (4242, "", ""),
        (u32::MAX, "huge", ""),
        (0, "", ""),
    ] {
        let mut e = full_event(Activity::Update as i32);
        e.actor = Some(Actor {
            user: "ana".into(),
            process_id: pid,
            process_name: name.into(),
            executable: exe.into(),
        });
        events.push(e);
    }
    let mut stored: Vec<StoredEvent> = events
        .into_iter()
        .flat_map(|e| {
            // As the agent sent the hashes, and keyed per tenant as the server stores them.
            [0, HashKeying::TenantV1 as i32].map(|hash_keying| StoredEvent {
                envelope: Some(ServerEnvelope {
                    hash_keying,
                    ..envelope()
                }),
                event: Some(e.clone()),
            })
        })
        .collect();
    // What the store could hand back damaged: no envelope, no event at all.
    stored.push(StoredEvent {
        envelope: None,
        event: Some(full_event(1)),
    });
    stored.push(StoredEvent::default());
    stored
}

fn record(stored: &StoredEvent) -> Value {
    serde_json::to_value(ocsf::to_ocsf(stored, "0.1.0")).unwrap()
}

#[test]
fn every_exported_record_is_valid_ocsf_1_1_0_file_system_activity() {
    let schema = Schema::load();
    let mut failures = Vec::new();
    for stored in examples() {
        let record = record(&stored);
        for v in schema.violations(&record) {
            failures.push(format!("{v}\n    in {record}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The validator itself: records that break each rule are refused, so a pass above means
/// something.
#[test]
fn the_validator_refuses_what_the_schema_refuses() {
    let schema = Schema::load();
    let good = record(&StoredEvent {
        envelope: Some(envelope()),
        event: Some(full_event(1)),
    });
    assert_eq!(schema.violations(&good), Vec::<String>::new());
    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut r = good.clone();
        edit(&mut r);
        schema.violations(&r)
    };
    type Edit<'a> = (&'a str, &'a dyn Fn(&mut Value));
    let cases: [Edit<'_>; 10] = [
        ("not an attribute", &|r| {
            r["metadata"]["original_uid"] = "ab".into()
        }),
        ("required attribute time is missing", &|r| {
            r.as_object_mut().unwrap().remove("time");
        }),
        ("at_least_one", &|r| {
            r["actor"]["process"] = serde_json::json!({"name": "x"})
        }),
        ("enum", &|r| r["activity_id"] = 42.into()),
        ("sibling activity_name", &|r| {
            r["activity_name"] = "Delete".into()
        }),
        ("is not of type long_t", &|r| r["time"] = "yesterday".into()),
        ("is not of type integer_t", &|r| {
            r["actor"]["process"]["pid"] = (i64::from(i32::MAX) + 1).into();
        }),
        ("longer than file_hash_t", &|r| {
            r["file"]["hashes"][0]["value"] = "a".repeat(65).into();
        }),
        ("must be an array", &|r| {
            r["file"]["hashes"] = serde_json::json!({})
        }),
        ("profile", &|r| {
            r["cloud"] = serde_json::json!({"provider": "x"})
        }),
    ];
    for (expected, edit) in cases {
        let v = broken(edit);
        assert!(
            v.iter().any(|e| e.contains(expected)),
            "an edit breaking '{expected}' gave {v:?}"
        );
    }
}

prop_compose! {
    fn arb_stored()(
        activity in prop::sample::select(vec![0, 1, 2, 3, 4, 5, 6, 7, 99]),
        path in "/[a-zA-Z0-9 ._/-]{1,100}",
        previous in "(/[a-zA-Z0-9 ._/-]{1,100})?",
        size in any::<u64>(),
        owner in "[a-z]{0,8}",
        modified in any::<i64>(),
        observed in any::<i64>(),
        sha in prop::option::of(prop::array::uniform32(any::<u8>())),
        blake in prop::option::of(prop::array::uniform32(any::<u8>())),
        actor in prop::option::of(("[a-z]{0,8}", any::<u32>(), "[a-z]{0,8}", "(/[a-z]{1,20})?")),
        exposure in prop::option::of((0i32..=5, "[a-zA-Z0-9.]{0,40}")),
        backup in any::<bool>(),
        hash_keying in 0i32..=2,
    ) -> StoredEvent {
        StoredEvent {
            envelope: Some(ServerEnvelope { hash_keying, ..envelope() }),
            event: Some(FileEvent {
                event_id: vec![1; 16],
                observed_unix_nanos: observed,
                activity,
                file: Some(File {
                    path,
                    previous_path: previous,
                    size,
                    mode: 0o100_644,
                    owner,
                    modified_unix_nanos: modified,
                    sha256: sha.map(|s| s.to_vec()).unwrap_or_default(),
                    blake3: blake.map(|s| s.to_vec()).unwrap_or_default(),
                }),
                actor: actor.map(|(user, process_id, process_name, executable)| Actor {
                    user, process_id, process_name, executable,
                }),
                exposure: exposure.map(|(kind, destination)| Exposure { kind, destination }),
                backup: backup.then(|| BackupLink {
                    archive_id: vec![7; 16],
                    snapshot_id: vec![8; 32],
                    file_version: 3,
                }),
            }),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    /// Any event the validator could let through exports to a valid record.
    #[test]
    fn any_event_exports_to_a_valid_record(stored in arb_stored()) {
        let schema = Schema::load();
        let record = record(&stored);
        let v = schema.violations(&record);
        prop_assert!(v.is_empty(), "{v:?} in {record}");
    }
}
