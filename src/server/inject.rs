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

    // Bounded fuzzing of the frame writer (proptest). Default case counts keep these to a
    // couple of seconds; `PROPTEST_CASES=100000 cargo test --release --lib server::inject`
    // searches longer. Failures found are kept in `src/server/inject.proptest-regressions`.

    use std::task::Waker;

    use proptest::prelude::*;

    /// `default_cases`, unless the standard `PROPTEST_CASES` environment variable says
    /// otherwise.
    fn config(default_cases: u32) -> ProptestConfig {
        let mut config = ProptestConfig::default();
        if std::env::var_os("PROPTEST_CASES").is_none() {
            config.cases = default_cases;
        }
        config
    }

    /// A frame as the test generates it: type, flags, stream id (31 bits), payload length
    /// and the byte the payload is filled with.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct TestFrame {
        kind: u8,
        flags: u8,
        stream: u32,
        payload: Vec<u8>,
    }

    impl TestFrame {
        fn encode(&self, out: &mut Vec<u8>) {
            let len = self.payload.len();
            out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8]);
            out.push(self.kind);
            out.push(self.flags);
            out.extend_from_slice(&(self.stream & 0x7fff_ffff).to_be_bytes());
            out.extend_from_slice(&self.payload);
        }
    }

    fn test_frame() -> impl Strategy<Value = TestFrame> {
        (
            0u8..=9,
            any::<u8>(),
            0u32..=0x7fff_ffff,
            // Mostly small, sometimes up to the default SETTINGS_MAX_FRAME_SIZE (RFC 9113 §4.2).
            prop_oneof![4 => 0usize..64, 1 => 0usize..=16_384],
            any::<u8>(),
        )
            .prop_map(|(kind, flags, stream, len, fill)| TestFrame {
                kind,
                flags,
                stream,
                payload: vec![fill; len],
            })
    }

    /// Reads whole frames, as a peer does; an error if the bytes end inside one.
    fn parse_frames(mut bytes: &[u8]) -> Result<Vec<TestFrame>, String> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            if bytes.len() < FRAME_HEADER_LEN {
                return Err(format!("{} bytes of a frame header", bytes.len()));
            }
            let len =
                usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
            let rest = &bytes[FRAME_HEADER_LEN..];
            if rest.len() < len {
                return Err(format!("{} of {len} payload bytes", rest.len()));
            }
            frames.push(TestFrame {
                kind: bytes[3],
                flags: bytes[4],
                stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]),
                payload: rest[..len].to_vec(),
            });
            bytes = &rest[len..];
        }
        Ok(frames)
    }

    /// A connection that takes at most so many bytes per write, in turn (0: not ready now).
    struct ShortWrites {
        written: Vec<u8>,
        allowances: Vec<usize>,
        next: usize,
    }

    impl AsyncWrite for ShortWrites {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let allowance = self.allowances[self.next % self.allowances.len()];
            self.next += 1;
            if allowance == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = allowance.min(buf.len());
            self.written.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// The debug data `goaway_frame` keeps of `debug`: the longest prefix of at most 256
    /// bytes that ends on a character boundary.
    fn kept_debug(debug: &str) -> &[u8] {
        let mut end = debug.len().min(MAX_DEBUG_LEN);
        while !debug.is_char_boundary(end) {
            end -= 1;
        }
        &debug.as_bytes()[..end]
    }

    proptest! {
        #![proptest_config(config(1000))]

        /// h2 writes frames in pieces of any size, the connection takes what it can; the I/O
        /// comes back exactly when everything written so far is whole frames, and a GOAWAY
        /// written then leaves a stream a peer reads as whole frames.
        #[test]
        fn the_io_comes_back_exactly_at_frame_boundaries(
            frames in prop::collection::vec(test_frame(), 1..12),
            offers in prop::collection::vec(prop_oneof![1usize..12, 1usize..40_000], 1..16),
            allowances in prop::collection::vec(prop_oneof![4 => 1usize..20, 2 => 1usize..40_000, 1 => Just(0usize)], 1..16)
                .prop_filter("some progress", |a| a.iter().any(|&n| n > 0)),
            takes in prop::collection::vec(any::<bool>(), 1..32),
            (last_stream_id, code, debug) in (any::<u32>(), any::<u32>(), ".{0,40}"),
        ) {
            let mut stream = Vec::new();
            let mut boundaries = std::collections::BTreeSet::from([0usize]);
            for frame in &frames {
                frame.encode(&mut stream);
                boundaries.insert(stream.len());
            }
            let (mut tracker, takeback) = track(ShortWrites { written: Vec::new(), allowances, next: 0 });
            let mut cx = Context::from_waker(Waker::noop());
            let mut at = 0;
            let mut step = 0;
            let taken = loop {
                let wants_take = takes[step % takes.len()] || at == stream.len();
                if wants_take {
                    match takeback.take_at_boundary() {
                        Some(io) => {
                            prop_assert!(boundaries.contains(&at), "taken inside a frame at byte {at}");
                            break io;
                        }
                        None => prop_assert!(!boundaries.contains(&at), "refused at the boundary at byte {at}"),
                    }
                }
                let offer = offers[step % offers.len()].min(stream.len() - at);
                match Pin::new(&mut tracker).poll_write(&mut cx, &stream[at..at + offer]) {
                    Poll::Ready(Ok(n)) => at += n,
                    Poll::Ready(Err(e)) => return Err(TestCaseError::fail(format!("write failed: {e}"))),
                    Poll::Pending => {}
                }
                step += 1;
            };
            prop_assert_eq!(&taken.written[..], &stream[..at]);
            // h2 can no longer write once the I/O is taken.
            prop_assert!(matches!(
                Pin::new(&mut tracker).poll_write(&mut cx, b"x"),
                Poll::Ready(Err(ref e)) if e.kind() == io::ErrorKind::NotConnected
            ));
            prop_assert!(takeback.take_at_boundary().is_none(), "taken twice");
            let mut wire = taken.written;
            wire.extend_from_slice(&goaway_frame(last_stream_id, code, &debug));
            let read = parse_frames(&wire).map_err(TestCaseError::fail)?;
            let whole = frames.iter().take_while({
                let mut end = 0;
                move |f| {
                    end += FRAME_HEADER_LEN + f.payload.len();
                    end <= at
                }
            });
            let mut expected: Vec<TestFrame> = whole.cloned().collect();
            expected.push(TestFrame {
                kind: 0x7,
                flags: 0,
                stream: 0,
                payload: [
                    &(last_stream_id & 0x7fff_ffff).to_be_bytes()[..],
                    &code.to_be_bytes()[..],
                    kept_debug(&debug),
                ]
                .concat(),
            });
            prop_assert_eq!(read, expected);
        }

        /// RFC 9113 §6.8: length 8 + debug, type 0x7, no flags, stream 0, a reserved bit and
        /// 31-bit last-stream-id, a 32-bit error code, then the debug data; as h2 encodes and
        /// decodes it too.
        #[test]
        fn goaway_frames_follow_rfc_9113_section_6_8(
            last_stream_id in any::<u32>(),
            code in any::<u32>(),
            debug in prop_oneof![".{0,300}", "[é€😀a]{0,200}"],
        ) {
            let f = goaway_frame(last_stream_id, code, &debug);
            let kept = kept_debug(&debug);
            prop_assert!(kept.len() <= MAX_DEBUG_LEN);
            prop_assert!(std::str::from_utf8(kept).is_ok());
            if debug.len() <= MAX_DEBUG_LEN {
                prop_assert_eq!(kept, debug.as_bytes(), "short debug data is kept whole");
            } else {
                prop_assert!(kept.len() + 4 > MAX_DEBUG_LEN, "cut more than one character");
            }
            let len = 8 + kept.len();
            prop_assert_eq!(f.len(), FRAME_HEADER_LEN + len);
            prop_assert_eq!(&f[..3], &[(len >> 16) as u8, (len >> 8) as u8, len as u8][..]);
            prop_assert_eq!(f[3], 0x7, "type GOAWAY");
            prop_assert_eq!(f[4], 0, "no flags");
            prop_assert_eq!(&f[5..9], &[0, 0, 0, 0][..], "stream 0");
            let id = u32::from_be_bytes([f[9], f[10], f[11], f[12]]);
            prop_assert_eq!(id, last_stream_id & 0x7fff_ffff, "reserved bit clear");
            prop_assert_eq!(u32::from_be_bytes([f[13], f[14], f[15], f[16]]), code);
            prop_assert_eq!(&f[17..], kept);

            let head = h2::frame::Head::parse(&f[..FRAME_HEADER_LEN]);
            prop_assert_eq!(head.kind(), h2::frame::Kind::GoAway);
            let decoded = h2::frame::GoAway::load(head, &f[FRAME_HEADER_LEN..])
                .map_err(|e| TestCaseError::fail(format!("h2 rejects it: {e:?}")))?;
            prop_assert_eq!(u32::from(decoded.last_stream_id()), id);
            prop_assert_eq!(u32::from(decoded.reason()), code);
            prop_assert_eq!(&decoded.debug_data()[..], kept);
            let mut encoded = BytesMut::new();
            decoded.encode(&mut encoded);
            prop_assert_eq!(&encoded[..], &f[..], "h2 encodes the same frame");
        }
    }
}
