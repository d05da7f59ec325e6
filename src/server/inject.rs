//! Raw HTTP/2 frames where h2 has no API — a GOAWAY whose last-stream-id excludes a stream
//! the server already accepted (RFC 9113 §6.8). h2 owns the connection's I/O, so the
//! connection goes through a [`FrameTracker`] that follows the frame boundaries of what h2
//! writes; once h2 is done with the connection, the I/O is taken back, and a frame written
//! directly, provided h2 stopped between two frames.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// RFC 9113 §4.1: every frame starts with a 9-octet header.
const FRAME_HEADER_LEN: usize = 9;

/// Debug data is for humans; keep the frame far below the smallest SETTINGS_MAX_FRAME_SIZE
/// (16 384, RFC 9113 §4.2).
const MAX_DEBUG_LEN: usize = 256;

/// A GOAWAY frame (RFC 9113 §6.8) with a chosen last-stream-id, error code and debug data
/// (cut to 256 bytes).
pub fn goaway_frame(last_stream_id: u32, code: u32, debug: &str) -> Bytes {
    let mut end = debug.len().min(MAX_DEBUG_LEN);
    while !debug.is_char_boundary(end) {
        end -= 1;
    }
    let debug = &debug.as_bytes()[..end];
    let payload_len = 8 + debug.len();
    let mut frame = BytesMut::with_capacity(FRAME_HEADER_LEN + payload_len);
    frame.put_uint(payload_len as u64, 3);
    frame.put_u8(0x7); // type GOAWAY
    frame.put_u8(0); // no flags
    frame.put_u32(0); // stream 0: connection level
    frame.put_u32(last_stream_id & 0x7fff_ffff);
    frame.put_u32(code);
    frame.put_slice(debug);
    frame.freeze()
}

struct Inner<T> {
    /// The connection; `None` once taken back.
    io: Option<T>,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    payload_left: usize,
}

impl<T> Inner<T> {
    fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.payload_left == 0
    }

    /// Follows h2's bytes through frame headers and payloads.
    fn track(&mut self, mut written: &[u8]) {
        while !written.is_empty() {
            if self.payload_left == 0 {
                let take = (FRAME_HEADER_LEN - self.header_len).min(written.len());
                self.header[self.header_len..self.header_len + take]
                    .copy_from_slice(&written[..take]);
                self.header_len += take;
                written = &written[take..];
                if self.header_len == FRAME_HEADER_LEN {
                    self.payload_left = usize::from(self.header[0]) << 16
                        | usize::from(self.header[1]) << 8
                        | usize::from(self.header[2]);
                    self.header_len = 0;
                }
            } else {
                let take = self.payload_left.min(written.len());
                self.payload_left -= take;
                written = &written[take..];
            }
        }
    }
}

/// The I/O handed to h2: reads and writes pass through; writes are followed frame by frame.
pub struct FrameTracker<T> {
    inner: Arc<Mutex<Inner<T>>>,
}

/// Takes the I/O back from a [`FrameTracker`] once h2 is done with it.
pub struct Takeback<T> {
    inner: Arc<Mutex<Inner<T>>>,
}

/// Wraps `io` for h2.
pub fn track<T>(io: T) -> (FrameTracker<T>, Takeback<T>) {
    let inner = Arc::new(Mutex::new(Inner {
        io: Some(io),
        header: [0; FRAME_HEADER_LEN],
        header_len: 0,
        payload_left: 0,
    }));
    (
        FrameTracker {
            inner: Arc::clone(&inner),
        },
        Takeback { inner },
    )
}

impl<T> Takeback<T> {
    /// The I/O, if h2 stopped writing between two frames (so that a frame may follow);
    /// `None` if it stopped inside one, or the I/O was already taken.
    pub fn take_at_boundary(&self) -> Option<T> {
        let mut inner = lock(&self.inner);
        if inner.at_boundary() {
            inner.io.take()
        } else {
            None
        }
    }
}

fn lock<T>(inner: &Mutex<Inner<T>>) -> MutexGuard<'_, Inner<T>> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

fn taken() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection taken back from h2")
}

impl<T: AsyncRead + Unpin> AsyncRead for FrameTracker<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match lock(&self.inner).io.as_mut() {
            Some(io) => Pin::new(io).poll_read(cx, buf),
            None => Poll::Ready(Err(taken())),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FrameTracker<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut inner = lock(&self.inner);
        let inner = &mut *inner;
        let Some(io) = inner.io.as_mut() else {
            return Poll::Ready(Err(taken()));
        };
        match Pin::new(io).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                inner.track(&buf[..n]);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match lock(&self.inner).io.as_mut() {
            Some(io) => Pin::new(io).poll_flush(cx),
            None => Poll::Ready(Err(taken())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match lock(&self.inner).io.as_mut() {
            Some(io) => Pin::new(io).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0, 0, payload.len() as u8, kind, 0, 0, 0, 0, 1];
        f.extend_from_slice(payload);
        f
    }

    #[tokio::test]
    async fn the_io_comes_back_between_frames_but_not_inside_one() {
        let (mut tracker, takeback) = track(Vec::new());
        let data = frame(0x0, b"hello world");
        tracker.write_all(&data[..4]).await.expect("write");
        assert!(
            takeback.take_at_boundary().is_none(),
            "inside a frame header"
        );
        tracker.write_all(&data[4..12]).await.expect("write");
        assert!(takeback.take_at_boundary().is_none(), "inside a payload");
        tracker.write_all(&data[12..]).await.expect("write");
        let io = takeback.take_at_boundary().expect("at a boundary");
        assert_eq!(io, data);
        assert!(
            tracker.write_all(b"x").await.is_err(),
            "h2 can no longer write"
        );
    }

    #[test]
    fn goaway_layout_follows_rfc_9113_section_6_8() {
        let f = goaway_frame(0x8000_0005, 7, "hi");
        assert_eq!(&f[..9], &[0, 0, 10, 7, 0, 0, 0, 0, 0]);
        assert_eq!(&f[9..13], &[0, 0, 0, 5], "reserved bit cleared");
        assert_eq!(&f[13..17], &[0, 0, 0, 7]);
        assert_eq!(&f[17..], b"hi");
    }

    #[test]
    fn long_debug_data_is_cut_on_a_character_boundary() {
        let f = goaway_frame(1, 0, &"é".repeat(1000));
        assert!(f.len() <= 9 + 8 + MAX_DEBUG_LEN);
        assert!(std::str::from_utf8(&f[17..]).is_ok());
    }
}
