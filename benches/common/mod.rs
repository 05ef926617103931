//! Deterministic benchmark inputs shared by the benches (not a bench target itself).

#![allow(dead_code)] // each bench uses a subset
// Data generation casts bounded values; truncation is intended.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]

/// `len` pseudo-random (incompressible) bytes from a seed: BLAKE3's XOF.
pub(crate) fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut h = blake3::Hasher::new();
    h.update(b"cairn bench random");
    h.update(&seed.to_le_bytes());
    h.finalize_xof().fill(&mut out);
    out
}

/// `len` bytes of text-like data: lines of words drawn with a skewed distribution from a
/// vocabulary, with punctuation and numbers, so it compresses like prose or source (zstd -3 gets
/// roughly 3-4x) and has the byte statistics of text.
pub(crate) fn text_bytes(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the",
        "of",
        "and",
        "to",
        "in",
        "a",
        "is",
        "that",
        "for",
        "it",
        "as",
        "was",
        "with",
        "be",
        "by",
        "on",
        "not",
        "he",
        "this",
        "are",
        "or",
        "his",
        "from",
        "at",
        "which",
        "but",
        "have",
        "an",
        "had",
        "they",
        "you",
        "were",
        "their",
        "one",
        "all",
        "we",
        "can",
        "her",
        "has",
        "there",
        "been",
        "if",
        "more",
        "when",
        "will",
        "would",
        "who",
        "so",
        "no",
        "backup",
        "archive",
        "segment",
        "chunk",
        "encrypted",
        "server",
        "tenant",
        "token",
        "restore",
        "snapshot",
        "version",
        "device",
        "event",
        "file",
        "folder",
        "policy",
        "retention",
        "function",
        "return",
        "struct",
        "impl",
        "let",
        "match",
        "error",
        "result",
        "value",
        "config",
        "buffer",
        "stream",
        "reader",
        "writer",
        "offset",
        "length",
        "window",
        "hash",
        "deduplication",
        "compression",
        "throughput",
        "latency",
        "measurement",
        "quarterly",
        "report",
        "customer",
        "invoice",
        "meeting",
        "project",
        "schedule",
        "document",
    ];
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut out = Vec::with_capacity(len + 64);
    let mut words_in_line = 0;
    while out.len() < len {
        let r = next();
        // Skew: square a uniform to favour the frequent words at the front.
        let u = (r >> 11) as f64 / (1u64 << 53) as f64;
        let idx = ((u * u) * WORDS.len() as f64) as usize;
        out.extend_from_slice(WORDS[idx.min(WORDS.len() - 1)].as_bytes());
        match r & 31 {
            0 => out.extend_from_slice(b", "),
            1 => out.extend_from_slice(format!(" {} ", r >> 40).as_bytes()),
            2 => out.extend_from_slice(b". "),
            _ => out.push(b' '),
        }
        words_in_line += 1;
        if words_in_line > 8 + (r >> 60) as usize {
            out.push(b'\n');
            words_in_line = 0;
        }
    }
    out.truncate(len);
    out
}
