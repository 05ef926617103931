//! The streaming API: [`StreamChunker`] over any [`Read`], memory bounded by the lookahead
//! (`2 × avg`) and, after a long chunk, the maximum chunk size.

use std::io::Read;

use crate::{ChunkError, Chunker};

/// Cuts a stream; returned by [`Chunker::stream`].
///
/// Holds one buffer, allocated at the first read (zeroed lazily by the allocator) and reused:
/// reads go straight into its free space, as large as that space, and the unconsumed bytes move
/// to its front only when the free space runs short. It looks ahead a fixed stretch
/// (`2 × avg`, within `min + 1 ..= max`: 2 MiB by default), and only a chunk with no cut in that
/// stretch makes it read on to `max`. A cut found inside the bytes buffered is final: every
/// algorithm decides a cut at `k` from the bytes before `k` and from `k` itself (its distance to
/// the chunk start), never from bytes after it, once at least `avg` bytes are seen. So the
/// buffer holds `2 × lookahead` bytes (4 MiB by default), and `max + lookahead` only in a file
/// that once had a chunk longer than the lookahead: a quarter of the `2 × max` a buffer of whole
/// maximum chunks needs.
/// Gives exactly the boundaries [`Chunker::chunks`] gives for the same bytes, whatever sizes the
/// reader returns.
///
/// [`next_chunk`](Self::next_chunk) lends each chunk without copying; the [`Iterator`]
/// implementation copies each into an owned [`Vec`]. After an I/O error the stream is finished.
pub struct StreamChunker<'c, R> {
    chunker: &'c Chunker,
    reader: R,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    /// End of the bytes read into `buf`.
    end: usize,
    /// Stream offset of `buf[pos]`.
    offset: u64,
    eof: bool,
    failed: bool,
}

impl<R> core::fmt::Debug for StreamChunker<'_, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StreamChunker")
            .field("chunker", self.chunker)
            .field("offset", &self.offset)
            .field("buffered", &(self.end - self.pos))
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

/// How far the stream looks ahead before cutting: `2 × avg`, at least `min + 1` (so `cut` sees
/// beyond the minimum) and at most `max`. At least `avg`, so every algorithm's decisions inside
/// the buffered bytes are those it makes on the whole stream (see [`StreamChunker`]).
fn lookahead(chunker: &Chunker) -> usize {
    let c = chunker.config();
    c.avg().saturating_mul(2).max(c.min() + 1).min(c.max())
}

impl<'c, R: Read> StreamChunker<'c, R> {
    pub(crate) fn new(chunker: &'c Chunker, reader: R) -> Self {
        Self {
            chunker,
            reader,
            buf: Vec::new(),
            pos: 0,
            end: 0,
            offset: 0,
            eof: false,
            failed: false,
        }
    }

    /// Stream offset of the next chunk.
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Gives back the reader.
    pub fn into_inner(self) -> R {
        self.reader
    }

    /// Fills the buffer until it holds `want` unconsumed bytes or the reader is exhausted.
    ///
    /// Each read asks for all the free space after the bytes read so far; the unconsumed bytes
    /// move to the front only when less than `want` bytes remain from them to the buffer's end,
    /// and the buffer is at least twice the usual `want`, so each input byte moves about once.
    fn fill(&mut self, want: usize) -> Result<(), ChunkError> {
        while self.end - self.pos < want && !self.eof {
            if self.buf.is_empty() {
                self.buf = vec![0; 2 * lookahead(self.chunker).max(1 << 16)];
            }
            // Keep room for a whole `want` after the unconsumed bytes.
            if self.buf.len() - self.pos < want {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
                if self.buf.len() < want {
                    // A chunk longer than the lookahead: room for `max` from now on.
                    self.buf.resize(want + lookahead(self.chunker), 0);
                }
            }
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The next chunk as `(stream offset, bytes)`, or `None` at the end of the stream.
    ///
    /// # Errors
    /// [`ChunkError::Io`] if the reader fails (then the stream is finished: later calls return
    /// `Ok(None)`).
    pub fn next_chunk(&mut self) -> Result<Option<(u64, &[u8])>, ChunkError> {
        if self.failed {
            return Ok(None);
        }
        let max = self.chunker.config().max();
        if let Err(e) = self.fill(lookahead(self.chunker)) {
            self.failed = true;
            return Err(e);
        }
        let mut len = self.chunker.cut(&self.buf[self.pos..self.end]);
        if len == self.end - self.pos && !self.eof && len < max {
            // No cut in the lookahead, and more may follow: decide with `max` bytes in view.
            if let Err(e) = self.fill(max) {
                self.failed = true;
                return Err(e);
            }
            len = self.chunker.cut(&self.buf[self.pos..self.end]);
        }
        if len == 0 {
            return Ok(None);
        }
        let start = self.pos;
        let offset = self.offset;
        self.pos += len;
        self.offset += len as u64;
        Ok(Some((offset, &self.buf[start..start + len])))
    }
}

/// An owned chunk from the [`StreamChunker`] iterator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedChunk {
    /// Stream offset of the first byte.
    pub offset: u64,
    /// The chunk's bytes.
    pub data: Vec<u8>,
}

impl<R: Read> Iterator for StreamChunker<'_, R> {
    type Item = Result<OwnedChunk, ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_chunk() {
            Ok(Some((offset, data))) => Some(Ok(OwnedChunk {
                offset,
                data: data.to_vec(),
            })),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use cairn_keys::ChunkerKey;

    use crate::{Chunker, ChunkerConfig};

    /// The buffer is `2 × lookahead` (4 MiB at the default sizes) while chunks are shorter than
    /// the lookahead, and grows to `max + lookahead` only after a longer one.
    #[test]
    fn the_buffer_is_bounded_by_the_lookahead() {
        let chunker = Chunker::new(&ChunkerKey::from_bytes([1; 32]), ChunkerConfig::DEFAULT);
        let mut data = vec![0u8; 24 << 20];
        blake3::Hasher::new().finalize_xof().fill(&mut data);
        let mut stream = chunker.stream(&data[..]);
        let mut longest = 0;
        while let Some((_, c)) = stream.next_chunk().unwrap() {
            longest = longest.max(c.len());
            if longest <= 2 << 20 {
                assert_eq!(stream.buf.len(), 4 << 20);
            }
        }
        assert!(stream.buf.len() <= (8 << 20) + (2 << 20));
        // A run with no cut: chunks of `max`, and a buffer of `max + lookahead`.
        let zeros = vec![0u8; 20 << 20];
        let mut stream = chunker.stream(&zeros[..]);
        let (_, first) = stream.next_chunk().unwrap().unwrap();
        assert_eq!(first.len(), 8 << 20);
        assert_eq!(stream.buf.len(), (8 << 20) + (2 << 20));
    }
}
