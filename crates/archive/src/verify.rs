//! Verification: framing, checksums, sequence numbers, the hash chain, commits and indexes,
//! with a hook for the caller to check payloads (the backup engine opens sealed blocks there).

use std::collections::BTreeSet;

use crate::archive::{Archive, Location, scan_segment};
use crate::error::{ArchiveError, FormatError};
use crate::format::{
    IndexEntry, Key, SEGMENT_HEADER_LEN, SegmentHeader, TRAILER_LEN, Trailer, chain_start,
    decode_record,
};
use crate::storage::Storage;

/// One damaged place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// Segment number.
    pub segment: u64,
    /// Byte offset in the segment (a record's first byte, 0 for the header, the index offset
    /// for the index, the trailer's offset for the trailer).
    pub offset: u64,
    /// What is wrong.
    pub what: String,
}

/// What [`Archive::verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Data records that passed every check (and the hook).
    pub records_ok: u64,
    /// Elided records (compacted away: their framing and their place in the chain check, their
    /// payload is gone and the hook does not see them). Not counted in `records_ok`.
    pub records_elided: u64,
    /// Every damaged place, by segment and offset.
    pub damaged: Vec<Damage>,
    /// Whether the hash chain was recomputed from the first record to the last commit without a
    /// break, and matched every commit and trailer.
    pub chain_intact: bool,
    /// The recomputed chain head (meaningful when `chain_intact`).
    pub chain_head: [u8; 32],
}

impl VerifyReport {
    /// Whether nothing is damaged.
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty() && self.chain_intact
    }
}

