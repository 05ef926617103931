//! OCSF 1.1 File System Activity (class 1001) export: one JSON object per stored event, and NDJSON
//! streaming. The field mapping is tabled in `docs/format/events.md`.

use std::io::{self, Write};

use serde::Serialize;

use crate::v1::{Activity, ExposureKind, HashKeying, StoredEvent};

/// The OCSF schema version the export follows.
pub const OCSF_VERSION: &str = "1.1.0";
/// OCSF class: File System Activity.
pub const CLASS_UID: u32 = 1001;
/// OCSF category: System Activity.
pub const CATEGORY_UID: u32 = 1;

/// One OCSF File System Activity record.
#[derive(Debug, Serialize, PartialEq)]
pub struct FileSystemActivity<'a> {
    activity_id: i32,
    activity_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    class_uid: u32,
    class_name: &'static str,
    type_uid: i64,
    type_name: &'static str,
    severity_id: u8,
    severity: &'static str,
    status_id: u8,
    status: &'static str,
    time: i64,
    metadata: Metadata<'a>,
    actor: Actor<'a>,
    device: Device,
    file: File<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_result: Option<File<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unmapped: Option<Unmapped<'a>>,
}

#[derive(Debug, Serialize, PartialEq)]
struct Metadata<'a> {
    version: &'static str,
    product: Product,
    tenant_uid: &'a str,
    uid: String,
    logged_time: i64,
}

#[derive(Debug, Serialize, PartialEq)]
struct Product {
    name: &'static str,
    vendor_name: &'static str,
    version: &'static str,
}

#[derive(Debug, Serialize, PartialEq)]
struct Actor<'a> {
    user: User<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<Process<'a>>,
}

#[derive(Debug, Serialize, PartialEq)]
struct User<'a> {
    name: &'a str,
    uid: &'a str,
}

#[derive(Debug, Serialize, PartialEq)]
struct Process<'a> {
    pid: i32,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<ProcessFile<'a>>,
}

#[derive(Debug, Serialize, PartialEq)]
struct ProcessFile<'a> {
    path: &'a str,
    name: &'a str,
    type_id: u8,
}

#[derive(Debug, Serialize, PartialEq)]
struct Device {
    uid: String,
    type_id: u8,
    #[serde(rename = "type")]
    type_name: &'static str,
}

#[derive(Debug, Serialize, PartialEq)]
struct File<'a> {
    name: &'a str,
    path: &'a str,
    type_id: u8,
    #[serde(rename = "type")]
    type_name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    modified_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<Owner<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hashes: Vec<Fingerprint>,
}

#[derive(Debug, Serialize, PartialEq)]
struct Owner<'a> {
    name: &'a str,
}

#[derive(Debug, Serialize, PartialEq)]
struct Fingerprint {
    algorithm_id: u8,
    algorithm: &'static str,
    value: String,
}

#[derive(Debug, Serialize, PartialEq)]
struct Unmapped<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    cairn_event_uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cairn_process: Option<ProcessOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cairn_exposure: Option<ExposureOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cairn_backup: Option<BackupOut>,
}

/// A process the agent knows without a pid: OCSF 1.1.0's `process` needs `pid` or `uid`.
#[derive(Debug, Serialize, PartialEq)]
struct ProcessOut<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    path: &'a str,
}

#[derive(Debug, Serialize, PartialEq)]
struct ExposureOut<'a> {
    kind: &'static str,
    destination: &'a str,
}

#[derive(Debug, Serialize, PartialEq)]
struct BackupOut {
    archive_id: String,
    snapshot_id: String,
    file_version: u64,
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn millis(nanos: i64) -> i64 {
    nanos.div_euclid(1_000_000)
}

fn basename(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

fn activity_name(a: Activity) -> &'static str {
    match a {
        Activity::Create => "Create",
        Activity::Read => "Read",
        Activity::Update => "Update",
        Activity::Delete => "Delete",
        Activity::Rename => "Rename",
        Activity::SetAttributes => "Set Attributes",
        Activity::SetSecurity => "Set Security",
        Activity::Other => "Other",
        Activity::Unspecified => "Unknown",
    }
}

fn type_name(a: Activity) -> &'static str {
    match a {
        Activity::Create => "File System Activity: Create",
        Activity::Read => "File System Activity: Read",
        Activity::Update => "File System Activity: Update",
        Activity::Delete => "File System Activity: Delete",
        Activity::Rename => "File System Activity: Rename",
        Activity::SetAttributes => "File System Activity: Set Attributes",
        Activity::SetSecurity => "File System Activity: Set Security",
        Activity::Other => "File System Activity: Other",
        Activity::Unspecified => "File System Activity: Unknown",
    }
}

