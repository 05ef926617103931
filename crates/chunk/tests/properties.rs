//! Chunker invariants (B-17, B-18 of shared/SECURITY-TESTS.md), the streaming API, and errors.

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Test data generation and statistics cast bounded values; truncation is intended there.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]

use std::collections::HashSet;
use std::io::{self, Read};

use cairn_chunk::{Algorithm, ChunkError, Chunker, ChunkerConfig};
use cairn_keys::ChunkerKey;
use proptest::prelude::*;

fn random(seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(seed)
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Both frozen keyed algorithms (v2, the default, then v1) for one key and configuration.
fn keyed_both(key: &ChunkerKey, config: ChunkerConfig) -> [Chunker; 2] {
    [Chunker::new(key, config), Chunker::keyed_v1(key, config)]
}

fn keyed(key: u8, min: usize, avg: usize, max: usize) -> [Chunker; 2] {
    keyed_both(
        &ChunkerKey::from_bytes([key; 32]),
        ChunkerConfig::new(min, avg, max).unwrap(),
    )
}

fn lengths(chunker: &Chunker, data: &[u8]) -> Vec<usize> {
    chunker.chunks(data).map(|c| c.len).collect()
}

/// A reader that returns at most `sizes[i % len]` bytes per call (0 entries become 1).
struct Jagged<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    call: usize,
}

impl Read for Jagged<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = self.sizes[self.call % self.sizes.len()].max(1);
        self.call += 1;
        if self.call % 7 == 3 {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "retry me"));
        }
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn stream_lengths<R: Read>(chunker: &Chunker, reader: R) -> Vec<(u64, usize)> {
    let mut stream = chunker.stream(reader);
    let mut out = vec![];
    while let Some((offset, bytes)) = stream.next_chunk().unwrap() {
        out.push((offset, bytes.len()));
    }
    out
}

fn configs() -> impl Strategy<Value = (usize, usize, usize)> {
    (64usize..2048, 1usize..4096, 0usize..8192)
        .prop_map(|(min, da, dm)| (min, min + da, min + da + dm))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// B-17: chunks tile the input in order; min <= len <= max except the last; deterministic.
    #[test]
    fn chunks_tile_the_input(
        key in any::<u8>(),
        (min, avg, max) in configs(),
        data in prop::collection::vec(any::<u8>(), 0..60_000),
    ) {
        for chunker in keyed(key, min, avg, max) {
            let chunks: Vec<_> = chunker.chunks(&data).collect();
            let mut at = 0;
            for (i, c) in chunks.iter().enumerate() {
                prop_assert_eq!(c.offset, at);
                prop_assert!(c.len >= 1 && c.len <= max);
                if i + 1 < chunks.len() {
                    prop_assert!(c.len >= min, "chunk {} of {} has {} < min {}", i, chunks.len(), c.len, min);
                }
                at += c.len;
            }
            prop_assert_eq!(at, data.len());
            let again: Vec<_> = chunker.chunks(&data).collect();
            prop_assert_eq!(chunks, again);
        }
    }

    /// The streaming API gives the slice API's boundaries whatever the read sizes.
    #[test]
    fn stream_equals_slice(
        key in any::<u8>(),
        (min, avg, max) in configs(),
        data in prop::collection::vec(any::<u8>(), 0..40_000),
        sizes in prop::collection::vec(0usize..5000, 1..8),
    ) {
        for chunker in keyed(key, min, avg, max) {
            let want: Vec<(u64, usize)> =
                chunker.chunks(&data).map(|c| (c.offset as u64, c.len)).collect();
            let jagged = Jagged { data: &data, sizes: sizes.clone(), call: 0 };
            prop_assert_eq!(&stream_lengths(&chunker, jagged), &want);
            // The owning iterator agrees and returns the bytes themselves.
            let owned: Vec<_> = chunker.stream(&data[..]).map(Result::unwrap).collect();
            prop_assert_eq!(owned.len(), want.len());
            for (o, (off, len)) in owned.iter().zip(&want) {
                prop_assert_eq!(o.offset, *off);
                prop_assert_eq!(&o.data[..], &data[*off as usize..*off as usize + len]);
            }
        }
    }

    /// The unkeyed comparison mode is exactly the `fastcdc` crate's FastCDC 2020.
    #[test]
    fn unkeyed_mode_is_the_fastcdc_crate(data in prop::collection::vec(any::<u8>(), 0..100_000)) {
        let config = ChunkerConfig::new(2048, 8192, 32768).unwrap();
        let ours: Vec<_> = cairn_chunk::hazmat::unkeyed_fastcdc2020(config).unwrap().chunks(&data).map(|c| (c.offset, c.len)).collect();
        let theirs: Vec<_> = fastcdc::v2020::FastCDC::new(&data, 2048, 8192, 32768).map(|c| (c.offset, c.length)).collect();
        prop_assert_eq!(ours, theirs);
    }
}