impl<S: Storage> Archive<S> {
    /// Reads every segment and checks everything the log can check on its own; `hook` is called
    /// with each intact data record's payload and may report it damaged. Damage is reported,
    /// never repaired; every undamaged record is still checked.
    pub fn verify<F>(&mut self, mut hook: F) -> Result<VerifyReport, ArchiveError>
    where
        F: FnMut(&Location, &Key, &[u8]) -> Result<(), String>,
    {
        // Flush anything buffered so that the active segment can be read.
        let committed = self.last_commit();
        let _ = committed;
        self.flush_for_verify()?;
        let archive_id = self.config().archive_id();
        let mut report = VerifyReport {
            chain_intact: true,
            ..Default::default()
        };
        let mut chain = chain_start(&archive_id);
        let mut next_seq = 0u64;
        let mut data_records = 0u64;
        let active_seq = self.active_segment();
        let mut bytes: Vec<u8> = Vec::new();
        for (seq, name) in self.segment_names() {
            if seq == active_seq && self.active_committed_len() <= SEGMENT_HEADER_LEN as u64 {
                // An active segment with nothing committed yet: its header goes out with its
                // first batch, so a storage that writes on sync (the shared store's parts)
                // holds no byte of it. There is nothing to check.
                continue;
            }
            let len = usize::try_from(self.storage().len(&name)?)
                .map_err(|_| ArchiveError::Config("segment larger than memory"))?;
            // One buffer for every segment: its pages are touched once, not once per segment.
            bytes.clear();
            bytes.resize(len, 0);
            self.storage().read_at(&name, 0, &mut bytes)?;
            let generation = self.segment_generation(seq).unwrap_or(0);
            let mut reported: BTreeSet<u64> = BTreeSet::new();
            let mut damage = |report: &mut VerifyReport, offset: u64, what: &str| {
                if reported.insert(offset) {
                    report.damaged.push(Damage {
                        segment: seq,
                        offset,
                        what: what.to_owned(),
                    });
                }
            };
            match SegmentHeader::decode(&bytes) {
                Ok(h) if h.archive_id != archive_id => {
                    damage(&mut report, 0, "segment of another archive")
                }
                Ok(h) if h.segment_seq != seq || h.first_record_seq != next_seq => {
                    damage(&mut report, 0, "segment header out of sequence")
                }
                Ok(h) if h.generation != generation => damage(
                    &mut report,
                    0,
                    "segment header's generation is not its name's",
                ),
                Ok(_) => {}
                Err(e) => damage(&mut report, 0, &format!("segment header: {e}")),
            }
            let sealed = seq != active_seq;
            // The footer of a sealed segment: trailer and index.
            let mut footer: Option<(Trailer, Vec<IndexEntry>)> = None;
            let mut records_end = len;
            if sealed {
                let trailer_at = len.saturating_sub(TRAILER_LEN);
                match Trailer::decode(&bytes[trailer_at..]) {
                    Ok(t) => {
                        let span = t.index_span(len as u64).ok().and_then(|(at, n)| {
                            let start = usize::try_from(at).ok()?;
                            Some((start, start.checked_add(usize::try_from(n).ok()?)?))
                        });
                        match span.map(|(start, end)| (start, t.open_index(&bytes[start..end]))) {
                            Some((start, Ok(e))) => {
                                records_end = start;
                                footer = Some((t, e));
                            }
                            Some((_, Err(FormatError::Checksum))) | None => {
                                damage(&mut report, t.index_offset, "index");
                            }
                            Some((_, Err(_))) => damage(&mut report, t.index_offset, "index entry"),
                        }
                    }
                    Err(_) => damage(&mut report, trailer_at as u64, "trailer"),
                }
            } else {
                records_end = usize::try_from(self.active_committed_len())
                    .unwrap_or(len)
                    .min(len);
            }
            // Sequential scan: sequence numbers, commits against the chain.
            let scan = scan_segment(
                &bytes,
                (next_seq, chain, data_records),
                records_end,
                generation > 0,
            );
            if let Some((at, why)) = scan.stopped {
                report.chain_intact = false;
                damage(&mut report, at, why);
            } else if scan.committed_end != records_end as u64 {
                report.chain_intact = false;
                damage(
                    &mut report,
                    scan.committed_end,
                    "records after the last commit",
                );
            }
            // Per-record checks: from the index when it is intact (so one bad record does not
            // hide the ones after it), else from the scan.
            let entries = match &footer {
                Some((t, entries)) => {
                    if scan.stopped.is_none() {
                        if t.chain_head != scan.chain || t.last_seq + 1 != scan.next_seq {
                            report.chain_intact = false;
                            damage(
                                &mut report,
                                trailer_at_of(len),
                                "trailer does not match the records",
                            );
                        }
                        let mut from_scan = scan.entries.clone();
                        from_scan.sort_unstable();
                        if &from_scan != entries {
                            damage(
                                &mut report,
                                t.index_offset,
                                "index does not match the records",
                            );
                        }
                    }
                    entries.clone()
                }
                None => scan.entries.clone(),
            };
            // Records the scan already checksummed need not be decoded again.
            // (Matched on every field, so a forged index entry cannot reuse a scanned offset.)
            let scanned: std::collections::HashSet<(u64, Key, u32, u8, bool)> = scan
                .entries
                .iter()
                .map(|e| (e.offset, e.key, e.len, e.kind, e.elided))
                .collect();
            for e in &entries {
                let start = usize::try_from(e.offset).unwrap_or(usize::MAX);
                let payload = if scanned.contains(&(e.offset, e.key, e.len, e.kind, e.elided)) {
                    let from = start + crate::format::RECORD_HEADER_LEN;
                    Ok(&bytes[from..from + e.len as usize])
                } else {
                    match bytes.get(start..records_end.max(start)).map(decode_record) {
                        None => Err("index points outside the segment".to_owned()),
                        Some(Ok((h, payload)))
                            if h.key == e.key
                                && h.kind == e.kind
                                && h.len == e.len
                                && h.elided == e.elided =>
                        {
                            Ok(payload)
                        }
                        Some(Ok(_)) => Err("record does not match its index entry".to_owned()),
                        Some(Err(err)) => Err(format!("record: {err}")),
                    }
                };
                let loc = Location {
                    segment: seq,
                    offset: e.offset,
                    len: e.len,
                    kind: e.kind,
                    elided: e.elided,
                };
                if e.elided {
                    // Its framing was checked, and its digest is in the chain the scan
                    // recomputed; there is no payload for the hook.
                    match payload {
                        Ok(_) => report.records_elided += 1,
                        Err(what) => damage(&mut report, e.offset, &what),
                    }
                    continue;
                }
                match payload
                    .and_then(|p| hook(&loc, &e.key, p).map_err(|why| format!("payload: {why}")))
                {
                    Ok(()) => report.records_ok += 1,
                    Err(what) => damage(&mut report, e.offset, &what),
                }
            }
            // Continue the chain: from the scan if it went through, else from the trailer.
            match (&footer, scan.stopped) {
                (_, None) => {
                    chain = scan.chain;
                    next_seq = scan.next_seq;
                    data_records = scan.data_records;
                }
                (Some((t, _)), Some(_)) => {
                    chain = t.chain_head;
                    next_seq = t.last_seq + 1;
                    data_records += entries.len() as u64;
                }
                (None, Some(_)) => {
                    // No footer to go on from: the chain as of the segment's last commit the
                    // scan reached (the damage is reported; the segments after it are checked
                    // from there, not all reported as broken).
                    chain = scan.chain;
                    next_seq = scan.next_seq;
                    data_records = scan.data_records;
                }
            }
        }
        report.chain_head = chain;
        Ok(report)
    }
}

fn trailer_at_of(len: usize) -> u64 {
    len.saturating_sub(TRAILER_LEN) as u64
}
