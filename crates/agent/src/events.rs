//! File events from what a backup saw: one per change between two snapshots, renames found by
//! content, each linked to the snapshot that preserves the version, with the content hash from
//! the backup's own read and the exposure of its destination.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cairn_backup::{Change, ChangeKind, ContentHash, EntryKind};
use cairn_events::v1;
use cairn_seal::{ArchiveId, BlockId};

use crate::AgentError;

/// One exposure rule: events whose path is at or below `prefix` are of `kind`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExposureRule {
    /// `removable-media`, `cloud-sync`, `browser-download`, `browser-upload` or
    /// `network-share`.
    pub kind: String,
    /// The destination folder.
    pub prefix: PathBuf,
}

/// The exposure kinds by name.
pub const EXPOSURE_KINDS: [(&str, v1::ExposureKind); 5] = [
    ("removable-media", v1::ExposureKind::RemovableMedia),
    ("cloud-sync", v1::ExposureKind::CloudSync),
    ("browser-download", v1::ExposureKind::BrowserDownload),
    ("browser-upload", v1::ExposureKind::BrowserUpload),
    ("network-share", v1::ExposureKind::NetworkShare),
];

/// The rules an agent starts with: removable media and network mounts of Linux and macOS, the
/// usual cloud-sync folders and the browsers' download folder under `home`. They live in
/// `agent.json`, to be edited.
pub fn default_rules(home: Option<&Path>) -> Vec<ExposureRule> {
    let rule = |kind: &str, prefix: PathBuf| ExposureRule {
        kind: kind.to_owned(),
        prefix,
    };
    let mut rules = vec![
        rule("removable-media", "/media".into()),
        rule("removable-media", "/run/media".into()),
        rule("removable-media", "/Volumes".into()),
        rule("network-share", "/mnt".into()),
        rule("network-share", "/net".into()),
    ];
    if let Some(home) = home {
        for sync in [
            "Dropbox",
            "OneDrive",
            "Google Drive",
            "iCloud Drive",
            "Nextcloud",
            "Library/CloudStorage",
        ] {
            rules.push(rule("cloud-sync", home.join(sync)));
        }
        rules.push(rule("browser-download", home.join("Downloads")));
    }
    rules
}

/// Checks rules (an unknown kind is refused, so that a typo does not silently classify
/// nothing).
///
/// # Errors
/// [`AgentError::State`] naming the rule.
pub fn check_rules(rules: &[ExposureRule]) -> Result<(), AgentError> {
    for r in rules {
        if !EXPOSURE_KINDS.iter().any(|(name, _)| *name == r.kind) {
            return Err(AgentError::State(format!(
                "exposure rule for {}: unknown kind {:?}",
                r.prefix.display(),
                r.kind
            )));
        }
    }
    Ok(())
}

/// The exposure of `path`: the longest matching prefix wins.
pub fn classify(rules: &[ExposureRule], path: &Path) -> Option<v1::Exposure> {
    rules
        .iter()
        .filter(|r| path.starts_with(&r.prefix))
        .max_by_key(|r| r.prefix.as_os_str().len())
        .and_then(|r| {
            let kind = EXPOSURE_KINDS.iter().find(|(n, _)| *n == r.kind)?.1;
            Some(v1::Exposure {
                kind: kind as i32,
                destination: r.prefix.to_string_lossy().into_owned(),
            })
        })
}

/// What the events of one backup are about.
#[derive(Debug)]
pub struct Context<'a> {
    /// The folder backed up (absolute).
    pub folder: &'a Path,
    /// The archive.
    pub archive: ArchiveId,
    /// The new snapshot.
    pub snapshot: BlockId,
    /// Its sequence number (the events' `file_version`).
    pub seq: u64,
    /// Content hashes from the backup's read, by path as walked.
    pub hashes: &'a HashMap<PathBuf, ContentHash>,
    /// Exposure rules.
    pub rules: &'a [ExposureRule],
    /// When the watcher first and last saw each changed path (Unix nanoseconds), from the
    /// spool.
    pub observed: &'a HashMap<PathBuf, (i64, i64)>,
    /// When the backup observed the changes (Unix nanoseconds): the time of an event whose
    /// path the watcher did not report.
    pub now: i64,
}

fn file_key(kind: &EntryKind) -> Option<(u64, &[BlockId])> {
    kind.content_key().filter(|(size, _)| *size > 0)
}

