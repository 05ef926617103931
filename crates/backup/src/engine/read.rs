//! Reading files: one group of a batch's files on a pool worker, small files packed together,
//! the others cut into chunks as a stream; each read checked against the file's own metadata.

use std::fs::{self, File};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::Ordering;

use cairn_chunk::Chunker;
use cairn_seal::{BlockId, BlockKind};

use crate::cache::PackedIndex;
use crate::error::BackupError;
use crate::progress::Meter;
use crate::store::BlockStore;
use crate::tree::EntryKind;
use crate::warning::{READ_ATTEMPTS, Warning, WarningKind};

use super::Repository;
use super::backup::BackupSummary;
use super::platform::{identity, mtime_ns};
use super::schedule::{FilePhase, HANDED, Outbox};
use super::walk::FileJob;

/// Input bytes per group of small files handled by one worker.
pub(super) const GROUP_BYTES: u64 = 16 << 20;
/// Files per group.
pub(super) const GROUP_FILES: usize = 512;
/// Files shorter than this are packed: stored end to end with other small files of their group
/// in one data block (`EntryKind::Packed`), compressed together.
pub const PACK_BELOW: usize = 64 << 10;
/// A pack is closed once it holds this many bytes (so it holds less than
/// `PACK_TARGET + PACK_BELOW`).
pub const PACK_TARGET: usize = 1 << 20;

/// A file's contents hashed two ways, for file events: SHA-256 (what threat intelligence and
/// SIEMs match) and BLAKE3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentHash {
    /// SHA-256 of the contents.
    pub sha256: [u8; 32],
    /// BLAKE3 (unkeyed) of the contents.
    pub blake3: [u8; 32],
}

#[derive(Default)]
pub(super) struct Hashing {
    sha256: sha2::Sha256,
    blake3: blake3::Hasher,
}

impl Hashing {
    fn update(&mut self, bytes: &[u8]) {
        sha2::Digest::update(&mut self.sha256, bytes);
        self.blake3.update(bytes);
    }

    /// The hashes of one whole buffer.
    fn of(data: &[u8]) -> ContentHash {
        let mut h = Self::default();
        h.update(data);
        h.finish()
    }

    fn finish(self) -> ContentHash {
        ContentHash {
            sha256: sha2::Digest::finalize(self.sha256).into(),
            blake3: *self.blake3.finalize().as_bytes(),
        }
    }
}

/// What reading one file into chunks of its own produced.
pub(super) struct FileRead {
    size: u64,
    chunks: Vec<BlockId>,
    /// With content hashes on.
    hash: Option<ContentHash>,
}

/// One file of a group, read.
pub(super) struct ReadFile {
    /// Its slot in the batch.
    pub(super) slot: usize,
    /// Where its bytes are.
    pub(super) kind: EntryKind,
    /// With content hashes on.
    pub(super) hash: Option<ContentHash>,
}

/// What one group of files produced.
pub(super) struct GroupResult {
    /// Each file read.
    pub(super) files: Vec<ReadFile>,
    /// Its counters and warnings.
    pub(super) part: BackupSummary,
    /// Files that could not be read (left out of the snapshot).
    pub(super) skipped: Vec<usize>,
    /// Files stored as last read while they kept changing: not vouched for by the cache.
    pub(super) changed: Vec<usize>,
}

/// A file's read, checked against the file's own metadata before and after it.
enum Checked {
    /// Read (`None`: packed onto the group's pack), `changed` if it kept changing.
    Read {
        read: Option<FileRead>,
        changed: bool,
    },
    /// Could not be read; the warning is recorded.
    Skipped,
}

/// What says a file changed: its size, modification and change times (of the open file).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

fn stamp(meta: &fs::Metadata) -> Stamp {
    Stamp {
        size: meta.len(),
        mtime_ns: mtime_ns(meta),
        ctime_ns: identity(meta).ctime_ns,
    }
}

/// The pack id of a packed file whose pack is still open.
pub(super) const PLACEHOLDER: BlockId = BlockId::from_bytes([0; 32]);

/// The pack a group of small files is filling: its bytes, and which of the group's files
/// (indexes into the group's output) lie in it.
#[derive(Default)]
pub(super) struct OpenPack {
    bytes: Vec<u8>,
    members: Vec<usize>,
}

/// Reads on from `file` onto `data` until the end or until `data` holds one byte more than the
/// minimum chunk (then the file is cut as a stream): never more than that in memory, however
/// much the file grew since the walk.
pub(super) fn read_head(
    chunker: &Chunker,
    path: &Path,
    file: &File,
    data: &mut Vec<u8>,
) -> Result<(), BackupError> {
    let limit = chunker.config().min() + 1;
    let want = limit.saturating_sub(data.len()) as u64;
    Read::take(file, want)
        .read_to_end(data)
        .map_err(|e| BackupError::io(path, e))?;
    Ok(())
}

