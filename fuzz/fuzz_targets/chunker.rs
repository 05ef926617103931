//! F-8: arbitrary data and sizes into the chunker. The B-17 invariants hold for every accepted
//! configuration (chunks tile the input, min <= len <= max but the last, deterministic), the
//! streaming API agrees with the slice API under arbitrary read sizes, and invalid sizes are typed
//! errors. Never panics.
#![no_main]

use std::io::Read;

use arbitrary::Arbitrary;
use cairn_chunk::{Chunker, ChunkerConfig};
use cairn_keys::ChunkerKey;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    key: [u8; 32],
    min: u16,
    avg_gap: u16,
    max_gap: u16,
    reads: Vec<u8>,
    unkeyed: bool,
    /// The keyed v1 chunker rather than the default (v2).
    v1: bool,
    data: Vec<u8>,
}

struct Jagged<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    call: usize,
}

impl Read for Jagged<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = self
            .sizes
            .get(self.call % self.sizes.len().max(1))
            .copied()
            .unwrap_or(255);
        self.call += 1;
        let n = usize::from(want).max(1).min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|input: Input| {
    let min = usize::from(input.min);
    let avg = min + usize::from(input.avg_gap);
    let max = avg + usize::from(input.max_gap);
    let Ok(config) = ChunkerConfig::new(min, avg, max) else {
        assert!(min < cairn_chunk::MIN_SIZE_FLOOR || avg <= min || max < avg);
        return;
    };
    let chunker = if input.unkeyed {
        match cairn_chunk::hazmat::unkeyed_fastcdc2020(config) {
            Ok(c) => c,
            Err(_) => return,
        }
    } else if input.v1 {
        Chunker::keyed_v1(&ChunkerKey::from_bytes(input.key), config)
    } else {
        Chunker::new(&ChunkerKey::from_bytes(input.key), config)
    };
    let data = &input.data;
    let chunks: Vec<_> = chunker.chunks(data).collect();
    let mut at = 0;
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.offset, at);
        assert!(c.len >= 1 && c.len <= max);
        if i + 1 < chunks.len() {
            assert!(c.len >= min);
        }
        at += c.len;
    }
    assert_eq!(at, data.len());
    assert_eq!(chunks, chunker.chunks(data).collect::<Vec<_>>());

    let mut stream = chunker.stream(Jagged {
        data,
        sizes: &input.reads,
        call: 0,
    });
    let mut i = 0;
    while let Some((offset, bytes)) = stream.next_chunk().expect("in-memory reads cannot fail") {
        let c = chunks[i];
        assert_eq!((offset as usize, bytes.len()), (c.offset, c.len));
        assert_eq!(bytes, &data[c.offset..c.offset + c.len]);
        i += 1;
    }
    assert_eq!(i, chunks.len());
});