/// The stream looks ahead only `2 × avg` bytes and reads on to `max` when no cut falls in that
/// stretch; the boundaries are still the slice API's, for every algorithm, on data with many
/// long chunks (a low-entropy run makes the keyed chunkers run to `max`) and jagged reads.
#[test]
fn long_chunks_stream_like_slices() {
    let config = ChunkerConfig::new(4096, 8192, 65536).unwrap();
    let mut data = random(b"long chunks", 400_000);
    data[100_000..300_000].fill(7);
    let mut chunkers: Vec<Chunker> = keyed_both(&ChunkerKey::from_bytes([5; 32]), config).into();
    chunkers.push(cairn_chunk::hazmat::unkeyed_fastcdc2020(config).unwrap());
    for chunker in &chunkers {
        let want: Vec<(u64, usize)> = chunker
            .chunks(&data)
            .map(|c| (c.offset as u64, c.len))
            .collect();
        assert!(want.iter().any(|&(_, len)| len > 2 * 8192), "{want:?}");
        for sizes in [vec![1 << 20], vec![3000, 17, 65536], vec![1]] {
            let got = stream_lengths(
                chunker,
                Jagged {
                    data: &data,
                    sizes,
                    call: 0,
                },
            );
            assert_eq!(got, want);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The unkeyed mode streams like its slices too (its decisions depend on the distance to
    /// `avg`, which the stream's lookahead always covers).
    #[test]
    fn unkeyed_stream_equals_slice(
        (min, avg, max) in configs(),
        data in prop::collection::vec(any::<u8>(), 0..40_000),
        sizes in prop::collection::vec(0usize..5000, 1..8),
    ) {
        let Ok(chunker) = cairn_chunk::hazmat::unkeyed_fastcdc2020(ChunkerConfig::new(min, avg, max).unwrap()) else {
            return Ok(());
        };
        let want: Vec<(u64, usize)> =
            chunker.chunks(&data).map(|c| (c.offset as u64, c.len)).collect();
        let jagged = Jagged { data: &data, sizes, call: 0 };
        prop_assert_eq!(stream_lengths(&chunker, jagged), want);
    }
}

/// One-byte reads: the slowest reader still gives the same boundaries.
#[test]
fn one_byte_reads() {
    let data = random(b"one byte", 300_000);
    for chunker in keyed(1, 1024, 8192, 32768) {
        let want: Vec<(u64, usize)> = chunker
            .chunks(&data)
            .map(|c| (c.offset as u64, c.len))
            .collect();
        assert!(want.len() > 10);
        let got = stream_lengths(
            &chunker,
            Jagged {
                data: &data,
                sizes: vec![1],
                call: 0,
            },
        );
        assert_eq!(got, want);
    }
}

/// B-18: two keys cut the same data differently.
#[test]
fn two_keys_cut_differently() {
    let data = random(b"two keys", 4 << 20);
    let ends = |l: &[usize]| {
        l.iter()
            .scan(0, |s, &x| {
                *s += x;
                Some(*s)
            })
            .collect::<HashSet<_>>()
    };
    let [a2, a1] = keyed(1, 4096, 16384, 65536);
    let [b2, b1] = keyed(2, 4096, 16384, 65536);
    for (a, b) in [(a2, b2), (a1, b1)] {
        let (a, b) = (lengths(&a, &data), lengths(&b, &data));
        assert_ne!(a, b);
        // Not merely shifted: most boundaries differ.
        let (ea, eb) = (ends(&a), ends(&b));
        assert!(
            ea.intersection(&eb).count() * 10 < ea.len(),
            "keys share too many cut points"
        );
    }
    // Nor do the two algorithms share cut points under one key.
    let [v2, v1] = keyed(1, 4096, 16384, 65536);
    let (e2, e1) = (ends(&lengths(&v2, &data)), ends(&lengths(&v1, &data)));
    assert!(e2.intersection(&e1).count() * 10 < e2.len());
}

/// B-18 with the real key hierarchy: two archives (users) chunk the same file differently.
#[test]
fn two_archives_cut_differently() {
    let data = random(b"two users", 8 << 20);
    let user_a = cairn_keys::ArchiveKey::from_bytes([0xA; 32]);
    let user_b = cairn_keys::ArchiveKey::from_bytes([0xB; 32]);
    let config = ChunkerConfig::new(64 << 10, 256 << 10, 1 << 20).unwrap();
    let a = keyed_both(&user_a.chunker_key(), config);
    let b = keyed_both(&user_b.chunker_key(), config);
    for (a, b) in a.iter().zip(&b) {
        assert_ne!(lengths(a, &data), lengths(b, &data));
    }
}

/// B-17: one byte inserted or deleted at a random place of a 16 MiB input changes few chunks.
/// The figure is printed (`cargo test -p cairn-chunk --test properties -- --nocapture edit`).
#[test]
fn edit_changes_few_chunks() {
    let data = random(b"edit locality", 16 << 20);
    for chunker in keyed_both(&ChunkerKey::from_bytes([3; 32]), ChunkerConfig::DEFAULT) {
        edit_figure(&chunker, &data);
    }
}

// Printing the measured figure is this helper's purpose (see the test's doc comment).
#[allow(clippy::print_stdout)]
fn edit_figure(chunker: &Chunker, data: &[u8]) {
    let hashes = |d: &[u8]| -> HashSet<blake3::Hash> {
        chunker
            .chunks(d)
            .map(|c| blake3::hash(&d[c.offset..c.offset + c.len]))
            .collect()
    };
    let old = hashes(data);
    let trials = 60;
    let mut changed = 0;
    let mut worst = 0;
    let mut rng = 0x1234_5678_u64;
    for t in 0..trials {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pos = (rng >> 20) as usize % data.len();
        let mut edited = data.to_vec();
        if t % 2 == 0 {
            edited.insert(pos, (rng >> 8) as u8);
        } else {
            edited.remove(pos);
        }
        let new = hashes(&edited).difference(&old).count();
        changed += new;
        worst = worst.max(new);
    }
    let avg = changed as f64 / trials as f64;
    println!(
        "B-17 {:?}: one-byte edits on 16 MiB change {avg:.2} chunks on average (worst {worst}) over {trials} trials",
        chunker.algorithm()
    );
    assert!(avg <= 3.0, "edit locality regressed: {avg} chunks per edit");
    assert!(
        avg >= 1.0,
        "an edit must change at least the chunk holding it"
    );
}

/// The size distribution of the default configuration concentrates around its average.
#[test]
fn default_distribution() {
    let data = random(b"distribution", 96 << 20);
    for chunker in keyed_both(&ChunkerKey::from_bytes([4; 32]), ChunkerConfig::DEFAULT) {
        distribution(&chunker, &data);
    }
}

// Printing the measured figure is this helper's purpose (see the test's doc comment).
#[allow(clippy::print_stdout)]
fn distribution(chunker: &Chunker, data: &[u8]) {
    let l = lengths(chunker, data);
    let n = (l.len() - 1) as f64; // the last chunk is a remainder
    let mean = l[..l.len() - 1].iter().sum::<usize>() as f64 / n;
    let sd = (l[..l.len() - 1]
        .iter()
        .map(|&x| (x as f64 - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    let avg = ChunkerConfig::DEFAULT.avg() as f64;
    println!(
        "{:?} default sizes on 96 MiB random: {} chunks, mean {mean:.0} ({:+.1}%), sd {sd:.0} ({:.2} of avg)",
        chunker.algorithm(),
        l.len(),
        (mean / avg - 1.0) * 100.0,
        sd / avg
    );
    assert!(
        (mean / avg - 1.0).abs() < 0.10,
        "mean {mean} is not within 10% of {avg}"
    );
    assert!(sd / avg < 0.35, "spread {sd} too wide");
}

/// Runs of one byte repeat one window, so every chunk is cut at min or at max.
#[test]
fn runs_of_one_byte() {
    for byte in [0u8, 0xAB, 0xFF] {
        let data = vec![byte; 200_000];
        for chunker in keyed(9, 1024, 4096, 16384) {
            let l = lengths(&chunker, &data);
            assert_eq!(l.iter().sum::<usize>(), data.len());
            for &len in &l[..l.len() - 1] {
                assert!(
                    len == 1024 || len == 16384,
                    "byte {byte:#x}: run chunk of {len}"
                );
            }
        }
    }
}

#[test]
fn edge_lengths() {
    let [v2, v1] = keyed(5, 1024, 4096, 16384);
    assert_eq!(v2.algorithm(), Algorithm::KeyedV2, "the default");
    assert_eq!(v1.algorithm(), Algorithm::KeyedV1);
    for chunker in [v2, v1] {
        assert!(chunker.chunks(&[]).next().is_none());
        for len in [1, 1023, 1024, 1025, 16384, 16385] {
            let data = random(b"edge", len);
            let l = lengths(&chunker, &data);
            assert_eq!(l.iter().sum::<usize>(), len);
            if len <= 1024 {
                assert_eq!(l, vec![len]);
            }
            assert!(l.iter().all(|&x| x <= 16384));
        }
        assert_eq!(chunker.cut(&[]), 0);
    }
}

#[test]
fn unkeyed_mode_rejects_sizes_fastcdc_cannot_run() {
    for (min, avg, max) in [
        (64, 128, 1024),
        (65, 256, 1024),
        (64, 256, 32 << 20),
        (2 << 20, 3 << 20, 4 << 20),
    ] {
        let config = ChunkerConfig::new(min, avg, max).unwrap();
        assert!(
            matches!(
                cairn_chunk::hazmat::unkeyed_fastcdc2020(config),
                Err(ChunkError::UnsupportedByFastCdc { .. })
            ),
            "{min}/{avg}/{max}"
        );
    }
    let ok = cairn_chunk::hazmat::unkeyed_fastcdc2020(ChunkerConfig::DEFAULT).unwrap();
    assert_eq!(ok.algorithm(), Algorithm::UnkeyedFastCdc2020);
}

/// A failing reader gives a typed error once, then the stream is finished.
#[test]
fn reader_errors_are_reported() {
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("disk on fire"));
            }
            let n = self.0.min(buf.len());
            buf[..n].fill(7);
            self.0 -= n;
            Ok(n)
        }
    }
    let [chunker, _] = keyed(1, 64, 128, 256);
    let mut stream = chunker.stream(Failing(1000));
    let mut seen = 0;
    let err = loop {
        match stream.next_chunk() {
            Ok(Some((_, bytes))) => seen += bytes.len(),
            Ok(None) => panic!("the error was swallowed"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, ChunkError::Io(_)));
    assert!(seen <= 1000);
    assert!(stream.next_chunk().unwrap().is_none());
    let mut iter = chunker.stream(Failing(0));
    assert!(matches!(iter.next(), Some(Err(ChunkError::Io(_)))));
    assert!(iter.next().is_none());
}

#[test]
fn debug_hides_key_material() {
    let chunker = keyed(0x42, 64, 128, 256);
    let text = format!("{chunker:?}");
    assert!(text.contains("[REDACTED]"));
    assert!(!text.contains("4242"));
}