impl<B: BlockStore> Repository<B> {
    /// Reads a small file (the walk saw fewer than [`PACK_BELOW`] bytes) onto the end of
    /// `pack`. Returns `Ok(None)` if it was packed (its bytes are `pack[offset..]`, where
    /// `offset` is the pack's length before the call), or what it became if it grew past the
    /// packing size since the walk (then nothing was added to `pack`).
    fn read_small(
        &self,
        chunker: &Chunker,
        path: &Path,
        file: &File,
        pack: &mut Vec<u8>,
        outbox: &mut Outbox<'_>,
        summary: &mut BackupSummary,
    ) -> Result<Option<FileRead>, BackupError> {
        // A pack is read into once, never moved: room for the largest it can become.
        if pack.capacity() == 0 {
            pack.reserve_exact(PACK_TARGET + PACK_BELOW);
        }
        let offset = pack.len();
        // At most PACK_BELOW bytes: one more than that means it grew.
        Read::take(file, PACK_BELOW as u64)
            .read_to_end(pack)
            .map_err(|e| BackupError::io(path, e))?;
        if pack.len() - offset < PACK_BELOW {
            summary.bytes_read += (pack.len() - offset) as u64;
            return Ok(None);
        }
        let mut head = pack.split_off(offset);
        read_head(chunker, path, file, &mut head)?;
        self.backup_read(chunker, path, head, file, outbox, summary)
            .map(Some)
    }

    fn backup_file(
        &self,
        chunker: &Chunker,
        path: &Path,
        file: &File,
        expected_size: u64,
        outbox: &mut Outbox<'_>,
        summary: &mut BackupSummary,
    ) -> Result<FileRead, BackupError> {
        // A file no longer than the minimum chunk is one chunk: read it whole, in one read
        // (plus the one that sees the end), without the streaming chunker's window.
        if expected_size <= chunker.config().min() as u64 {
            let mut data = Vec::with_capacity(usize::try_from(expected_size).unwrap_or(0) + 1);
            read_head(chunker, path, file, &mut data)?;
            return self.backup_read(chunker, path, data, file, outbox, summary);
        }
        self.backup_stream(chunker, path, file, outbox, summary)
    }

    /// A file whose first bytes (`data`, as [`read_head`] left them) were read, the rest to
    /// come from `file`: one chunk if it fits in the minimum chunk, cut as a stream otherwise.
    fn backup_read(
        &self,
        chunker: &Chunker,
        path: &Path,
        data: Vec<u8>,
        file: &File,
        outbox: &mut Outbox<'_>,
        summary: &mut BackupSummary,
    ) -> Result<FileRead, BackupError> {
        if data.len() > chunker.config().min() {
            // Longer than one chunk (it grew since the walk): cut what was read and the rest
            // as a stream.
            return self.backup_stream(
                chunker,
                path,
                std::io::Cursor::new(data).chain(file),
                outbox,
                summary,
            );
        }
        let hash = self.content_hashes.then(|| Hashing::of(&data));
        let size = data.len() as u64;
        let mut ids = Vec::new();
        if !data.is_empty() {
            ids.push(self.queue(BlockKind::DATA, data, outbox, summary)?);
        }
        summary.bytes_read += size;
        Ok(FileRead {
            size,
            chunks: ids,
            hash,
        })
    }

