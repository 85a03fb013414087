//! Zero-copy blob bodies: a reply whose bytes are a range of a complete local file (the
//! embedded origin's blobs, the edge cache's files) goes from the page cache to the socket with `sendfile(2)`, as nginx serves static files. Copying through user
//! space (a 1 MiB `pread`, then a `write`) cost two memory copies per byte and measured
//! 0.65× nginx on a warm 1 GiB GET here.
//!
//! Pingora owns the connection, so the body's first chunk still goes through it: that write
//! flushes the response head and leaves Pingora's write buffer empty. The rest is sent on
//! the socket's descriptor, waiting for writability through a duplicate descriptor
//! registered with the runtime. Pingora has not counted those bytes, so the connection is
//! closed after the reply instead of being reused. Only plain-TCP HTTP/1.1 connections and
//! bodies of at least `MIN_LEN` take this path; TLS must encrypt every byte itself.
//!
//! A fill still under way is not sent this way: its newest bytes are in memory and its file
//! is written around the page cache (`cache::writer`), so its clients get the fill's chunks.
//! Once the fill is verified and its file whole (`LocalFile::whole`), a reply that still has
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
/// Bytes per `sendfile` call.
const STEP: usize = 8 << 20;
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

/// Sends `len` bytes of `file` from `offset` on `socket`; an error means the connection
/// must be dropped (the client has a partial body).
pub async fn send(
    socket: RawFd,
    file: &std::fs::File,
    offset: u64,
    len: u64,
) -> std::io::Result<()> {
    // SAFETY: `dup` of a descriptor the session keeps open for the whole call; the copy is
    // owned and closed here, so the session's own registration is untouched.
    let copy = unsafe { libc::dup(socket) };
    if copy < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `copy` is a fresh descriptor nobody else owns.
    let copy = unsafe { OwnedFd::from_raw_fd(copy) };
    // SAFETY: the `OwnedFd` stays open and unchanged for as long as the `AsyncFd` owns it.
    let socket = unsafe { AsyncFd::register_with_interest(copy, Interest::WRITABLE) }
        .map_err(|e| e.into_parts().1)?;
    let mut at = i64::try_from(offset).map_err(std::io::Error::other)?;
    let end = offset + len;
    let mut left = len;
    while left > 0 {
        let step = usize::try_from(end - at as u64).unwrap_or(STEP).min(STEP);
        let mut ready = tokio::time::timeout(STALL, socket.writable())
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "client stalled"))??;
        let sent = ready.try_io(|s| {
            // SAFETY: both descriptors are open; `at` is a valid offset pointer.
            let n = unsafe { libc::sendfile(s.as_raw_fd(), file.as_raw_fd(), &mut at, step) };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as u64)
            }
        });
        match sent {
            Ok(Ok(0)) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file ended before the body",
                ))
            }
            Ok(Ok(n)) => left -= n,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
    Ok(())
}