fn random_id() -> Result<Vec<u8>, AgentError> {
    let mut id = vec![0u8; 16];
    getrandom::fill(&mut id).map_err(|e| AgentError::State(format!("random: {e}")))?;
    Ok(id)
}

/// One event per change (`Added` → create, `Modified` → update, `Attributes` → set
/// attributes, `Removed` → delete), except that a removed file and an added file with the same
/// non-empty contents are one rename. Returns the events and how many were skipped because
/// their path is longer than the schema allows.
///
/// # Errors
/// [`AgentError::State`] if the system's random source fails.
pub fn from_changes(
    ctx: &Context<'_>,
    changes: &[Change],
) -> Result<(Vec<v1::FileEvent>, u64), AgentError> {
    let full = |c: &Change| ctx.folder.join(String::from_utf8_lossy(&c.path).as_ref());
    // Removed files by contents, to pair with added ones.
    let mut removed: HashMap<(u64, &[BlockId]), Vec<usize>> = HashMap::new();
    for (i, c) in changes.iter().enumerate() {
        if c.kind == ChangeKind::Removed
            && let Some(k) = file_key(&c.entry.kind)
        {
            removed.entry(k).or_default().push(i);
        }
    }
    let mut renamed_from: HashMap<usize, usize> = HashMap::new();
    let mut consumed = vec![false; changes.len()];
    for (i, c) in changes.iter().enumerate() {
        if c.kind == ChangeKind::Added
            && let Some(k) = file_key(&c.entry.kind)
            && let Some(from) = removed.get_mut(&k).and_then(Vec::pop)
        {
            renamed_from.insert(i, from);
            consumed[from] = true;
        }
    }
    let mut out = Vec::with_capacity(changes.len());
    let mut skipped = 0;
    for (i, c) in changes.iter().enumerate() {
        if consumed[i] {
            continue;
        }
        let path = full(c);
        let path_text = path.to_string_lossy().into_owned();
        let previous = renamed_from.get(&i).map(|&from| full(&changes[from]));
        let previous_text = previous
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let limit = cairn_events::Limits::MAX_PATH_BYTES;
        if path_text.len() > limit || previous_text.len() > limit {
            skipped += 1;
            continue;
        }
        let activity = match (c.kind, previous.is_some()) {
            (_, true) => v1::Activity::Rename,
            (ChangeKind::Added, _) => v1::Activity::Create,
            (ChangeKind::Modified, _) => v1::Activity::Update,
            (ChangeKind::Attributes, _) => v1::Activity::SetAttributes,
            (ChangeKind::Removed, _) => v1::Activity::Delete,
        };
        let size = c.entry.kind.file_size().unwrap_or(0);
        // The first time the watcher saw this path (or, for a rename, either name) change.
        let seen = [Some(&path), previous.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|p| ctx.observed.get(p).map(|&(first, _)| first))
            .filter(|&t| t > 0 && t <= ctx.now)
            .min();
        out.push(v1::FileEvent {
            event_id: random_id()?,
            observed_unix_nanos: seen.unwrap_or(ctx.now),
            activity: activity as i32,
            file: Some(v1::File {
                sha256: ctx
                    .hashes
                    .get(&path)
                    .map(|h| h.sha256.to_vec())
                    .unwrap_or_default(),
                blake3: ctx
                    .hashes
                    .get(&path)
                    .map(|h| h.blake3.to_vec())
                    .unwrap_or_default(),
                path: path_text,
                previous_path: previous_text,
                size,
                mode: c.entry.mode,
                modified_unix_nanos: c.entry.mtime_ns,
                ..Default::default()
            }),
            exposure: classify(ctx.rules, &path),
            backup: (c.kind != ChangeKind::Removed).then(|| v1::BackupLink {
                archive_id: ctx.archive.as_bytes().to_vec(),
                snapshot_id: ctx.snapshot.as_bytes().to_vec(),
                file_version: ctx.seq,
            }),
            ..Default::default()
        });
    }
    Ok((out, skipped))
}

/// SHA-256 and BLAKE3 of a file's contents, in one streaming read.
fn hash_file(path: &Path) -> std::io::Result<(u64, ContentHash)> {
    use sha2::Digest;
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut sha = sha2::Sha256::new();
    let mut b3 = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        sha.update(&buf[..n]);
        b3.update(&buf[..n]);
        len += n as u64;
    }
    Ok((
        len,
        ContentHash {
            sha256: sha.finalize().into(),
            blake3: *b3.finalize().as_bytes(),
        },
    ))
}

