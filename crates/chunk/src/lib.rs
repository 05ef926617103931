//! Keyed content-defined chunking (CDC) that resists chunk-size fingerprinting.
//!
//! A [`Chunker`] cuts a byte stream where its content says so, so an edit changes only the
//! chunks around it and every other chunk deduplicates against the previous version. Both keyed
//! algorithms make every cut decision read only the output of a keyed pseudo-random function
//! (AES-128) applied to a keyed hash of the last 64 bytes, the fix proposed by the 2025
//! chunking-attack papers (see `docs/format/chunk.md`). The default, [`Algorithm::KeyedV2`],
//! also lets those PRF outputs choose which positions to evaluate (a walk of 1 to 64 bytes per
//! step), so it evaluates about one position in 32 where [`Algorithm::KeyedV1`] evaluates every
//! one.
//!
//! | item | use |
//! | --- | --- |
//! | [`ChunkerConfig`] | validated min / average / max chunk sizes ([`ChunkerConfig::DEFAULT`]: 512 KiB / 1 MiB / 8 MiB) |
//! | [`Chunker::new`] | the default keyed chunker (v2), from `cairn-keys`' [`ChunkerKey`] |
//! | [`Chunker::keyed_v1`], [`Chunker::keyed_v2`] | one frozen keyed algorithm by name |
//! | `hazmat::unkeyed_fastcdc2020` (feature `hazmat`) | the `fastcdc` crate's unkeyed FastCDC 2020, **for comparison only** |
//! | [`Chunker::chunks`] | slice API: iterator of [`Chunk`] (`offset`, `len`) over `&[u8]` |
//! | [`Chunker::stream`] | streaming API over [`std::io::Read`], memory bounded by the max chunk size |
//! | [`Chunker::cut`] | the sans-IO primitive both are built on: the length of the next chunk |
//!
//! # Example
//!
//! ```
//! use cairn_chunk::{Chunker, ChunkerConfig};
//! use cairn_keys::ArchiveKey;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let root = ArchiveKey::generate()?;
//! let config = ChunkerConfig::new(4096, 16 * 1024, 64 * 1024)?;
//! let chunker = Chunker::new(&root.chunker_key(), config);
//!
//! let data: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
//! let chunks: Vec<_> = chunker.chunks(&data).collect();
//! assert_eq!(chunks.iter().map(|c| c.len).sum::<usize>(), data.len());
//!
//! // The streaming API over any `Read` gives the same boundaries.
//! let mut stream = chunker.stream(&data[..]);
//! let mut n = 0;
//! while let Some((offset, bytes)) = stream.next_chunk()? {
//!     assert_eq!((offset as usize, bytes.len()), (chunks[n].offset, chunks[n].len));
//!     n += 1;
//! }
//! assert_eq!(n, chunks.len());
//! # Ok(())
//! # }
//! ```
//!
//! # Security notes
//!
//! - Cut points of both keyed algorithms are a pseudo-random function of the 64-byte windows
//!   of the data, under keys derived from the archive's [`ChunkerKey`] (v2 also reads where to
//!   look next from the same PRF outputs). Someone who sees chunk lengths and knows the
//!   plaintext learns only which windows the PRF selected, not a key they could use to predict
//!   cuts in other data (the attacks of arXiv 2504.02095 and IACR ePrint 2025/558 recover the
//!   chunker's parameters; here those are an AES key).
//! - What still leaks: equal 64-byte windows make equal decisions (inherent in CDC, and what
//!   makes dedup work), and chunk lengths themselves unless the layer above pads them
//!   (`cairn-seal` does). Runs of one repeated byte cut at `min` or `max` only.
//! - [`Algorithm::UnkeyedFastCdc2020`] has no secret at all: anyone can compute its cuts. Use it
//!   for benchmarks and comparisons, never for stored archives.
//! - Key material (the AES key schedules, the gear table, the NH key) is zeroized on drop and never
//!   printed.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::big_endian_bytes, clippy::host_endian_bytes)]

mod config;
mod keyed;
mod keyed_v2;
mod stream;

use core::fmt;

pub use config::ChunkerConfig;
pub use stream::{OwnedChunk, StreamChunker};

use cairn_keys::ChunkerKey;
use keyed::KeyedV1;
use keyed_v2::KeyedV2;

/// The window of the keyed algorithms, in bytes: a cut decision depends on exactly the last
/// `WINDOW` bytes of the chunk (and, in v2, on which earlier windows the walk visited).
pub const WINDOW: usize = 64;