    /// Reads one file of a group: a small one onto the end of `pack` (`Read { read: None }`:
    /// its bytes are `pack[offset..]` for the `offset` on entry), another cut into chunks. The
    /// open file's size, modification and change times are compared before and after the
    /// read: a file that changed is read again, up to [`READ_ATTEMPTS`] reads, then stored as
    /// last read with a [`WarningKind::ChangedWhileRead`] warning. A file that cannot be opened
    /// or read is left out with a [`WarningKind::Unreadable`] warning (its blocks already sent
    /// are unreferenced, nothing else changed). Store errors are errors.
    fn read_checked(
        &self,
        chunker: &Chunker,
        job: &FileJob,
        pack: &mut Vec<u8>,
        outbox: &mut Outbox<'_>,
        summary: &mut BackupSummary,
    ) -> Result<Checked, BackupError> {
        let small = job.size != 0 && job.size < self.pack_below;
        let offset = pack.len();
        let path = job.path.as_path();
        let unreadable = |pack: &mut Vec<u8>, e: std::io::Error, summary: &mut BackupSummary| {
            pack.truncate(offset);
            summary
                .warnings
                .push(Warning::new(WarningKind::Unreadable, path, e));
            Ok(Checked::Skipped)
        };
        let mut attempt = 1;
        loop {
            let file = match File::open(path) {
                Ok(f) => f,
                Err(e) => return unreadable(pack, e, summary),
            };
            let before = match file.metadata() {
                Ok(m) => stamp(&m),
                Err(e) => return unreadable(pack, e, summary),
            };
            let read = if small {
                self.read_small(chunker, path, &file, pack, outbox, summary)
            } else {
                self.backup_file(chunker, path, &file, job.size, outbox, summary)
                    .map(Some)
            };
            let read = match read {
                Ok(r) => r,
                Err(BackupError::Io { path: at, source }) if at == path => {
                    return unreadable(pack, source, summary);
                }
                Err(e) => return Err(e),
            };
            let after = match file.metadata() {
                Ok(m) => stamp(&m),
                Err(e) => return unreadable(pack, e, summary),
            };
            if before == after {
                return Ok(Checked::Read {
                    read,
                    changed: false,
                });
            }
            if attempt >= READ_ATTEMPTS {
                summary.warnings.push(Warning::new(
                    WarningKind::ChangedWhileRead,
                    path,
                    format_args!(
                        "changed during each of {READ_ATTEMPTS} reads; stored as last read"
                    ),
                ));
                return Ok(Checked::Read {
                    read,
                    changed: true,
                });
            }
            attempt += 1;
            pack.truncate(offset);
        }
    }

    /// Reads one group of files (on a pool worker): small files are packed together, the
    /// others cut into chunks; the group's blocks the store lacks are sealed and sent.
    pub(super) fn backup_group(
        &self,
        chunker: &Chunker,
        jobs: &[FileJob],
        group: &[usize],
        known: &PackedIndex,
        meter: &Meter<'_>,
        phase: &FilePhase,
    ) -> Result<GroupResult, BackupError> {
        phase.waiting.start_one();
        let mut part = BackupSummary::default();
        let mut outbox = Outbox::for_files(phase);
        let mut out: Vec<ReadFile> = Vec::with_capacity(group.len());
        let mut pack = OpenPack::default();
        // This group's packed files by id: a second copy is the first one's bytes.
        let mut local: std::collections::HashMap<BlockId, usize> = std::collections::HashMap::new();
        let (mut skipped, mut changed) = (Vec::new(), Vec::new());
        for &slot in group {
            let job = &jobs[slot];
            let offset = pack.bytes.len();
            match self.read_checked(chunker, job, &mut pack.bytes, &mut outbox, &mut part)? {
                Checked::Skipped => {
                    meter.add(1, 0);
                    skipped.push(slot);
                    continue;
                }
                Checked::Read { read, changed: c } => {
                    if c {
                        changed.push(slot);
                    }
                    if let Some(FileRead { size, chunks, hash }) = read {
                        meter.add(1, size);
                        out.push(ReadFile {
                            slot,
                            kind: EntryKind::File { size, chunks },
                            hash,
                        });
                        continue;
                    }
                }
            }
            let data = &pack.bytes[offset..];
            let size = data.len() as u64;
            meter.add(1, size);
            let hash = self.content_hashes.then(|| Hashing::of(data));
            if data.is_empty() {
                // Emptied since the walk.
                out.push(ReadFile {
                    slot,
                    kind: EntryKind::File {
                        size: 0,
                        chunks: Vec::new(),
                    },
                    hash,
                });
                continue;
            }
            let id = self.sealer.block_id(BlockKind::DATA, data);
            let copy = match (known.get(&id, size), local.get(&id)) {
                (Some((in_pack, at)), _) => Some(EntryKind::Packed {
                    size,
                    id,
                    pack: in_pack,
                    offset: at,
                }),
                (_, Some(&first)) => {
                    if let EntryKind::Packed { pack: p, .. } = &out[first].kind
                        && *p == PLACEHOLDER
                    {
                        // In the open pack: resolved when it closes.
                        pack.members.push(out.len());
                    }
                    Some(out[first].kind.clone())
                }
                _ => None,
            };
            if let Some(kind) = copy {
                pack.bytes.truncate(offset);
                part.files_deduplicated += 1;
                out.push(ReadFile { slot, kind, hash });
                continue;
            }
            local.insert(id, out.len());
            pack.members.push(out.len());
            part.files_packed += 1;
            let offset =
                u32::try_from(offset).map_err(|_| BackupError::Internal("pack too large"))?;
            out.push(ReadFile {
                slot,
                kind: EntryKind::Packed {
                    size,
                    id,
                    pack: PLACEHOLDER,
                    offset,
                },
                hash,
            });
            if pack.bytes.len() >= PACK_TARGET {
                self.close_pack(&mut pack, &mut out, &mut outbox, &mut part)?;
            }
        }
        self.close_pack(&mut pack, &mut out, &mut outbox, &mut part)?;
        self.flush(&mut outbox, &mut part)?;
        Ok(GroupResult {
            files: out,
            part,
            skipped,
            changed,
        })
    }

