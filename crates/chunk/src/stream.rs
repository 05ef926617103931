//! The streaming API: [`StreamChunker`] over any [`Read`], memory bounded by the maximum chunk size.

use std::io::Read;

use crate::{ChunkError, Chunker};

/// Cuts a stream; returned by [`Chunker::stream`].
///
/// Holds one buffer of `max + max(max, 64 KiB)` bytes, allocated at the first read (zeroed
/// lazily by the allocator) and reused: reads go straight into its free space, as large as
/// that space, and the unconsumed bytes move to its front only when the free space runs short.
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

    /// Fills the buffer until it holds `max` unconsumed bytes or the reader is exhausted.
    ///
    /// Each read asks for all the free space after the bytes read so far; the unconsumed bytes
    /// move to the front only when less than `max` bytes remain from them to the buffer's end,
    /// so each input byte moves at most once.
    fn fill(&mut self) -> Result<(), ChunkError> {
        let max = self.chunker.config().max();
        while self.end - self.pos < max && !self.eof {
            if self.buf.is_empty() {
                self.buf = vec![0; max + max.max(1 << 16)];
            }
            // Keep room for a whole `max` after the unconsumed bytes.
            if self.buf.len() - self.pos < max {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
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
        if let Err(e) = self.fill() {
            self.failed = true;
            return Err(e);
        }
        let rest = &self.buf[self.pos..self.end];
        if rest.is_empty() {
            return Ok(None);
        }
        let len = self.chunker.cut(rest);
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