/// Smallest allowed minimum chunk size (a chunk must at least fill the window).
pub const MIN_SIZE_FLOOR: usize = WINDOW;

/// Largest allowed maximum chunk size (the streaming API buffers one maximum-size chunk).
pub const MAX_SIZE_CEILING: usize = 64 * 1024 * 1024;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// The minimum chunk size is below [`MIN_SIZE_FLOOR`].
    #[error("minimum chunk size {min} is below the floor of {MIN_SIZE_FLOOR} bytes")]
    MinTooSmall {
        /// The requested minimum.
        min: usize,
    },
    /// The maximum chunk size is above [`MAX_SIZE_CEILING`].
    #[error("maximum chunk size {max} is above the ceiling of {MAX_SIZE_CEILING} bytes")]
    MaxTooLarge {
        /// The requested maximum.
        max: usize,
    },
    /// The sizes are not ordered `min < avg <= max`.
    #[error("chunk sizes must satisfy min < avg <= max (got {min} / {avg} / {max})")]
    NotOrdered {
        /// The requested minimum.
        min: usize,
        /// The requested average.
        avg: usize,
        /// The requested maximum.
        max: usize,
    },
    /// The `fastcdc` crate cannot run with these sizes (it needs even sizes within its own bounds:
    /// min 64..=1 MiB, avg 256..=4 MiB, max 1 KiB..=16 MiB).
    #[error("the fastcdc crate does not support sizes {min} / {avg} / {max}")]
    UnsupportedByFastCdc {
        /// The requested minimum.
        min: usize,
        /// The requested average.
        avg: usize,
        /// The requested maximum.
        max: usize,
    },
    /// Reading the input stream failed.
    #[error("reading the input failed")]
    Io(#[from] std::io::Error),
}

/// Which cutting algorithm a [`Chunker`] runs. Each is frozen: changing any output of an
/// algorithm makes a new variant, never an edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// Cairn's keyed chunker, version 1: keyed gear hash of the last 64 bytes, AES-128 PRF on the
    /// hash, FastCDC-style normalized thresholds. Evaluates every candidate from `min` on.
    KeyedV1,
    /// The `fastcdc` crate's FastCDC 2020 with its public gear table (normalization level 1).
    /// Unkeyed: for comparison only.
    UnkeyedFastCdc2020,
    /// Cairn's keyed chunker, version 2: v1's decision (keyed gear hash of the last 64 bytes,
    /// AES-128 PRF, normalized thresholds) evaluated along a walk whose steps are read from the
    /// same PRF outputs, so about one candidate in `(stride + 1) / 2` is evaluated; the window is
    /// digested by NH (UMAC's universal hash) instead of the gear hash. The default for archives.
    KeyedV2,
}

/// One chunk of a slice: `data[offset..offset + len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Chunk {
    /// Offset of the first byte of the chunk in the input.
    pub offset: usize,
    /// Length of the chunk in bytes (`min <= len <= max`, except a shorter last chunk).
    pub len: usize,
}

enum Inner {
    KeyedV1(Box<KeyedV1>),
    KeyedV2(Box<KeyedV2>),
    #[cfg(feature = "hazmat")]
    FastCdc2020,
}

/// A configured chunker. Cheap to share by reference across threads; it holds no per-stream state.
pub struct Chunker {
    config: ChunkerConfig,
    inner: Inner,
}

impl fmt::Debug for Chunker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunker")
            .field("algorithm", &self.algorithm())
            .field("config", &self.config)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

impl Chunker {
    /// The default chunker for an archive's chunker key: [`Algorithm::KeyedV2`].
    #[must_use]
    pub fn new(key: &ChunkerKey, config: ChunkerConfig) -> Self {
        Self::keyed_v2(key, config)
    }

    /// The keyed v1 chunker ([`Algorithm::KeyedV1`]) for an archive's chunker key.
    #[must_use]
    pub fn keyed_v1(key: &ChunkerKey, config: ChunkerConfig) -> Self {
        Self {
            config,
            inner: Inner::KeyedV1(Box::new(KeyedV1::new(key, &config))),
        }
    }

    /// The keyed v2 chunker ([`Algorithm::KeyedV2`]) for an archive's chunker key.
    #[must_use]
    pub fn keyed_v2(key: &ChunkerKey, config: ChunkerConfig) -> Self {
        Self {
            config,
            inner: Inner::KeyedV2(Box::new(KeyedV2::new(key, &config))),
        }
    }

