//! Zero-copy blob bodies: a reply whose bytes are a range of a complete local file (the
//! embedded origin's blobs, the edge cache's files) goes from the page cache to the socket with `sendfile(2)`, as nginx serves static files. Copying through user
//! space (a 1 MiB `pread`, then a `write`) cost two memory copies per byte and measured
//! 0.65× nginx on a warm 1 GiB GET here.
//!
//! Such a reply is written around Pingora whole, head included (`Raw`): Pingora's write
//! buffer could otherwise still hold the last bytes of a body write the socket took only in
//! part when `sendfile` starts. Writes wait for writability through a duplicate descriptor
//! registered with the runtime. Pingora has not counted those bytes, so the reply says
//! `Connection: close` and the connection is closed after it instead of being reused. Only
//! plain-TCP HTTP/1.1 connections and bodies of at least `MIN_LEN` take this path; TLS must
//! encrypt every byte itself.
//!
//! A fill still under way is not sent with `sendfile`: its newest bytes are in memory and its
//! file is written around the page cache (`cache::writer`), so its clients get the fill's
//! chunks (written around Pingora too). Once the fill is verified and its file whole (`LocalFile::whole`), a reply that still has
//! at least `MIN_LEN` to go sends the rest from the file: the clients of a storm are mostly
//! far behind the fill when it ends, and each would otherwise read the file around the
//! cache and copy every byte through user space. The first of them brings the file into
//! the page cache for the others.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use pingora::protocols::http::ServerSession;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Smaller bodies are not worth giving up the connection for.
pub const MIN_LEN: u64 = 4 << 20;
/// Bytes per `sendfile` call, at most. Smaller calls return to the runtime sooner, as nginx's
/// `sendfile_max_chunk` (2 MiB) does: a warm 1 GiB GET on loopback went from 1.04-1.10x to
/// 1.25x nginx's speed (0.31-0.35 to 0.25-0.32 CPU s per GiB) going from 8 MiB to 1 MiB
/// calls (`shoal-bench compare --only blob-get`, alternating builds; 512 KiB was no better).
const STEP: usize = 1 << 20;
/// A client that takes no bytes for this long loses the connection.
const STALL: Duration = Duration::from_secs(60);

/// The socket of a plain-TCP HTTP/1.1 session, if it is one.
pub fn plain_socket(session: &ServerSession) -> Option<RawFd> {
    match session {
        ServerSession::H1(s) => {
            let stream = s.stream();
            stream.get_ssl().is_none().then(|| stream.id())
        }
        _ => None,
    }
}

/// A plain-TCP connection written around Pingora for one whole reply, head included.
///
/// Why the head too: Pingora writes through an 8 KiB buffer that it flushes only when a
/// body ends, and a body write the socket takes only in part leaves its last bytes (under
/// 8 KiB) in that buffer. Bytes sent around Pingora after such a write would overtake
/// them, and they would never go out. So a reply that may go around Pingora at all never
/// goes through it: nothing of it ever sits in Pingora's buffer.
pub struct Raw {
    socket: AsyncFd<OwnedFd>,
}

impl Raw {
    /// Takes over `socket` (a session's, from `plain_socket`) for writing.
    pub fn of(socket: RawFd) -> std::io::Result<Raw> {
        // SAFETY: `dup` of a descriptor the session keeps open for as long as the reply is
        // written; the copy is owned and closed here, so the session's own registration is
        // untouched.
        let copy = unsafe { libc::dup(socket) };
        if copy < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `copy` is a fresh descriptor nobody else owns.
        let copy = unsafe { OwnedFd::from_raw_fd(copy) };
        // SAFETY: the `OwnedFd` stays open and unchanged for as long as the `AsyncFd` owns it.
        let socket = unsafe { AsyncFd::register_with_interest(copy, Interest::WRITABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Raw { socket })
    }

    /// Waits until the socket takes more bytes, for at most `STALL`.
    async fn writable(&self) -> std::io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, OwnedFd>> {
        tokio::time::timeout(STALL, self.socket.writable())
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "client stalled"))?
    }

    /// One non-blocking call `op` on the socket once it is writable: how many bytes it took,
    /// or `None` when the socket was not writable after all or the call was interrupted.
    async fn call(&self, mut op: impl FnMut(RawFd) -> isize) -> std::io::Result<Option<usize>> {
        let mut ready = self.writable().await?;
        let done = ready.try_io(|s| {
            let n = op(s.as_raw_fd());
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match done {
            Ok(Ok(n)) => Ok(Some(n)),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => Ok(None),
            Ok(Err(e)) => Err(e),
            Err(_would_block) => Ok(None),
        }
    }

    /// Writes all of `bytes`; an error means the connection must be dropped.
    pub async fn write_all(&self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            // SAFETY: the descriptor is open; `bytes` is a valid slice.
            let send = |fd| unsafe {
                libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL)
            };
            if let Some(n) = self.call(send).await? {
                bytes = &bytes[n..];
            }
        }
        Ok(())
    }

    /// Sends `len` bytes of `file` from `offset`; an error means the connection must be
    /// dropped (the client has a partial body).
    pub async fn send_file(
        &self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
    ) -> std::io::Result<()> {
        let mut at = i64::try_from(offset).map_err(std::io::Error::other)?;
        let end = offset + len;
        let mut left = len;
        while left > 0 {
            let step = usize::try_from(end - at as u64).unwrap_or(STEP).min(STEP);
            // SAFETY: both descriptors are open; `at` is a valid offset pointer.
            let send = |fd| unsafe { libc::sendfile(fd, file.as_raw_fd(), &mut at, step) };
            match self.call(send).await? {
                Some(0) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file ended before the body",
                    ))
                }
                Some(n) => left -= n as u64,
                None => {}
            }
        }
        Ok(())
    }
}

/// The bytes of an HTTP/1.1 response head; `None` if a header would break it (a name or
/// value holding a line break or a control character).
pub fn head_bytes<'a>(
    status: http::StatusCode,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<Vec<u8>> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in headers {
        let clean = |t: &str| t.bytes().all(|b| b == b'\t' || (b' '..0x7f).contains(&b));
        if name.is_empty() || name.contains(':') || !clean(name) || !clean(value) {
            return None;
        }
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    Some(head.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::head_bytes;

    #[test]
    fn a_head_is_written_as_http_1_1_and_refuses_line_breaks() {
        let head = head_bytes(
            http::StatusCode::PARTIAL_CONTENT,
            [("Content-Length", "10"), ("Connection", "close")],
        )
        .unwrap();
        assert_eq!(
            head,
            b"HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
        );
        assert!(head_bytes(http::StatusCode::OK, [("X-A", "1\r\nX-B: 2")]).is_none());
        assert!(head_bytes(http::StatusCode::OK, [("X-A:", "1")]).is_none());
        assert!(head_bytes(http::StatusCode::OK, [("", "1")]).is_none());
    }
}
