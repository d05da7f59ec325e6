//! Raw HTTP/2 frames where h2 has no API (a GOAWAY whose last-stream-id excludes a stream the
//! server already accepted; ORIGIN frames): an I/O wrapper under h2 that follows the frame
//! boundaries of what h2 writes and slips queued frames in between two frames.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

/// RFC 9113 §4.1: every frame starts with a 9-octet header.
const FRAME_HEADER_LEN: usize = 9;

/// A GOAWAY frame (RFC 9113 §6.8) with a chosen last-stream-id, error code and debug data.
pub fn goaway_frame(last_stream_id: u32, code: u32, debug: &str) -> Bytes {
    let payload_len = 8 + debug.len();
    let mut frame = BytesMut::with_capacity(FRAME_HEADER_LEN + payload_len);
    frame.put_uint(payload_len as u64, 3);
    frame.put_u8(0x7); // type GOAWAY
    frame.put_u8(0); // no flags
    frame.put_u32(0); // stream 0: connection level
    frame.put_u32(last_stream_id & 0x7fff_ffff);
    frame.put_u32(code);
    frame.put_slice(debug.as_bytes());
    frame.freeze()
}

struct Queued {
    /// Written only once at least this many of h2's own frames have gone out (so that the
    /// server's SETTINGS stays the first frame, RFC 9113 §3.4).
    after_frames: u64,
    bytes: Bytes,
}

struct Shared {
    queue: Mutex<VecDeque<Queued>>,
    flushed: watch::Sender<u64>,
}

/// Queues frames for an [`Injector`] and learns when they are on the wire.
#[derive(Clone)]
pub struct InjectHandle {
    shared: Arc<Shared>,
    pushed: Arc<Mutex<u64>>,
}

impl InjectHandle {
    /// Queues a frame; returns a ticket for [`InjectHandle::flushed`].
    pub fn push(&self, bytes: Bytes, after_frames: u64) -> u64 {
        let mut pushed = self.pushed.lock().unwrap_or_else(|p| p.into_inner());
        *pushed += 1;
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(Queued {
                after_frames,
                bytes,
            });
        *pushed
    }

    /// Waits until the frame with this ticket (and all before it) has been written and
    /// flushed.
    pub async fn flushed(&self, ticket: u64) {
        let mut rx = self.shared.flushed.subscribe();
        // An error means the injector is gone: nothing more will be written either way.
        let _ = rx.wait_for(|count| *count >= ticket).await;
    }
}

/// The wrapper: reads pass through; writes are cut at frame boundaries so that queued frames
/// can go out between two of h2's frames.
pub struct Injector<T> {
    inner: T,
    shared: Arc<Shared>,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    payload_left: usize,
    frames_written: u64,
    current: Option<(Bytes, usize)>,
    written_unflushed: u64,
    flushed_total: u64,
}

impl<T> Injector<T> {
    /// Wraps `inner`; the handle queues frames for it.
    pub fn new(inner: T) -> (Injector<T>, InjectHandle) {
        let (flushed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            flushed,
        });
        let handle = InjectHandle {
            shared: Arc::clone(&shared),
            pushed: Arc::new(Mutex::new(0)),
        };
        (
            Injector {
                inner,
                shared,
                header: [0; FRAME_HEADER_LEN],
                header_len: 0,
                payload_left: 0,
                frames_written: 0,
                current: None,
                written_unflushed: 0,
                flushed_total: 0,
            },
            handle,
        )
    }

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
                    if self.payload_left == 0 {
                        self.frames_written += 1;
                    }
                }
            } else {
                let take = self.payload_left.min(written.len());
                self.payload_left -= take;
                written = &written[take..];
                if self.payload_left == 0 {
                    self.frames_written += 1;
                }
            }
        }
    }

    /// How much of h2's next write may go out before the next frame boundary.
    fn until_boundary(&self, len: usize) -> usize {
        if self.payload_left > 0 {
            self.payload_left.min(len)
        } else {
            (FRAME_HEADER_LEN - self.header_len).min(len)
        }
    }
}

impl<T: AsyncWrite + Unpin> Injector<T> {
    /// Writes queued frames while at a frame boundary. Ready(Ok) once nothing is due.
    fn poll_inject(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.current.is_none() {
                if !self.at_boundary() {
                    return Poll::Ready(Ok(()));
                }
                let mut queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
                match queue.front() {
                    Some(q) if q.after_frames <= self.frames_written => {
                        self.current = queue.pop_front().map(|q| (q.bytes, 0));
                    }
                    _ => return Poll::Ready(Ok(())),
                }
            }
            let Some((bytes, offset)) = self.current.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            let n = match Pin::new(&mut self.inner).poll_write(cx, &bytes[*offset..]) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *offset += n;
            if *offset == bytes.len() {
                self.current = None;
                self.written_unflushed += 1;
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Injector<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Injector<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.poll_inject(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        let len = this.until_boundary(buf.len());
        match Pin::new(&mut this.inner).poll_write(cx, &buf[..len]) {
            Poll::Ready(Ok(n)) => {
                this.track(&buf[..n]);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_inject(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                if this.written_unflushed > 0 {
                    this.flushed_total += this.written_unflushed;
                    this.written_unflushed = 0;
                    this.shared.flushed.send_replace(this.flushed_total);
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![
            0,
            (payload.len() >> 8) as u8,
            payload.len() as u8,
            kind,
            0,
            0,
            0,
            0,
            1,
        ];
        f.extend_from_slice(payload);
        f
    }

    #[tokio::test]
    async fn queued_frames_land_between_frames_never_inside_one() {
        let (injector, handle) = Injector::new(Vec::new());
        let mut injector = injector;
        let settings = frame(0x4, &[]);
        let data = frame(0x0, b"hello world");
        injector.write_all(&settings).await.expect("write");
        let ticket = handle.push(goaway_frame(1, 0, "x"), 1);
        // h2 writes the DATA frame in pieces; the GOAWAY must come before it, whole.
        injector.write_all(&data[..4]).await.expect("write");
        injector.write_all(&data[4..]).await.expect("write");
        injector.flush().await.expect("flush");
        handle.flushed(ticket).await;
        let mut expected = settings.clone();
        expected.extend_from_slice(&goaway_frame(1, 0, "x"));
        expected.extend_from_slice(&data);
        assert_eq!(injector.inner, expected);
    }

    #[tokio::test]
    async fn a_frame_waits_for_the_servers_first_frame() {
        let (mut injector, handle) = Injector::new(Vec::new());
        handle.push(goaway_frame(0, 0, ""), 1);
        let settings = frame(0x4, &[0, 3, 0, 0, 0, 100]);
        injector.write_all(&settings).await.expect("write");
        injector.flush().await.expect("flush");
        assert_eq!(&injector.inner[..settings.len()], &settings[..]);
        assert_eq!(
            &injector.inner[settings.len()..],
            &goaway_frame(0, 0, "")[..]
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
}