/// The name an exposure kind has in OCSF output (`unmapped.cairn_exposure.kind`) and in the
/// server's `exposure` search filter: `removable_media`, `cloud_sync`, `browser_download`,
/// `browser_upload`, `network_share`, `unspecified`.
#[must_use]
pub fn exposure_name(k: ExposureKind) -> &'static str {
    match k {
        ExposureKind::RemovableMedia => "removable_media",
        ExposureKind::CloudSync => "cloud_sync",
        ExposureKind::BrowserDownload => "browser_download",
        ExposureKind::BrowserUpload => "browser_upload",
        ExposureKind::NetworkShare => "network_share",
        ExposureKind::Unspecified => "unspecified",
    }
}

/// The `algorithm` of a SHA-256 the server stored keyed per tenant (OCSF `algorithm_id` 99).
pub const TENANT_KEYED_SHA256: &str = "cairn-tenant-keyed-sha256-v1";
/// The `algorithm` of a BLAKE3 the server stored keyed per tenant (OCSF `algorithm_id` 99).
pub const TENANT_KEYED_BLAKE3: &str = "cairn-tenant-keyed-blake3-v1";

fn file_object<'a>(
    path: &'a str,
    f: &'a crate::v1::File,
    with_details: bool,
    keying: HashKeying,
) -> File<'a> {
    let keyed = keying == HashKeying::TenantV1;
    let mut hashes = Vec::new();
    if with_details && f.sha256.len() == 32 {
        hashes.push(if keyed {
            Fingerprint {
                algorithm_id: 99,
                algorithm: TENANT_KEYED_SHA256,
                value: hex(&f.sha256),
            }
        } else {
            Fingerprint {
                algorithm_id: 3,
                algorithm: "SHA-256",
                value: hex(&f.sha256),
            }
        });
    }
    if with_details && f.blake3.len() == 32 {
        hashes.push(Fingerprint {
            algorithm_id: 99,
            algorithm: if keyed { TENANT_KEYED_BLAKE3 } else { "BLAKE3" },
            value: hex(&f.blake3),
        });
    }
    File {
        name: basename(path),
        path,
        type_id: 1,
        type_name: "Regular File",
        // `long_t` is signed: a size past i64::MAX (no real file) is left out, not wrapped.
        size: i64::try_from(f.size).ok().filter(|_| with_details),
        modified_time: (with_details && f.modified_unix_nanos != 0)
            .then(|| millis(f.modified_unix_nanos)),
        owner: (with_details && !f.owner.is_empty()).then_some(Owner { name: &f.owner }),
        hashes,
    }
}