/// Events for files that appeared, changed or went away in an exposure destination outside
/// the backed-up folder (a removable disk, a network share, a sync folder): the watcher's
/// `changed` paths (with the time each was seen), `created` those it saw created. A file that
/// is there gets `ACTIVITY_CREATE` or `ACTIVITY_UPDATE` with its size, mode, times and the
/// SHA-256 and BLAKE3 of its contents (read now: such files are not backed up, so the hashes are
/// what ties a copy to the backed-up original's events); one that is gone gets
/// `ACTIVITY_DELETE`. Directories, and paths no rule classifies, give nothing; each path gives at
/// most one event, at its first sighting.
///
/// # Errors
/// [`AgentError::State`] if the system's random generator fails (event ids).
pub fn outside_events(
    rules: &[ExposureRule],
    changed: &[(PathBuf, i64)],
    created: &[PathBuf],
) -> Result<Vec<v1::FileEvent>, AgentError> {
    let mut first: Vec<(&PathBuf, i64)> = Vec::new();
    let mut seen: HashMap<&PathBuf, usize> = HashMap::new();
    for (path, at) in changed {
        match seen.get(path) {
            Some(&i) => first[i].1 = first[i].1.min(*at),
            None => {
                seen.insert(path, first.len());
                first.push((path, *at));
            }
        }
    }
    let mut out = Vec::new();
    for (path, at) in first {
        let Some(exposure) = classify(rules, path) else {
            continue;
        };
        let text = path.to_string_lossy().into_owned();
        if text.len() > cairn_events::Limits::MAX_PATH_BYTES {
            continue;
        }
        let mut file = v1::File {
            path: text,
            ..Default::default()
        };
        let activity = match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_file() => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::MetadataExt;
                    file.mode = meta.mode();
                    file.modified_unix_nanos = meta
                        .mtime()
                        .saturating_mul(1_000_000_000)
                        .saturating_add(meta.mtime_nsec());
                }
                match hash_file(path) {
                    Ok((size, hash)) => {
                        file.size = size;
                        file.sha256 = hash.sha256.to_vec();
                        file.blake3 = hash.blake3.to_vec();
                    }
                    // Gone or unreadable between the stat and the read: reported without
                    // contents.
                    Err(e) => {
                        tracing::debug!(path = %path.display(), error = %e, "hashing");
                        file.size = meta.len();
                    }
                }
                if created.contains(path) {
                    v1::Activity::Create
                } else {
                    v1::Activity::Update
                }
            }
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => v1::Activity::Delete,
            Err(_) => continue,
        };
        out.push(v1::FileEvent {
            event_id: random_id()?,
            observed_unix_nanos: at,
            activity: activity as i32,
            file: Some(file),
            exposure: Some(exposure),
            ..Default::default()
        });
    }
    Ok(out)
}

