//! Reading a response body by its framing (RFC 9112 §6.3), chunked decoding included.

use tokio::io::AsyncReadExt as _;

use super::connect::{io_error, Stream};
use super::error::FastError;

/// Longest chunk-size line, extensions included (hyper's limit).
const MAX_CHUNK_LINE: usize = 16 * 1024;
/// Most bytes of one trailer line, and of the trailer lines in the buffer at once (hyper's
/// limit for a head).
const MAX_TRAILER: usize = 400 * 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// How a response's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body (`HEAD`, 1xx, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the server closes the connection.
    UntilClose,
}

/// Reads what the socket has into `buf`'s spare room; 0 at the end of the stream.
pub(super) async fn read_more(stream: &mut Stream, buf: &mut Vec<u8>) -> Result<usize, FastError> {
    buf.reserve(READ_CHUNK);
    stream.read_buf(buf).await.map_err(|e| io_error(&e))
}

/// Reads the body delimited by `framing`, of which `buf` holds the first bytes; returns its
/// length (after chunked decoding) and whether the connection may be reused after it
/// (`keep_alive` as the head said, unless the body ran to the close).
pub(super) async fn read_body(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    framing: Framing,
    keep_alive: bool,
) -> Result<(u64, bool), FastError> {
    match framing {
        Framing::Empty => Ok((0, keep_alive)),
        Framing::Length(n) => {
            let mut have = buf.len() as u64;
            while have < n {
                buf.clear();
                let got = read_more(stream, buf).await?;
                if got == 0 {
                    return Err(FastError::Connection);
                }
                have += got as u64;
            }
            Ok((n, keep_alive))
        }
        Framing::Chunked => {
            let mut decoder = Chunked::default();
            loop {
                let (used, done) = decoder.feed(buf)?;
                buf.drain(..used);
                if done {
                    break;
                }
                if read_more(stream, buf).await? == 0 {
                    return Err(FastError::Connection);
                }
            }
            Ok((decoder.body_len, keep_alive))
        }
        Framing::UntilClose => {
            let mut have = buf.len() as u64;
            loop {
                buf.clear();
                match read_more(stream, buf).await? {
                    0 => break,
                    got => have += got as u64,
                }
            }
            Ok((have, false))
        }
    }
}

/// A streaming decoder of a chunked body (RFC 9112 §7.1) that counts the data bytes.
#[derive(Debug, Default)]
pub(super) struct Chunked {
    state: ChunkState,
    pub(super) body_len: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk's data, this many bytes to go.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailer,
}

impl Chunked {
    /// Consumes what it can of `buf`: returns the bytes used and whether the body ended.
    pub(super) fn feed(&mut self, buf: &[u8]) -> Result<(usize, bool), FastError> {
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            match self.state {
                ChunkState::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((used, 0))) => {
                        at += used;
                        self.state = ChunkState::Trailer;
                    }
                    Ok(httparse::Status::Complete((used, size))) => {
                        at += used;
                        self.state = ChunkState::Data(size);
                    }
                    Ok(httparse::Status::Partial) if rest.len() > MAX_CHUNK_LINE => {
                        return Err(FastError::InvalidResponse)
                    }
                    Ok(httparse::Status::Partial) => return Ok((at, false)),
                    Err(_) => return Err(FastError::InvalidResponse),
                },
                ChunkState::Data(left) => {
                    let take = left.min(rest.len() as u64);
                    at += take as usize;
                    self.body_len += take;
                    if take == left {
                        self.state = ChunkState::DataEnd;
                    } else {
                        self.state = ChunkState::Data(left - take);
                        return Ok((at, false));
                    }
                }
                ChunkState::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        at += 2;
                        self.state = ChunkState::Size;
                    }
                    [b'\r'] | [] => return Ok((at, false)),
                    _ => return Err(FastError::InvalidResponse),
                },
                ChunkState::Trailer => match rest.iter().position(|&b| b == b'\n') {
                    Some(0) => return Err(FastError::InvalidResponse),
                    Some(1) if rest[0] == b'\r' => return Ok((at + 2, true)),
                    Some(i) if i >= MAX_TRAILER => return Err(FastError::InvalidResponse),
                    Some(i) => at += i + 1,
                    None if rest.len() > MAX_TRAILER => return Err(FastError::InvalidResponse),
                    None => return Ok((at, false)),
                },
            }
        }
    }
}