/// Maps one stored event (validated event plus server envelope) to OCSF File System Activity.
/// `product_version` is the server's version string.
#[must_use]
pub fn to_ocsf<'a>(
    stored: &'a StoredEvent,
    product_version: &'static str,
) -> FileSystemActivity<'a> {
    static EMPTY_EVENT: std::sync::OnceLock<crate::v1::FileEvent> = std::sync::OnceLock::new();
    static EMPTY_ENV: std::sync::OnceLock<crate::v1::ServerEnvelope> = std::sync::OnceLock::new();
    static EMPTY_FILE: std::sync::OnceLock<crate::v1::File> = std::sync::OnceLock::new();
    let event = stored
        .event
        .as_ref()
        .unwrap_or_else(|| EMPTY_EVENT.get_or_init(Default::default));
    let env = stored
        .envelope
        .as_ref()
        .unwrap_or_else(|| EMPTY_ENV.get_or_init(Default::default));
    let f = event
        .file
        .as_ref()
        .unwrap_or_else(|| EMPTY_FILE.get_or_init(Default::default));
    let activity = Activity::try_from(event.activity).unwrap_or(Activity::Other);
    let activity_id = if activity == Activity::Unspecified {
        0
    } else {
        activity as i32
    };
    let keying = HashKeying::try_from(env.hash_keying).unwrap_or(HashKeying::None);
    let (file, file_result) = if activity == Activity::Rename {
        (
            file_object(&f.previous_path, f, false, keying),
            Some(file_object(&f.path, f, true, keying)),
        )
    } else {
        (file_object(&f.path, f, true, keying), None)
    };
    // OCSF's `process` needs a pid (`integer_t`, 32 bits) or a uid; the agent gives no process
    // uid, so a process known only by name or executable goes to `unmapped.cairn_process`.
    let actor = event.actor.as_ref();
    let pid = actor
        .and_then(|a| i32::try_from(a.process_id).ok())
        .filter(|&pid| pid > 0);
    let process = actor.zip(pid).map(|(a, pid)| Process {
        pid,
        name: &a.process_name,
        file: (!a.executable.is_empty()).then(|| ProcessFile {
            path: &a.executable,
            name: basename(&a.executable),
            type_id: 1,
        }),
    });
    let unmapped_process = actor
        .filter(|a| pid.is_none() && !(a.process_name.is_empty() && a.executable.is_empty()))
        .map(|a| ProcessOut {
            name: &a.process_name,
            path: &a.executable,
        });
    let event_uid = (!event.event_id.is_empty()).then(|| hex(&event.event_id));
    let exposure = event.exposure.as_ref().map(|x| ExposureOut {
        kind: exposure_name(ExposureKind::try_from(x.kind).unwrap_or(ExposureKind::Unspecified)),
        destination: &x.destination,
    });
    let backup = event.backup.as_ref().map(|b| BackupOut {
        archive_id: hex(&b.archive_id),
        snapshot_id: hex(&b.snapshot_id),
        file_version: b.file_version,
    });
    let unmapped = (event_uid.is_some()
        || unmapped_process.is_some()
        || exposure.is_some()
        || backup.is_some())
    .then_some(Unmapped {
        cairn_event_uid: event_uid,
        cairn_process: unmapped_process,
        cairn_exposure: exposure,
        cairn_backup: backup,
    });
    FileSystemActivity {
        activity_id,
        activity_name: activity_name(activity),
        category_uid: CATEGORY_UID,
        category_name: "System Activity",
        class_uid: CLASS_UID,
        class_name: "File System Activity",
        type_uid: i64::from(CLASS_UID) * 100 + i64::from(activity_id),
        type_name: type_name(activity),
        severity_id: 1,
        severity: "Informational",
        status_id: 1,
        status: "Success",
        time: millis(event.observed_unix_nanos),
        metadata: Metadata {
            version: OCSF_VERSION,
            product: Product {
                name: "Cairn",
                vendor_name: "Cairn",
                version: product_version,
            },
            tenant_uid: &env.tenant_id,
            uid: hex(&env.server_event_id),
            logged_time: millis(env.received_unix_nanos),
        },
        actor: Actor {
            user: User {
                name: event.actor.as_ref().map_or("", |a| a.user.as_str()),
                uid: &env.user_id,
            },
            process,
        },
        device: Device {
            uid: hex(&env.device_id),
            type_id: 0,
            type_name: "Unknown",
        },
        file,
        file_result,
        unmapped,
    }
}

/// Writes events as OCSF NDJSON (one JSON object per line); returns how many were written.
///
/// # Errors
/// Any error of the writer.
pub fn write_ndjson<'a, W: Write>(
    events: impl IntoIterator<Item = &'a StoredEvent>,
    product_version: &'static str,
    mut out: W,
) -> io::Result<usize> {
    let mut n = 0;
    for event in events {
        serde_json::to_writer(&mut out, &to_ocsf(event, product_version))?;
        out.write_all(b"\n")?;
        n += 1;
    }
    Ok(n)
}