/// Events for paths the watcher saw change that no event of the backup names and that are gone
/// now: each was created and removed between two backups (a staging or temporary file). Two
/// events per path, `ACTIVITY_CREATE` at the first sighting and `ACTIVITY_DELETE` at the last,
/// with no contents (none were read) and no backup link. `reported` holds the paths (and
/// previous paths) the backup's own events name; `exists` says whether a path is there now.
///
/// # Errors
/// [`AgentError::State`] if the system's random generator fails (event ids).
pub fn transient(
    ctx: &Context<'_>,
    reported: &std::collections::HashSet<&str>,
    exists: impl Fn(&Path) -> bool,
) -> Result<Vec<v1::FileEvent>, AgentError> {
    let mut paths: Vec<(&PathBuf, &(i64, i64))> = ctx
        .observed
        .iter()
        .filter(|(p, _)| p.starts_with(ctx.folder) && p.as_path() != ctx.folder)
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for (path, &(first, last)) in paths {
        let text = path.to_string_lossy();
        if first <= 0
            || first > ctx.now
            || text.len() > cairn_events::Limits::MAX_PATH_BYTES
            || reported.contains(text.as_ref())
            || exists(path)
        {
            continue;
        }
        for (activity, at) in [
            (v1::Activity::Create, first),
            (v1::Activity::Delete, last.clamp(first, ctx.now)),
        ] {
            out.push(v1::FileEvent {
                event_id: random_id()?,
                observed_unix_nanos: at,
                activity: activity as i32,
                file: Some(v1::File {
                    path: text.clone().into_owned(),
                    ..Default::default()
                }),
                exposure: classify(ctx.rules, path),
                ..Default::default()
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use cairn_backup::Entry;

    use super::*;

    fn entry(name: &str, kind: EntryKind) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            mode: 0o100_644,
            uid: 0,
            gid: 0,
            mtime_ns: 1,
            link_group: 0,
            xattrs: Vec::new(),
            kind,
        }
    }

    fn file(name: &str, size: u64, chunk: u8) -> Entry {
        entry(
            name,
            EntryKind::File {
                size,
                chunks: vec![BlockId::from_bytes([chunk; 32])],
            },
        )
    }

    fn change(path: &str, kind: ChangeKind, e: Entry) -> Change {
        Change {
            path: path.as_bytes().to_vec(),
            kind,
            entry: e,
        }
    }

    /// Packed files pair by their own id, not by their pack: two files of one pack are not a
    /// rename; a packed file and a one-chunk file with the same contents are.
    #[test]
    fn packed_files_pair_by_their_own_id() {
        let folder = PathBuf::from("/home/ana");
        let (hashes, observed) = (HashMap::new(), HashMap::new());
        let ctx = Context {
            folder: &folder,
            archive: ArchiveId::from_bytes([1; 16]),
            snapshot: BlockId::from_bytes([2; 32]),
            seq: 1,
            hashes: &hashes,
            rules: &[],
            observed: &observed,
            now: 1,
        };
        let packed = |name: &str, id: u8, offset: u32| {
            entry(
                name,
                EntryKind::Packed {
                    size: 10,
                    id: BlockId::from_bytes([id; 32]),
                    pack: BlockId::from_bytes([9; 32]),
                    offset,
                },
            )
        };
        let changes = vec![
            change("a", ChangeKind::Removed, packed("a", 1, 0)),
            change("b", ChangeKind::Added, packed("b", 2, 10)),
            change("c", ChangeKind::Removed, packed("c", 3, 20)),
            change("d", ChangeKind::Added, file("d", 10, 3)),
        ];
        let (events, _) = from_changes(&ctx, &changes).unwrap();
        let summary: Vec<(i32, String)> = events
            .iter()
            .map(|e| (e.activity, e.file.as_ref().unwrap().path.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                (v1::Activity::Delete as i32, "/home/ana/a".into()),
                (v1::Activity::Create as i32, "/home/ana/b".into()),
                (v1::Activity::Rename as i32, "/home/ana/d".into()),
            ]
        );
    }

    #[test]
    fn renames_by_contents_hashes_links_and_exposure() {
        let home = PathBuf::from("/home/ana");
        let rules = default_rules(Some(&home));
        check_rules(&rules).unwrap();
        let folder = home.clone();
        let mut hashes = HashMap::new();
        hashes.insert(
            folder.join("Dropbox/plan.txt"),
            ContentHash {
                sha256: [8; 32],
                blake3: [9; 32],
            },
        );
        // The watcher saw the rename's old name and the deletion; a time in the future (a
        // clock step) is not believed.
        let now = 1_800_000_000_000_000_000;
        let observed: HashMap<PathBuf, (i64, i64)> = [
            (folder.join("Documents/old.pdf"), (now - 50, now - 40)),
            (folder.join("gone.txt"), (now - 70, now - 70)),
            (folder.join("Dropbox/plan.txt"), (now + 5, now + 5)),
            (folder.join("Downloads/tmp.part"), (now - 90, now - 80)),
        ]
        .into();
        let ctx = Context {
            folder: &folder,
            archive: ArchiveId::from_bytes([1; 16]),
            snapshot: BlockId::from_bytes([2; 32]),
            seq: 4,
            hashes: &hashes,
            rules: &rules,
            observed: &observed,
            now,
        };
        let changes = vec![
            change(
                "Documents/old.pdf",
                ChangeKind::Removed,
                file("old.pdf", 10, 5),
            ),
            change(
                "Downloads/new.pdf",
                ChangeKind::Added,
                file("new.pdf", 10, 5),
            ),
            change(
                "Dropbox/plan.txt",
                ChangeKind::Modified,
                file("plan.txt", 3, 6),
            ),
            change("gone.txt", ChangeKind::Removed, file("gone.txt", 4, 7)),
            change("empty-a", ChangeKind::Removed, file("empty-a", 0, 0)),
            change("empty-b", ChangeKind::Added, file("empty-b", 0, 0)),
        ];
        let (events, skipped) = from_changes(&ctx, &changes).unwrap();
        assert_eq!(skipped, 0);
        let summary: Vec<(i32, String, String)> = events
            .iter()
            .map(|e| {
                let f = e.file.as_ref().unwrap();
                (e.activity, f.path.clone(), f.previous_path.clone())
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    v1::Activity::Rename as i32,
                    "/home/ana/Downloads/new.pdf".into(),
                    "/home/ana/Documents/old.pdf".into()
                ),
                (
                    v1::Activity::Update as i32,
                    "/home/ana/Dropbox/plan.txt".into(),
                    String::new()
                ),
                (
                    v1::Activity::Delete as i32,
                    "/home/ana/gone.txt".into(),
                    String::new()
                ),
                // Empty files are not paired: any two empty files have the same contents.
                (
                    v1::Activity::Delete as i32,
                    "/home/ana/empty-a".into(),
                    String::new()
                ),
                (
                    v1::Activity::Create as i32,
                    "/home/ana/empty-b".into(),
                    String::new()
                ),
            ]
        );
        let times: Vec<i64> = events.iter().map(|e| e.observed_unix_nanos).collect();
        assert_eq!(times, [now - 50, now, now - 70, now, now]);
        // The one observed path no event names, and that is gone: created and removed between
        // backups. (Paths named by events, or still there, are not.)
        let reported: std::collections::HashSet<&str> = events
            .iter()
            .flat_map(|e| {
                let f = e.file.as_ref().unwrap();
                [f.path.as_str(), f.previous_path.as_str()]
            })
            .collect();
        let brief = transient(&ctx, &reported, |_| false).unwrap();
        let brief: Vec<(i32, &str, i64, bool)> = brief
            .iter()
            .map(|e| {
                let f = e.file.as_ref().unwrap();
                (
                    e.activity,
                    f.path.as_str(),
                    e.observed_unix_nanos,
                    e.backup.is_none() && f.blake3.is_empty() && e.exposure.is_some(),
                )
            })
            .collect();
        assert_eq!(
            brief,
            [
                (
                    v1::Activity::Create as i32,
                    "/home/ana/Downloads/tmp.part",
                    now - 90,
                    true
                ),
                (
                    v1::Activity::Delete as i32,
                    "/home/ana/Downloads/tmp.part",
                    now - 80,
                    true
                ),
            ]
        );
        assert!(transient(&ctx, &reported, |_| true).unwrap().is_empty());
        let rename = &events[0];
        assert_eq!(
            rename.exposure.as_ref().unwrap().kind,
            v1::ExposureKind::BrowserDownload as i32
        );
        assert_eq!(rename.backup.as_ref().unwrap().file_version, 4);
        let update = &events[1];
        assert_eq!(update.file.as_ref().unwrap().blake3, vec![9u8; 32]);
        assert_eq!(update.file.as_ref().unwrap().sha256, vec![8u8; 32]);
        assert_eq!(
            update.exposure.as_ref().unwrap().kind,
            v1::ExposureKind::CloudSync as i32
        );
        // Deletions link to no version; paths outside every rule have no exposure.
        assert!(events[2].backup.is_none() && events[2].exposure.is_none());
        // Every event passes the server's validation.
        let batch = v1::EventBatch {
            device_id: vec![1; 16],
            agent_version: "t".into(),
            batch_sequence: 0,
            events,
        };
        let bytes = prost::Message::encode_to_vec(&batch);
        cairn_events::validate_batch(&bytes, &cairn_events::Limits::default(), ctx.now + 1)
            .unwrap();
    }

    #[test]
    fn unknown_exposure_kinds_are_refused_and_longest_prefix_wins() {
        let bad = [ExposureRule {
            kind: "usb".into(),
            prefix: "/media".into(),
        }];
        assert!(check_rules(&bad).is_err());
        let rules = vec![
            ExposureRule {
                kind: "network-share".into(),
                prefix: "/mnt".into(),
            },
            ExposureRule {
                kind: "removable-media".into(),
                prefix: "/mnt/usb".into(),
            },
        ];
        let e = classify(&rules, Path::new("/mnt/usb/stick/a.txt")).unwrap();
        assert_eq!(e.kind, v1::ExposureKind::RemovableMedia as i32);
        assert_eq!(e.destination, "/mnt/usb");
        // A prefix matches whole components only.
        assert!(classify(&rules, Path::new("/mntx/a")).is_none());
    }
}