    /// The algorithm this chunker runs.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            Inner::KeyedV1(_) => Algorithm::KeyedV1,
            Inner::KeyedV2(_) => Algorithm::KeyedV2,
            #[cfg(feature = "hazmat")]
            Inner::FastCdc2020 => Algorithm::UnkeyedFastCdc2020,
        }
    }

    /// The validated sizes.
    #[must_use]
    pub fn config(&self) -> ChunkerConfig {
        self.config
    }

    /// The length of the chunk that starts at `data[0]`.
    ///
    /// `data` MUST hold at least [`ChunkerConfig::max`] bytes, or else everything that remains of
    /// the stream; given that, the answer depends only on the content, never on how much more
    /// than `max` bytes were passed. Returns 0 only for empty `data`, and never more than
    /// `min(data.len(), max)`.
    #[must_use]
    pub fn cut(&self, data: &[u8]) -> usize {
        let n = data.len();
        if n <= self.config.min() {
            return n;
        }
        let window = &data[..n.min(self.config.max())];
        match &self.inner {
            Inner::KeyedV1(k) => k.cut(window),
            Inner::KeyedV2(k) => k.cut(window),
            #[cfg(feature = "hazmat")]
            Inner::FastCdc2020 => {
                let c = &self.config;
                let fast = fastcdc::v2020::FastCDC::new(window, c.min(), c.avg(), c.max());
                let (_, end) = fast.cut(0, window.len());
                end.clamp(1, window.len())
            }
        }
    }

    /// Cuts a slice: an iterator of [`Chunk`]s that tile `data` in order.
    #[must_use]
    pub fn chunks<'a>(&'a self, data: &'a [u8]) -> Chunks<'a> {
        Chunks {
            chunker: self,
            data,
            offset: 0,
        }
    }

    /// Cuts a stream read from `reader`, with a buffer of twice the stream's lookahead
    /// (`2 × avg`: 4 MiB at the default sizes), or `max` plus the lookahead after a chunk
    /// longer than the lookahead (see [`StreamChunker`]).
    pub fn stream<R: std::io::Read>(&self, reader: R) -> StreamChunker<'_, R> {
        StreamChunker::new(self, reader)
    }
}

/// Iterator returned by [`Chunker::chunks`].
#[derive(Debug)]
pub struct Chunks<'a> {
    chunker: &'a Chunker,
    data: &'a [u8],
    offset: usize,
}

impl Iterator for Chunks<'_> {
    type Item = Chunk;

    fn next(&mut self) -> Option<Chunk> {
        let rest = self.data.get(self.offset..).filter(|r| !r.is_empty())?;
        let len = self.chunker.cut(rest);
        let chunk = Chunk {
            offset: self.offset,
            len,
        };
        self.offset += len;
        Some(chunk)
    }
}

impl core::iter::FusedIterator for Chunks<'_> {}

/// The unkeyed FastCDC 2020 chunker of the `fastcdc` crate, for benchmarks and comparisons:
/// anyone can compute its cuts, so chunk sizes fingerprint the content (B-18). Behind the
/// `hazmat` feature, so that production builds neither offer it nor link `fastcdc`.
#[cfg(feature = "hazmat")]
pub mod hazmat {
    use crate::{ChunkError, Chunker, ChunkerConfig, Inner};

    /// The `fastcdc` crate's unkeyed FastCDC 2020 ([`Algorithm::UnkeyedFastCdc2020`]). Anyone can
    /// predict its cuts: for benchmarks and comparisons only.
    ///
    /// # Errors
    /// [`ChunkError::UnsupportedByFastCdc`] if the sizes are outside that crate's bounds (it
    /// would misbehave rather than report an error).
    pub fn unkeyed_fastcdc2020(config: ChunkerConfig) -> Result<Chunker, ChunkError> {
        use fastcdc::v2020 as f;
        let (min, avg, max) = (config.min(), config.avg(), config.max());
        let ok = (f::MINIMUM_MIN..=f::MINIMUM_MAX).contains(&min)
            && (f::AVERAGE_MIN..=f::AVERAGE_MAX).contains(&avg)
            && (f::MAXIMUM_MIN..=f::MAXIMUM_MAX).contains(&max)
            && min % 2 == 0
            && avg % 2 == 0
            && max % 2 == 0;
        if !ok {
            return Err(ChunkError::UnsupportedByFastCdc { min, avg, max });
        }
        Ok(Chunker {
            config,
            inner: Inner::FastCdc2020,
        })
    }
}