    /// Queues a closed pack and records where its members are. A pack of one file is that
    /// file's own block (its id is the file's id): it is recorded as a one-chunk file.
    fn close_pack(
        &self,
        pack: &mut OpenPack,
        out: &mut [ReadFile],
        outbox: &mut Outbox<'_>,
        summary: &mut BackupSummary,
    ) -> Result<(), BackupError> {
        if pack.members.is_empty() {
            return Ok(());
        }
        let bytes = std::mem::take(&mut pack.bytes);
        let pack_id = self.queue(BlockKind::DATA, bytes, outbox, summary)?;
        for m in pack.members.drain(..) {
            let kind = &mut out[m].kind;
            match kind {
                EntryKind::Packed {
                    size, id, offset, ..
                } if *offset == 0 && *id == pack_id => {
                    *kind = EntryKind::File {
                        size: *size,
                        chunks: vec![pack_id],
                    };
                }
                EntryKind::Packed { pack, .. } => *pack = pack_id,
                _ => {}
            }
        }
        Ok(())
    }

    /// Cuts a file's bytes into blocks. While [`Repository::at_once`], each is sealed and sent as
    /// soon as it is cut, straight from the read buffer. Otherwise they are queued in `outbox`
    /// and sent in batches; a full batch is handed to the pool while fewer than [`HANDED`] per
    /// worker are, so that idle workers seal it while this one reads and cuts on, and sent by
    /// this worker itself when the others are that far behind.
    fn backup_stream<R: Read>(
        &self,
        chunker: &Chunker,
        path: &Path,
        reader: R,
        outbox: &mut Outbox<'_>,
        summary: &mut BackupSummary,
    ) -> Result<FileRead, BackupError> {
        let mut stream = chunker.stream(reader);
        let mut ids = Vec::new();
        let mut size = 0u64;
        let mut hasher = self.content_hashes.then(Hashing::default);
        let most_handed = HANDED * rayon::current_num_threads();
        // What the handed batches sent (sealed bytes, blocks), or the first error one met.
        let handed_out: std::sync::Mutex<Result<(u64, u64), BackupError>> =
            std::sync::Mutex::new(Ok((0, 0)));
        rayon::in_place_scope(|scope| -> Result<(), BackupError> {
            while let Some((_, chunk)) = stream
                .next_chunk()
                .map_err(|e| BackupError::chunk(path, e))?
            {
                size += chunk.len() as u64;
                if let Some(h) = hasher.as_mut() {
                    h.update(chunk);
                }
                if self.at_once(outbox) {
                    ids.push(self.send_now(BlockKind::DATA, chunk, summary)?);
                    continue;
                }
                let block = self.sealer.identify(BlockKind::DATA, chunk.to_vec());
                ids.push(block.id());
                outbox.blocks.push(block);
                if !outbox.full() {
                    continue;
                }
                let batch = std::mem::take(&mut outbox.blocks);
                let Some(phase) = outbox
                    .phase
                    .filter(|p| p.handed.load(Ordering::Relaxed) < most_handed)
                else {
                    self.send(batch, summary)?;
                    continue;
                };
                phase.handed.fetch_add(1, Ordering::Relaxed);
                let handed_out = &handed_out;
                scope.spawn(move |_| {
                    let mut part = BackupSummary::default();
                    let sent = self.send(batch, &mut part);
                    if let Ok(mut out) = handed_out.lock() {
                        match (&mut *out, sent) {
                            (Ok((bytes, blocks)), Ok(())) => {
                                *bytes += part.bytes_sent;
                                *blocks += part.blocks_sent;
                            }
                            (Ok(_), Err(e)) => *out = Err(e),
                            (Err(_), _) => {}
                        }
                    }
                    phase.handed.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Ok(())
        })?;
        let (bytes, blocks) = handed_out
            .into_inner()
            .map_err(|_| BackupError::Internal("a worker panicked"))??;
        summary.bytes_sent += bytes;
        summary.blocks_sent += blocks;
        summary.bytes_read += size;
        Ok(FileRead {
            size,
            chunks: ids,
            hash: hasher.map(Hashing::finish),
        })
    }
}
