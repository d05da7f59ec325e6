//! Raw HTTP/2 frames where h2 has no API: ORIGIN (RFC 8336), ALTSVC (RFC 7838 §4) and a
//! GOAWAY with a chosen last-stream-id (RFC 9113 §6.8). h2 owns the connection's I/O, so the
//! connection goes through a [`FrameTracker`] that follows the frame boundaries of what h2
//! writes. Frames queued through the [`Injector`] handle go out at the next boundary between
//! two of h2's frames that is not inside a header block — inside one of h2's writes, or, when
//! h2 is idle, from [`Injector::poll_drain`] — so h2's frames are never split, and neither are
//! its header blocks: a HEADERS or PUSH_PROMISE without END_HEADERS and the CONTINUATION
//! frames up to the one with END_HEADERS stay contiguous (RFC 9113 §6.10), however many writes
//! h2 takes for them. HEADERS/CONTINUATION (whose HPACK state h2 owns) are never injected.
//!
//! After an injected GOAWAY, h2's own frames are filtered so that none contradicts it: a
//! later GOAWAY of h2's with an error code keeps its code and debug data but never names a
//! higher last-stream-id than any GOAWAY written before it; one with NO_ERROR that names no
//! lower id (h2's graceful close) says nothing new and is dropped; and RST_STREAM frames for
//! streams above that id are dropped (those streams are never answered). With nothing queued and no GOAWAY
//! injected, a write costs one lock and the header bookkeeping.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// RFC 9113 §4.1: every frame starts with a 9-octet header.
const FRAME_HEADER_LEN: usize = 9;

/// Debug data is for humans; keep the frame far below the smallest SETTINGS_MAX_FRAME_SIZE
/// (16 384, RFC 9113 §4.2).
const MAX_DEBUG_LEN: usize = crate::scenario::MAX_DEBUG_DATA_BYTES;

/// The largest payload every peer accepts (SETTINGS_MAX_FRAME_SIZE's initial value).
pub const MAX_PAYLOAD: usize = 16_384;

const HEADERS: u8 = 0x1;
const GOAWAY: u8 = 0x7;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const ALTSVC: u8 = 0xa;
const ORIGIN: u8 = 0xc;

/// RFC 9113 §6.5: the ACK flag of a SETTINGS frame.
const ACK: u8 = 0x1;

/// RFC 9113 §6.2, §6.6, §6.10: the END_HEADERS flag of HEADERS, PUSH_PROMISE and CONTINUATION.
const END_HEADERS: u8 = 0x4;

/// RFC 9113 §4.1: a stream identifier is 31 bits after a reserved bit.
const STREAM_ID_MASK: u32 = 0x7fff_ffff;

/// A frame that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The payload would exceed [`MAX_PAYLOAD`].
    #[error("the frame's payload would be {0} bytes, over the {MAX_PAYLOAD} every peer accepts")]
    TooLarge(usize),
    /// An origin longer than a 16-bit length can say.
    #[error("an origin of {0} bytes does not fit a 16-bit length")]
    OriginTooLong(usize),
}

fn frame_header(frame: &mut BytesMut, len: usize, kind: u8, stream: u32) {
    frame.put_uint(len as u64, 3);
    frame.put_u8(kind);
    frame.put_u8(0); // no flags
    frame.put_u32(stream & STREAM_ID_MASK);
}

/// The payload length a frame header names (RFC 9113 §4.1: 24 bits).
fn payload_len(header: &[u8]) -> usize {
    usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2])
}

/// Whether a header block is open once the frame with this header begins, given whether one
/// was open before (RFC 9113 §6.10): a HEADERS or PUSH_PROMISE without END_HEADERS opens one, a
/// CONTINUATION without it keeps it open; anything else leaves none open (a CONTINUATION with
/// END_HEADERS ends the block where its payload ends: the frame's own end is a boundary anyway).
fn header_block_open(header: &[u8], open: bool) -> bool {
    let end_headers = header[4] & END_HEADERS != 0;
    match header[3] {
        HEADERS | PUSH_PROMISE => !end_headers,
        CONTINUATION => open && !end_headers,
        _ => false,
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn cut(text: &str, max: usize) -> &[u8] {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text.as_bytes()[..end]
}

/// A GOAWAY frame (RFC 9113 §6.8) with a chosen last-stream-id, error code and debug data
/// (cut to 256 bytes).
pub fn goaway_frame(last_stream_id: u32, code: u32, debug: &str) -> Bytes {
    let debug = cut(debug, MAX_DEBUG_LEN);
    let payload_len = 8 + debug.len();
    let mut frame = BytesMut::with_capacity(FRAME_HEADER_LEN + payload_len);
    frame_header(&mut frame, payload_len, GOAWAY, 0);
    frame.put_u32(last_stream_id & STREAM_ID_MASK);
    frame.put_u32(code);
    frame.put_slice(debug);
    frame.freeze()
}

/// An ORIGIN frame (RFC 8336 §2.1): on stream 0, no flags, each origin as a 16-bit length and
/// its ASCII serialization. No origins makes an empty frame.
pub fn origin_frame<S: AsRef<str>>(origins: &[S]) -> Result<Bytes, FrameError> {
    let mut payload_len = 0;
    for origin in origins {
        let len = origin.as_ref().len();
        if len > usize::from(u16::MAX) {
            return Err(FrameError::OriginTooLong(len));
        }
        payload_len += 2 + len;
    }
    if payload_len > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(payload_len));
    }
    let mut frame = BytesMut::with_capacity(FRAME_HEADER_LEN + payload_len);
    frame_header(&mut frame, payload_len, ORIGIN, 0);
    for origin in origins {
        let origin = origin.as_ref().as_bytes();
        frame.put_u16(origin.len() as u16);
        frame.put_slice(origin);
    }
    Ok(frame.freeze())
}

/// An ALTSVC frame (RFC 7838 §4): a 16-bit origin length, the origin, then the Alt-Svc field
/// value. On stream 0 the origin names what the alternative is for; on a request's stream it
/// is empty (the stream's origin).
pub fn altsvc_frame(stream: u32, origin: &str, value: &str) -> Result<Bytes, FrameError> {
    if origin.len() > usize::from(u16::MAX) {
        return Err(FrameError::OriginTooLong(origin.len()));
    }
    let payload_len = 2 + origin.len() + value.len();
    if payload_len > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(payload_len));
    }
    let mut frame = BytesMut::with_capacity(FRAME_HEADER_LEN + payload_len);
    frame_header(&mut frame, payload_len, ALTSVC, stream);
    frame.put_u16(origin.len() as u16);
    frame.put_slice(origin.as_bytes());
    frame.put_slice(value.as_bytes());
    Ok(frame.freeze())
}

/// A frame waiting for the next boundary.
struct Queued {
    frame: Bytes,
    /// Bytes of it already written.
    written: usize,
    /// Held until the server's first SETTINGS frame is out (ORIGIN, RFC 8336 §2.1 wants it
    /// as early as possible, and a client accepts nothing before SETTINGS). Frames queued
    /// after it wait too: the queue keeps its order.
    after_settings: bool,
    /// What it is, and what runs once it is written whole.
    on_sent: OnSent,
}

/// What a queued frame is, for when it has been written whole.
enum OnSent {
    /// Any frame but an injected GOAWAY, and what to call.
    Frame(Option<Box<dyn FnOnce() + Send>>),
    /// An injected GOAWAY naming this last-stream-id (lowered before it is begun if a GOAWAY
    /// of h2's named a lower one meanwhile); the callback gets the id sent. h2's frames are
    /// filtered from then on.
    Goaway(u32, Box<dyn FnOnce(u32) + Send>),
}

struct Inner<T> {
    /// The connection.
    io: T,
    /// The header of h2's current frame, as far as seen (and, filtering a GOAWAY, the first
    /// 8 payload bytes: its last-stream-id and error code).
    header: [u8; FRAME_HEADER_LEN + 8],
    header_len: usize,
    /// Payload bytes of h2's current frame still to come.
    payload_left: usize,
    /// h2's current frame is part of a header block that goes on after it (RFC 9113 §6.10:
    /// nothing may come between its frames): no boundary until the block's last frame ends.
    in_header_block: bool,
    /// The current frame is a SETTINGS (not an ACK): its end marks `settings_done`.
    in_settings: bool,
    /// h2's first SETTINGS frame is out.
    settings_done: bool,
    /// The current frame is an h2 GOAWAY: the bytes of its last-stream-id seen so far.
    goaway_id: Option<([u8; 4], usize)>,
    /// The lowest last-stream-id of any GOAWAY written, h2's or injected (`u32::MAX`: none).
    floor: u32,
    /// An injected GOAWAY is out: h2's frames are filtered.
    filtering: bool,
    /// Filtering: the current frame (an RST_STREAM above `floor`) is dropped.
    dropping: bool,
    /// Filtering: bytes taken from h2 (a held header) not yet written.
    owed: [u8; FRAME_HEADER_LEN + 8],
    owed_at: usize,
    owed_len: usize,
    /// Frames to write at the next boundary.
    queue: VecDeque<Queued>,
    /// A drain waiting for a boundary.
    waker: Option<Waker>,
}

impl<T> Inner<T> {
    /// Between two of h2's frames, all of h2's bytes taken written, and not inside a header
    /// block: where a frame may be injected.
    fn at_boundary(&self) -> bool {
        self.header_len == 0
            && self.payload_left == 0
            && self.owed_at == self.owed_len
            && !self.in_header_block
    }

    /// Whether the queue's first frame may go out now.
    fn due(&self) -> bool {
        self.queue
            .front()
            .is_some_and(|q| !q.after_settings || self.settings_done)
    }

    fn push(&mut self, frame: Bytes, after_settings: bool, on_sent: OnSent) {
        self.queue.push_back(Queued {
            frame,
            written: 0,
            after_settings,
            on_sent,
        });
        self.wake_drain();
    }

    /// Wakes a drain waiting for a boundary, once one is here.
    fn wake_drain(&mut self) {
        if self.at_boundary()
            && let Some(waker) = self.waker.take()
        {
            waker.wake();
        }
    }

    /// A frame of h2's begins: notes what it is.
    fn begin(&mut self) {
        let h = &self.header;
        self.payload_left = payload_len(h);
        self.in_header_block = header_block_open(h, self.in_header_block);
        self.in_settings = h[3] == SETTINGS && h[4] & ACK == 0 && !self.settings_done;
        self.goaway_id = (h[3] == GOAWAY).then_some(([0; 4], 0));
        self.end_if_empty();
    }

    fn end_if_empty(&mut self) {
        if self.payload_left == 0 {
            if self.in_settings {
                self.settings_done = true;
                self.in_settings = false;
            }
            self.goaway_id = None;
            self.dropping = false;
        }
    }

    /// Follows h2's bytes, written as they are, through frame headers and payloads.
    fn track(&mut self, mut written: &[u8]) {
        while !written.is_empty() {
            if self.payload_left == 0 {
                let take = (FRAME_HEADER_LEN - self.header_len).min(written.len());
                self.header[self.header_len..self.header_len + take]
                    .copy_from_slice(&written[..take]);
                self.header_len += take;
                written = &written[take..];
                if self.header_len == FRAME_HEADER_LEN {
                    self.header_len = 0;
                    self.begin();
                }
            } else {
                let take = self.payload_left.min(written.len());
                if let Some((id, seen)) = &mut self.goaway_id {
                    let n = (4 - *seen).min(take);
                    id[*seen..*seen + n].copy_from_slice(&written[..n]);
                    *seen += n;
                    if *seen == 4 {
                        self.floor = self.floor.min(u32::from_be_bytes(*id) & STREAM_ID_MASK);
                        self.goaway_id = None;
                    }
                }
                self.payload_left -= take;
                written = &written[take..];
                self.end_if_empty();
            }
        }
    }

    /// Filtering: takes header bytes from h2 without writing them; once the header (and, for a
    /// GOAWAY, its last-stream-id) is whole, decides what is written. Returns the bytes taken.
    fn hold_header(&mut self, buf: &[u8]) -> usize {
        let mut taken = 0;
        loop {
            // A GOAWAY's last-stream-id and error code follow its header (RFC 9113 §6.8).
            let want = if self.header_len >= FRAME_HEADER_LEN
                && self.header[3] == GOAWAY
                && payload_len(&self.header) >= 8
            {
                FRAME_HEADER_LEN + 8
            } else {
                FRAME_HEADER_LEN
            };
            let take = (want - self.header_len).min(buf.len() - taken);
            self.header[self.header_len..self.header_len + take]
                .copy_from_slice(&buf[taken..taken + take]);
            self.header_len += take;
            taken += take;
            if self.header_len < want {
                return taken;
            }
            let goaway_id_next = want == FRAME_HEADER_LEN
                && self.header[3] == GOAWAY
                && payload_len(&self.header) >= 8;
            if !goaway_id_next {
                break;
            }
        }
        let held = self.header_len;
        let h = &mut self.header;
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & STREAM_ID_MASK;
        // h2's GOAWAY(NO_ERROR) naming no lower id says nothing the injected one did not
        // (h2 sends them on its graceful close): dropped. Others keep their code and debug
        // data, their id capped.
        let mut redundant = false;
        if held > FRAME_HEADER_LEN {
            let id = u32::from_be_bytes([h[9], h[10], h[11], h[12]]) & STREAM_ID_MASK;
            let code = u32::from_be_bytes([h[13], h[14], h[15], h[16]]);
            redundant = code == 0 && id >= self.floor;
            self.floor = self.floor.min(id);
            h[9..13].copy_from_slice(&self.floor.to_be_bytes());
        }
        self.header_len = 0;
        self.payload_left = payload_len(h) - (held - FRAME_HEADER_LEN);
        self.in_header_block = header_block_open(h, self.in_header_block);
        self.in_settings = h[3] == SETTINGS && h[4] & ACK == 0 && !self.settings_done;
        self.dropping = redundant || (h[3] == RST_STREAM && stream > self.floor);
        self.owed_at = 0;
        self.owed_len = if self.dropping { 0 } else { held };
        self.owed[..self.owed_len].copy_from_slice(&h[..self.owed_len]);
        self.end_if_empty();
        taken
    }
}

impl<T: AsyncWrite + Unpin> Inner<T> {
    /// Writes the bytes taken from h2 but held back (filtering).
    fn poll_owed(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.owed_at < self.owed_len {
            let owed = &self.owed[self.owed_at..self.owed_len];
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, owed))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.owed_at += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Writes the queued frames that are due, at a boundary; Pending if the connection is not
    /// ready (a frame begun stays first in the queue and is finished before anything else).
    fn poll_write_due(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.due() {
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            if front.written == 0
                && let OnSent::Goaway(id, _) = &mut front.on_sent
                && *id > self.floor
            {
                // A GOAWAY of h2's named a lower id since this one was queued: never increase
                // it (RFC 9113 §6.8).
                *id = self.floor;
                let mut frame = BytesMut::from(&front.frame[..]);
                frame[FRAME_HEADER_LEN..FRAME_HEADER_LEN + 4]
                    .copy_from_slice(&self.floor.to_be_bytes());
                front.frame = frame.freeze();
            }
            if front.written < front.frame.len() {
                let rest = &front.frame[front.written..];
                let n = ready!(Pin::new(&mut self.io).poll_write(cx, rest))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                front.written += n;
            }
            if front.written == front.frame.len()
                && let Some(sent) = self.queue.pop_front()
            {
                match sent.on_sent {
                    OnSent::Frame(on_sent) => {
                        if let Some(on_sent) = on_sent {
                            on_sent();
                        }
                    }
                    OnSent::Goaway(id, on_sent) => {
                        self.floor = self.floor.min(id);
                        self.filtering = true;
                        on_sent(id);
                    }
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// A write while frames are queued or h2's are filtered: at each boundary the due frames
    /// go first; h2's bytes go at most to the end of its current frame header or payload, so
    /// that the next boundary is seen. Inside a header block a frame's end is no boundary:
    /// h2's next frame follows at once.
    fn poll_write_slow(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut taken = 0;
        // Pending once nothing of h2's was taken; otherwise what was.
        macro_rules! step {
            ($poll:expr) => {
                match $poll {
                    Poll::Ready(Ok(n)) => n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending if taken > 0 => return Poll::Ready(Ok(taken)),
                    Poll::Pending => return Poll::Pending,
                }
            };
        }
        loop {
            step!(self.poll_owed(cx));
            if self.at_boundary() && self.due() {
                step!(self.poll_write_due(cx));
                continue;
            }
            let rest = &buf[taken..];
            if rest.is_empty() {
                return Poll::Ready(Ok(taken));
            }
            if self.payload_left == 0 && self.filtering {
                taken += self.hold_header(rest);
                continue;
            }
            if self.dropping {
                let n = self.payload_left.min(rest.len());
                self.payload_left -= n;
                self.end_if_empty();
                taken += n;
                continue;
            }
            let limit = if self.payload_left == 0 {
                FRAME_HEADER_LEN - self.header_len
            } else {
                self.payload_left
            };
            let piece = &rest[..limit.min(rest.len())];
            let n = step!(Pin::new(&mut self.io).poll_write(cx, piece));
            if n == 0 {
                return Poll::Ready(Ok(taken));
            }
            self.track(&piece[..n]);
            taken += n;
        }
    }
}

/// The I/O handed to h2: reads pass through; writes are followed frame by frame, and queued
/// frames slipped in between h2's.
pub struct FrameTracker<T> {
    inner: Arc<Mutex<Inner<T>>>,
}

/// The other handle on a [`FrameTracker`]'s connection: queues frames and writes them while
/// h2 is idle.
pub struct Injector<T> {
    inner: Arc<Mutex<Inner<T>>>,
}

/// Wraps `io` for h2.
pub fn track<T>(io: T) -> (FrameTracker<T>, Injector<T>) {
    let inner = Arc::new(Mutex::new(Inner {
        io,
        header: [0; FRAME_HEADER_LEN + 8],
        header_len: 0,
        payload_left: 0,
        in_header_block: false,
        in_settings: false,
        settings_done: false,
        goaway_id: None,
        floor: u32::MAX,
        filtering: false,
        dropping: false,
        owed: [0; FRAME_HEADER_LEN + 8],
        owed_at: 0,
        owed_len: 0,
        queue: VecDeque::new(),
        waker: None,
    }));
    (
        FrameTracker {
            inner: Arc::clone(&inner),
        },
        Injector { inner },
    )
}

impl<T> Injector<T> {
    /// Queues a frame (never HEADERS or CONTINUATION: h2 owns the HPACK state) for the next
    /// boundary between two of h2's frames, outside a header block — with `after_settings`,
    /// not before h2's first SETTINGS. `on_sent` runs once it is written whole, with the
    /// connection locked: it must not use this handle.
    pub fn inject(
        &self,
        frame: Bytes,
        after_settings: bool,
        on_sent: Option<Box<dyn FnOnce() + Send>>,
    ) {
        lock(&self.inner).push(frame, after_settings, OnSent::Frame(on_sent));
    }

    /// Queues a GOAWAY naming `last_stream_id`, or the lowest id a GOAWAY on this connection
    /// already named or will name (RFC 9113 §6.8: it never increases). Returns that id; should
    /// h2 write a GOAWAY with a lower one before this frame begins, it names that instead.
    /// `on_sent` gets the id sent, once the frame is written whole (with the connection
    /// locked: it must not use this handle). From then on h2's frames are filtered (see the
    /// module).
    pub fn inject_goaway(
        &self,
        last_stream_id: u32,
        code: u32,
        debug: &str,
        on_sent: impl FnOnce(u32) + Send + 'static,
    ) -> u32 {
        let mut inner = lock(&self.inner);
        let queued = inner.queue.iter().filter_map(|q| match q.on_sent {
            OnSent::Goaway(id, _) => Some(id),
            OnSent::Frame(_) => None,
        });
        let id = queued.fold((last_stream_id & STREAM_ID_MASK).min(inner.floor), u32::min);
        let frame = goaway_frame(id, code, debug);
        inner.push(frame, false, OnSent::Goaway(id, Box::new(on_sent)));
        id
    }

    /// Whether a queued frame may go out now (so that [`Injector::poll_drain`] has work).
    pub fn has_due(&self) -> bool {
        lock(&self.inner).due()
    }

    /// Writes the frames that may go out, once h2 is between two frames and not inside a
    /// header block, and flushes: for when h2 has nothing to write that would carry them.
    /// Ready when none is left due. Pending until then, and woken by the write of h2's that
    /// ends its frame or header block (h2 finishes a header block it began once the
    /// connection takes it).
    pub fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>
    where
        T: AsyncWrite + Unpin,
    {
        let mut inner = lock(&self.inner);
        let inner = &mut *inner;
        if !inner.due() {
            return Poll::Ready(Ok(()));
        }
        // What h2 handed over is h2's to finish, but it is committed: write it.
        ready!(inner.poll_owed(cx))?;
        if !inner.at_boundary() {
            inner.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        ready!(inner.poll_write_due(cx))?;
        Pin::new(&mut inner.io).poll_flush(cx)
    }
}

fn lock<T>(inner: &Mutex<Inner<T>>) -> MutexGuard<'_, Inner<T>> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T: AsyncRead + Unpin> AsyncRead for FrameTracker<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.inner).io).poll_read(cx, buf)
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
        if !inner.queue.is_empty() || inner.filtering {
            let written = inner.poll_write_slow(cx, buf);
            inner.wake_drain();
            return written;
        }
        let n = ready!(Pin::new(&mut inner.io).poll_write(cx, buf))?;
        inner.track(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut inner = lock(&self.inner);
        let inner = &mut *inner;
        if !inner.queue.is_empty() || inner.filtering {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            let written = inner.poll_write_slow(cx, first);
            inner.wake_drain();
            return written;
        }
        let n = ready!(Pin::new(&mut inner.io).poll_write_vectored(cx, bufs))?;
        let mut left = n;
        for buf in bufs {
            if left == 0 {
                break;
            }
            let take = left.min(buf.len());
            inner.track(&buf[..take]);
            left -= take;
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        lock(&self.inner).io.is_write_vectored()
    }

    /// Writes what was taken from h2 but held back (filtering) before flushing: h2 counts it
    /// as written.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = lock(&self.inner);
        let inner = &mut *inner;
        let owed = inner.poll_owed(cx);
        inner.wake_drain();
        ready!(owed)?;
        Pin::new(&mut inner.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = lock(&self.inner);
        let inner = &mut *inner;
        ready!(inner.poll_owed(cx))?;
        Pin::new(&mut inner.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use proptest::prelude::*;

    use super::*;

    /// A frame as read off the wire: type, flags, the stream field as sent, and the payload.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct TestFrame {
        kind: u8,
        flags: u8,
        stream: u32,
        payload: Vec<u8>,
    }

    impl TestFrame {
        fn new(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Self {
            TestFrame {
                kind,
                flags,
                stream,
                payload: payload.to_vec(),
            }
        }

        fn encode(&self, out: &mut Vec<u8>) {
            let len = self.payload.len();
            out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8]);
            out.push(self.kind);
            out.push(self.flags);
            out.extend_from_slice(&self.stream.to_be_bytes());
            out.extend_from_slice(&self.payload);
        }

        fn bytes(&self) -> Vec<u8> {
            let mut out = Vec::new();
            self.encode(&mut out);
            out
        }

        /// A GOAWAY's last-stream-id without the reserved bit.
        fn last_stream_id(&self) -> u32 {
            let p = &self.payload;
            u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & STREAM_ID_MASK
        }
    }

    /// Reads whole frames, as a peer does, with the offset each starts at; an error if the
    /// bytes end inside one.
    fn parse_frames(bytes: &[u8]) -> Result<Vec<(usize, TestFrame)>, String> {
        let mut frames = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            if rest.len() < FRAME_HEADER_LEN {
                return Err(format!("{} bytes of a frame header at {at}", rest.len()));
            }
            let len = payload_len(rest);
            let payload = &rest[FRAME_HEADER_LEN..];
            if payload.len() < len {
                return Err(format!("{} of {len} payload bytes at {at}", payload.len()));
            }
            let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]);
            frames.push((
                at,
                TestFrame::new(rest[3], rest[4], stream, &payload[..len]),
            ));
            at += FRAME_HEADER_LEN + len;
        }
        Ok(frames)
    }

    fn frames_of(bytes: &[u8]) -> Vec<TestFrame> {
        parse_frames(bytes)
            .expect("whole frames")
            .into_iter()
            .map(|(_, f)| f)
            .collect()
    }

    /// What the connection has been sent, shared with `on_sent` callbacks.
    type Wire = Arc<Mutex<Vec<u8>>>;

    fn written(wire: &Wire) -> Vec<u8> {
        wire.lock().expect("wire").clone()
    }

    /// A connection that takes at most so many bytes per write, in turn (0: not ready now),
    /// across the slices of a vectored write.
    struct ShortWrites {
        written: Wire,
        allowances: Vec<usize>,
        next: usize,
    }

    impl ShortWrites {
        fn new(allowances: Vec<usize>) -> (Self, Wire) {
            let written = Wire::default();
            let io = ShortWrites {
                written: Arc::clone(&written),
                allowances,
                next: 0,
            };
            (io, written)
        }

        /// How much the next write may take; `None` (and a wake-up) when it is not ready.
        fn allowance(&mut self, cx: &mut Context<'_>) -> Option<usize> {
            let allowance = self.allowances[self.next % self.allowances.len()];
            self.next += 1;
            if allowance == 0 {
                cx.waker().wake_by_ref();
                return None;
            }
            Some(allowance)
        }
    }

    impl AsyncWrite for ShortWrites {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let Some(allowance) = self.allowance(cx) else {
                return Poll::Pending;
            };
            let n = allowance.min(buf.len());
            self.written
                .lock()
                .expect("wire")
                .extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let Some(mut left) = self.allowance(cx) else {
                return Poll::Pending;
            };
            let mut written = self.written.lock().expect("wire");
            let mut n = 0;
            for buf in bufs {
                let take = left.min(buf.len());
                written.extend_from_slice(&buf[..take]);
                n += take;
                left -= take;
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    type Tracker = FrameTracker<ShortWrites>;

    /// A tracked connection that takes everything at once.
    fn tracked() -> (Tracker, Injector<ShortWrites>, Wire) {
        tracked_with(vec![usize::MAX])
    }

    fn tracked_with(allowances: Vec<usize>) -> (Tracker, Injector<ShortWrites>, Wire) {
        let (io, wire) = ShortWrites::new(allowances);
        let (tracker, injector) = track(io);
        (tracker, injector, wire)
    }

    fn noop_cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    /// Writes all of `bytes` as h2 does, `piece` bytes at most per write, polling again after
    /// Pending.
    fn write_all(tracker: &mut Tracker, bytes: &[u8], piece: usize) {
        let mut cx = noop_cx();
        let mut at = 0;
        for _ in 0..1_000_000 {
            if at == bytes.len() {
                return;
            }
            let end = bytes.len().min(at.saturating_add(piece));
            match Pin::new(&mut *tracker).poll_write(&mut cx, &bytes[at..end]) {
                Poll::Ready(Ok(n)) => {
                    assert!(n > 0, "no progress");
                    at += n;
                }
                Poll::Ready(Err(e)) => panic!("write failed: {e}"),
                Poll::Pending => {}
            }
        }
        panic!("stuck at byte {at} of {}", bytes.len());
    }

    fn flush(tracker: &mut Tracker) {
        let mut cx = noop_cx();
        for _ in 0..1_000_000 {
            match Pin::new(&mut *tracker).poll_flush(&mut cx) {
                Poll::Ready(result) => return result.expect("flush"),
                Poll::Pending => {}
            }
        }
        panic!("flush stuck");
    }

    fn drain(injector: &Injector<ShortWrites>) {
        let mut cx = noop_cx();
        for _ in 0..1_000_000 {
            match injector.poll_drain(&mut cx) {
                Poll::Ready(result) => return result.expect("drain"),
                Poll::Pending => {}
            }
        }
        panic!("drain stuck");
    }

    /// What the connection had been sent each time an `on_sent` ran (and a GOAWAY's id).
    type Log<T> = Arc<Mutex<Vec<T>>>;

    /// An `on_sent` callback that notes how much the connection had been sent when it ran.
    fn recorder(wire: &Wire) -> (Log<usize>, Box<dyn FnOnce() + Send>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (l, w) = (Arc::clone(&log), Arc::clone(wire));
        let on_sent = Box::new(move || {
            let len = w.lock().expect("wire").len();
            l.lock().expect("log").push(len);
        });
        (log, on_sent)
    }

    /// Same for a GOAWAY's `on_sent`, with the id it was given.
    fn goaway_recorder(wire: &Wire) -> (Log<(usize, u32)>, impl FnOnce(u32) + Send + 'static) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (l, w) = (Arc::clone(&log), Arc::clone(wire));
        let on_sent = move |id| {
            let len = w.lock().expect("wire").len();
            l.lock().expect("log").push((len, id));
        };
        (log, on_sent)
    }

    struct CountWakes(AtomicUsize);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    // h2's own frames, as h2 encodes them.

    fn h2_settings() -> Vec<u8> {
        let mut settings = h2::frame::Settings::default();
        settings.set_initial_window_size(Some(1 << 20));
        settings.set_max_concurrent_streams(Some(100));
        let mut out = BytesMut::new();
        settings.encode(&mut out);
        out.to_vec()
    }

    fn h2_settings_ack() -> Vec<u8> {
        let mut out = BytesMut::new();
        h2::frame::Settings::ack().encode(&mut out);
        out.to_vec()
    }

    fn h2_window_update(stream: u32, increment: u32) -> Vec<u8> {
        let mut out = BytesMut::new();
        h2::frame::WindowUpdate::new(stream.into(), increment).encode(&mut out);
        out.to_vec()
    }

    fn h2_goaway(last_stream_id: u32, code: u32, debug: &'static str) -> Vec<u8> {
        let frame = h2::frame::GoAway::with_debug_data(
            last_stream_id.into(),
            code.into(),
            Bytes::from_static(debug.as_bytes()),
        );
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        out.to_vec()
    }

    fn h2_reset(stream: u32, code: u32) -> Vec<u8> {
        let mut out = BytesMut::new();
        h2::frame::Reset::new(stream.into(), code.into()).encode(&mut out);
        out.to_vec()
    }

    /// A DATA frame (h2 encodes those only inside its codec).
    fn data(stream: u32, payload: &[u8]) -> Vec<u8> {
        TestFrame::new(0x0, 0, stream, payload).bytes()
    }

    // h2's decoders, as a second opinion on what was written.

    fn head(frame: &TestFrame) -> (h2::frame::Head, Vec<u8>) {
        let bytes = frame.bytes();
        let head = h2::frame::Head::parse(&bytes[..FRAME_HEADER_LEN]);
        (head, bytes[FRAME_HEADER_LEN..].to_vec())
    }

    fn decode_goaway(frame: &TestFrame) -> (u32, u32, Vec<u8>) {
        let (head, payload) = head(frame);
        assert_eq!(head.kind(), h2::frame::Kind::GoAway);
        let goaway = h2::frame::GoAway::load(head, &payload).expect("h2 reads a GOAWAY");
        (
            goaway.last_stream_id().into(),
            goaway.reason().into(),
            goaway.debug_data().to_vec(),
        )
    }

    fn decode_reset(frame: &TestFrame) -> (u32, u32) {
        let (head, payload) = head(frame);
        assert_eq!(head.kind(), h2::frame::Kind::Reset);
        let reset = h2::frame::Reset::load(head, &payload).expect("h2 reads an RST_STREAM");
        (reset.stream_id().into(), reset.reason().into())
    }

    fn decode_settings(frame: &TestFrame) -> h2::frame::Settings {
        let (head, payload) = head(frame);
        assert_eq!(head.kind(), h2::frame::Kind::Settings);
        h2::frame::Settings::load(head, &payload).expect("h2 reads a SETTINGS")
    }

    fn decode_window_update(frame: &TestFrame) -> (u32, u32) {
        let (head, payload) = head(frame);
        assert_eq!(head.kind(), h2::frame::Kind::WindowUpdate);
        let update =
            h2::frame::WindowUpdate::load(head, &payload).expect("h2 reads a WINDOW_UPDATE");
        (update.stream_id().into(), update.size_increment())
    }

    // The encoders.

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

    #[test]
    fn origin_layout_follows_rfc_8336_section_2_1() {
        let f = origin_frame(&["https://a.example", "http://b.example:8080"]).expect("frame");
        let mut expected = vec![0, 0, 2 + 17 + 2 + 21, 0xc, 0, 0, 0, 0, 0];
        expected.extend_from_slice(&[0, 17]);
        expected.extend_from_slice(b"https://a.example");
        expected.extend_from_slice(&[0, 21]);
        expected.extend_from_slice(b"http://b.example:8080");
        assert_eq!(&f[..], &expected[..]);

        let empty = origin_frame::<&str>(&[]).expect("an empty frame");
        assert_eq!(
            &empty[..],
            &[0, 0, 0, 0xc, 0, 0, 0, 0, 0],
            "length 0, stream 0"
        );

        let long = "a".repeat(usize::from(u16::MAX) + 1);
        assert_eq!(
            origin_frame(&[long.as_str()]),
            Err(FrameError::OriginTooLong(long.len()))
        );
        // 2 + 16 382 bytes fill the payload exactly; one byte more does not fit.
        let fits = "o".repeat(MAX_PAYLOAD - 2);
        let f = origin_frame(&[fits.as_str()]).expect("a full frame");
        assert_eq!(f.len(), FRAME_HEADER_LEN + MAX_PAYLOAD);
        assert_eq!(payload_len(&f), MAX_PAYLOAD);
        let over = "o".repeat(MAX_PAYLOAD - 1);
        assert_eq!(
            origin_frame(&[over.as_str()]),
            Err(FrameError::TooLarge(MAX_PAYLOAD + 1))
        );
        assert_eq!(
            origin_frame(&[&fits[..100], &fits[..]]),
            Err(FrameError::TooLarge(2 + 100 + MAX_PAYLOAD))
        );
    }

    #[test]
    fn altsvc_layout_follows_rfc_7838_section_4() {
        // On stream 0 the origin names what the alternative is for.
        let f = altsvc_frame(0, "https://a.example", "h3=\":443\"").expect("frame");
        let mut expected = vec![0, 0, 2 + 17 + 9, 0xa, 0, 0, 0, 0, 0, 0, 17];
        expected.extend_from_slice(b"https://a.example");
        expected.extend_from_slice(b"h3=\":443\"");
        assert_eq!(&f[..], &expected[..]);

        // On a request's stream the origin is empty.
        let f = altsvc_frame(0x8000_0003, "", "clear").expect("frame");
        let mut expected = vec![0, 0, 2 + 5, 0xa, 0, 0, 0, 0, 3, 0, 0];
        expected.extend_from_slice(b"clear");
        assert_eq!(&f[..], &expected[..], "reserved bit cleared");
        let head = h2::frame::Head::parse(&f[..FRAME_HEADER_LEN]);
        assert_eq!(u32::from(head.stream_id()), 3);
        assert_eq!(head.flag(), 0);

        let long = "a".repeat(usize::from(u16::MAX) + 1);
        assert_eq!(
            altsvc_frame(0, &long, ""),
            Err(FrameError::OriginTooLong(long.len()))
        );
        let value = "v".repeat(MAX_PAYLOAD - 2);
        assert_eq!(
            altsvc_frame(1, "", &value).map(|f| f.len()),
            Ok(9 + MAX_PAYLOAD)
        );
        assert_eq!(
            altsvc_frame(0, "o", &value),
            Err(FrameError::TooLarge(MAX_PAYLOAD + 1))
        );
    }

    // Injection, in memory.

    #[test]
    fn origin_goes_right_after_the_first_settings_in_a_shared_buffer() {
        let (mut tracker, injector, wire) = tracked();
        let origin = origin_frame(&["https://a.example"]).expect("frame");
        injector.inject(origin.clone(), true, None);
        assert!(!injector.has_due(), "not before SETTINGS");
        drain(&injector);
        assert!(written(&wire).is_empty());

        // h2's SETTINGS and WINDOW_UPDATE in one write buffer.
        let mut buffer = h2_settings();
        buffer.extend_from_slice(&h2_window_update(0, 1 << 16));
        write_all(&mut tracker, &buffer, usize::MAX);
        let frames = frames_of(&written(&wire));
        assert_eq!(frames.len(), 3);
        let settings = decode_settings(&frames[0]);
        assert!(!settings.is_ack());
        assert_eq!(settings.initial_window_size(), Some(1 << 20));
        assert_eq!(frames[1].bytes(), origin.to_vec());
        assert_eq!(decode_window_update(&frames[2]), (0, 1 << 16));
        assert!(!injector.has_due());
    }

    #[test]
    fn a_settings_ack_is_not_the_first_settings() {
        let (mut tracker, injector, wire) = tracked();
        let origin = origin_frame(&["https://a.example"]).expect("frame");
        injector.inject(origin.clone(), true, None);
        write_all(&mut tracker, &h2_settings_ack(), usize::MAX);
        write_all(&mut tracker, &data(1, b"body"), usize::MAX);
        assert!(!injector.has_due());
        write_all(&mut tracker, &h2_settings(), usize::MAX);
        let frames = frames_of(&written(&wire));
        assert_eq!(frames.len(), 4);
        assert!(decode_settings(&frames[0]).is_ack());
        assert_eq!(frames[1].kind, 0x0);
        assert!(!decode_settings(&frames[2]).is_ack());
        assert_eq!(frames[3].bytes(), origin.to_vec());
    }

    #[test]
    fn altsvc_injected_inside_a_frame_goes_out_at_the_next_boundary() {
        let (mut tracker, injector, wire) = tracked();
        let first = data(1, b"0123456789");
        let second = data(3, b"abc");
        // h2's first write: a vectored one whose slices cut the header (the fast path follows
        // frames across slices).
        let slices = [
            io::IoSlice::new(&first[..4]),
            io::IoSlice::new(&first[4..12]),
        ];
        let polled = Pin::new(&mut tracker).poll_write_vectored(&mut noop_cx(), &slices);
        assert!(matches!(polled, Poll::Ready(Ok(12))));
        let altsvc = altsvc_frame(1, "", "h3=\":443\"").expect("frame");
        injector.inject(altsvc.clone(), false, None);
        assert!(injector.has_due());
        let mut rest = first[12..].to_vec();
        rest.extend_from_slice(&second);
        write_all(&mut tracker, &rest, usize::MAX);
        assert_eq!(
            frames_of(&written(&wire)),
            frames_of(&[&first[..], &altsvc[..], &second[..]].concat())
        );
    }

    #[test]
    fn poll_drain_writes_a_frame_while_h2_is_idle() {
        let (mut tracker, injector, wire) = tracked();
        write_all(&mut tracker, &data(1, b"body"), usize::MAX);
        let altsvc = altsvc_frame(0, "https://a.example", "clear").expect("frame");
        injector.inject(altsvc.clone(), false, None);
        assert!(injector.has_due());
        assert!(matches!(
            injector.poll_drain(&mut noop_cx()),
            Poll::Ready(Ok(()))
        ));
        assert!(!injector.has_due());
        assert_eq!(
            written(&wire),
            [&data(1, b"body")[..], &altsvc[..]].concat()
        );
    }

    #[test]
    fn poll_drain_waits_inside_a_frame_and_is_woken_at_the_boundary() {
        // Writes: h2's 5 bytes; h2's other 4 header bytes; its payload; the ALTSVC (not ready
        // yet); the ALTSVC again.
        let (mut tracker, injector, wire) =
            tracked_with(vec![usize::MAX, usize::MAX, usize::MAX, 0, usize::MAX]);
        let frame = data(1, b"body");
        write_all(&mut tracker, &frame[..5], usize::MAX);
        let altsvc = altsvc_frame(0, "https://a.example", "clear").expect("frame");
        injector.inject(altsvc.clone(), false, None);
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        assert!(injector.poll_drain(&mut cx).is_pending(), "inside a header");
        assert_eq!(written(&wire), &frame[..5]);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);

        // h2 ends its frame; the ALTSVC cannot go yet, the drain is woken.
        let polled = Pin::new(&mut tracker).poll_write(&mut noop_cx(), &frame[5..]);
        assert!(matches!(polled, Poll::Ready(Ok(n)) if n == frame.len() - 5));
        assert_eq!(written(&wire), frame);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert!(matches!(injector.poll_drain(&mut cx), Poll::Ready(Ok(()))));
        assert_eq!(written(&wire), [&frame[..], &altsvc[..]].concat());
    }

    #[test]
    fn an_injected_goaway_caps_the_id_of_h2s_later_goaways() {
        for allowance in [1, 3, usize::MAX] {
            for piece in [1, 4, 9, 11, 13, 14, usize::MAX] {
                let (mut tracker, injector, wire) = tracked_with(vec![allowance]);
                write_all(&mut tracker, &h2_settings(), piece);
                assert_eq!(injector.inject_goaway(3, 0, "inj", |_| {}), 3);
                drain(&injector);
                // h2's graceful close (NO_ERROR, the highest id) says nothing new: dropped;
                // an error keeps its code, its id capped; a lower id always goes.
                let h2s = [
                    h2_goaway(0x7fff_ffff, 0, ""),
                    h2_goaway(0x7fff_ffff, 1, "h2 bye"),
                    h2_goaway(1, 2, "lower"),
                    h2_goaway(5, 0, ""),
                    h2_goaway(0, 0, "last"),
                ]
                .concat();
                write_all(&mut tracker, &h2s, piece);
                flush(&mut tracker);
                let frames = frames_of(&written(&wire));
                assert_eq!(frames.len(), 5, "allowance {allowance}, piece {piece}");
                assert_eq!(decode_goaway(&frames[1]), (3, 0, b"inj".to_vec()));
                assert_eq!(decode_goaway(&frames[2]), (3, 1, b"h2 bye".to_vec()));
                assert_eq!(decode_goaway(&frames[3]), (1, 2, b"lower".to_vec()));
                assert_eq!(decode_goaway(&frames[4]), (0, 0, b"last".to_vec()));
            }
        }
    }

    #[test]
    fn rst_stream_above_the_goaway_is_dropped() {
        for piece in [1, 5, 13, usize::MAX] {
            let (mut tracker, injector, wire) = tracked();
            write_all(&mut tracker, &h2_settings(), usize::MAX);
            injector.inject_goaway(5, 0, "", |_| {});
            drain(&injector);
            let h2s = [
                h2_reset(7, 8),
                h2_reset(5, 8),
                h2_reset(3, 2),
                h2_reset(9, 8),
                h2_reset(6, 8),
                data(7, b"x"),
            ]
            .concat();
            write_all(&mut tracker, &h2s, piece);
            let frames = frames_of(&written(&wire));
            assert_eq!(frames.len(), 5, "piece {piece}");
            assert_eq!(decode_goaway(&frames[1]).0, 5);
            assert_eq!(decode_reset(&frames[2]), (5, 8));
            assert_eq!(decode_reset(&frames[3]), (3, 2));
            assert_eq!(
                frames[4].bytes(),
                data(7, b"x"),
                "only RST_STREAM is filtered"
            );
        }
    }

    #[test]
    fn inject_goaway_never_raises_the_last_stream_id() {
        let (mut tracker, injector, wire) = tracked();
        write_all(&mut tracker, &h2_settings(), usize::MAX);
        let (log, on_sent) = goaway_recorder(&wire);
        assert_eq!(injector.inject_goaway(5, 0, "a", on_sent), 5);
        let (raised, on_sent) = goaway_recorder(&wire);
        assert_eq!(injector.inject_goaway(9, 0, "b", on_sent), 5, "clamped");
        let (lowered, on_sent) = goaway_recorder(&wire);
        assert_eq!(injector.inject_goaway(2, 0, "c", on_sent), 2);
        drain(&injector);
        let (late, on_sent) = goaway_recorder(&wire);
        assert_eq!(injector.inject_goaway(0x8000_0007, 0, "d", on_sent), 2);
        drain(&injector);
        let ids: Vec<u32> = frames_of(&written(&wire))[1..]
            .iter()
            .map(|f| decode_goaway(f).0)
            .collect();
        assert_eq!(ids, [5, 5, 2, 2]);
        for (log, id) in [(log, 5), (raised, 5), (lowered, 2), (late, 2)] {
            let log = log.lock().expect("log");
            assert_eq!(log.len(), 1);
            assert_eq!(log[0].1, id);
        }
    }

    #[test]
    fn an_injected_goaway_is_lowered_to_a_goaway_h2_wrote_meanwhile() {
        let (mut tracker, injector, wire) = tracked();
        let h2s = h2_goaway(2, 0, "h2");
        // h2's GOAWAY has begun, its last-stream-id is not whole yet.
        write_all(&mut tracker, &h2s[..11], usize::MAX);
        let (log, on_sent) = goaway_recorder(&wire);
        assert_eq!(injector.inject_goaway(9, 1, "inj", on_sent), 9);
        write_all(&mut tracker, &h2s[11..], usize::MAX);
        let frames = frames_of(&written(&wire));
        assert_eq!(frames.len(), 2);
        assert_eq!(decode_goaway(&frames[1]), (2, 1, b"inj".to_vec()));
        assert_eq!(log.lock().expect("log")[..], [(written(&wire).len(), 2)]);
        // Once it is whole, the next one is clamped when queued.
        assert_eq!(injector.inject_goaway(9, 1, "inj", |_| {}), 2);
    }

    #[test]
    fn on_sent_runs_once_after_the_frame_is_written_whole() {
        let (mut tracker, injector, wire) = tracked_with(vec![1, 1, 0]);
        write_all(&mut tracker, &h2_settings(), usize::MAX);
        let start = written(&wire).len();
        let origin = origin_frame(&["https://a.example"]).expect("frame");
        let (log, on_sent) = recorder(&wire);
        injector.inject(origin.clone(), true, Some(on_sent));
        let (goaway_log, on_sent) = goaway_recorder(&wire);
        injector.inject_goaway(1, 0, "bye", on_sent);
        let origin_end = start + origin.len();
        let goaway_end = origin_end + goaway_frame(1, 0, "bye").len();
        let mut cx = noop_cx();
        // The ORIGIN from drains, the GOAWAY inside h2's write.
        while written(&wire).len() < origin_end {
            let polled = injector.poll_drain(&mut cx);
            let sent = log.lock().expect("log").clone();
            if written(&wire).len() < origin_end {
                assert!(polled.is_pending());
                assert!(sent.is_empty(), "ran before the frame was whole");
            } else {
                assert_eq!(sent, [origin_end]);
            }
            assert!(goaway_log.lock().expect("log").is_empty());
        }
        write_all(&mut tracker, &data(1, b"after"), usize::MAX);
        assert_eq!(log.lock().expect("log")[..], [origin_end]);
        assert_eq!(goaway_log.lock().expect("log")[..], [(goaway_end, 1)]);
        let frames = frames_of(&written(&wire));
        assert_eq!(frames.len(), 4);
        assert_eq!(frames[3].bytes(), data(1, b"after"));
    }

    #[test]
    fn held_back_bytes_are_written_by_a_flush_or_a_drain() {
        // Not ready every other write.
        let (mut tracker, injector, wire) = tracked_with(vec![usize::MAX, 0]);
        injector.inject_goaway(1, 0, "", |_| {});
        drain(&injector);
        // Filtering holds h2's header back until it is whole; the connection is not ready
        // for it, yet h2 counts it as written.
        let ack = h2_settings_ack();
        let polled = Pin::new(&mut tracker).poll_write(&mut noop_cx(), &ack);
        assert!(matches!(polled, Poll::Ready(Ok(9))));
        assert_eq!(frames_of(&written(&wire)).len(), 1);
        flush(&mut tracker);
        assert_eq!(frames_of(&written(&wire)).len(), 2, "h2's flush writes it");

        let polled = Pin::new(&mut tracker).poll_write(&mut noop_cx(), &ack);
        assert!(matches!(polled, Poll::Ready(Ok(9))));
        let altsvc = altsvc_frame(0, "https://a.example", "clear").expect("frame");
        injector.inject(altsvc.clone(), false, None);
        drain(&injector);
        let frames = frames_of(&written(&wire));
        assert_eq!(frames.len(), 4, "a drain writes it, then the ALTSVC");
        assert!(decode_settings(&frames[2]).is_ack());
        assert_eq!(frames[3].bytes(), altsvc.to_vec());
    }

    #[test]
    fn filtering_still_finds_the_first_settings() {
        for settings in [h2_settings(), TestFrame::new(SETTINGS, 0, 0, &[]).bytes()] {
            let (mut tracker, injector, wire) = tracked();
            injector.inject_goaway(0, 0, "", |_| {});
            drain(&injector);
            let origin = origin_frame(&["https://a.example"]).expect("frame");
            injector.inject(origin.clone(), true, None);
            let buffer = [&settings[..], &h2_window_update(0, 1)[..]].concat();
            write_all(&mut tracker, &buffer, usize::MAX);
            let frames = frames_of(&written(&wire));
            assert_eq!(frames.len(), 4);
            assert_eq!(frames[1].bytes(), settings);
            assert_eq!(frames[2].bytes(), origin.to_vec());
        }
    }

    /// A header block of h2's (RFC 9113 §6.10) as three frames: a HEADERS (END_STREAM, no
    /// END_HEADERS) or a PUSH_PROMISE (promising stream 2, no END_HEADERS), a CONTINUATION
    /// without END_HEADERS, and one with it.
    fn header_block(kind: u8, stream: u32) -> [Vec<u8>; 3] {
        let first = if kind == PUSH_PROMISE {
            TestFrame::new(PUSH_PROMISE, 0, stream, &[0, 0, 0, 2, 0x82, 0x87])
        } else {
            TestFrame::new(HEADERS, 0x1, stream, &[0x88, 0x5f])
        };
        [
            first.bytes(),
            TestFrame::new(CONTINUATION, 0, stream, &[0x0f, 0x10]).bytes(),
            TestFrame::new(CONTINUATION, END_HEADERS, stream, &[0x61]).bytes(),
        ]
    }

    #[test]
    fn a_frame_queued_inside_a_header_block_goes_out_after_it() {
        for kind in [HEADERS, PUSH_PROMISE] {
            for allowance in [1, 4, usize::MAX] {
                for piece in [1, 9, 10, usize::MAX] {
                    let (mut tracker, injector, wire) = tracked_with(vec![allowance]);
                    let [first, middle, last] = header_block(kind, 1);
                    write_all(&mut tracker, &first, piece);
                    let altsvc = altsvc_frame(1, "", "h3=\":443\"").expect("frame");
                    injector.inject(altsvc.clone(), false, None);
                    write_all(&mut tracker, &middle, piece);
                    assert_eq!(written(&wire), [&first[..], &middle[..]].concat());
                    write_all(&mut tracker, &last, piece);
                    let expected = [&first[..], &middle[..], &last[..], &altsvc[..]].concat();
                    assert_eq!(
                        written(&wire),
                        expected,
                        "kind {kind}, allowance {allowance}, piece {piece}"
                    );
                    assert!(!injector.has_due());
                }
            }
        }
    }

    #[test]
    fn poll_drain_waits_for_the_end_of_a_header_block() {
        // Whether the connection takes the ALTSVC in h2's write that ends the block, or is
        // not ready then and the drain writes it.
        for ready_at_end in [true, false] {
            for kind in [HEADERS, PUSH_PROMISE] {
                // Writes: the first frame (fast path); the header and payload of each
                // CONTINUATION (slow path, cut at frame edges); the ALTSVC (not ready yet); the
                // ALTSVC again.
                let allowances = if ready_at_end {
                    vec![usize::MAX]
                } else {
                    let mut allowances = vec![usize::MAX; 5];
                    allowances.extend([0, usize::MAX]);
                    allowances
                };
                let (mut tracker, injector, wire) = tracked_with(allowances);
                let [first, middle, last] = header_block(kind, 1);
                let altsvc = altsvc_frame(0, "https://a.example", "clear").expect("frame");
                let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
                let waker = Waker::from(Arc::clone(&wakes));
                let mut cx = Context::from_waker(&waker);

                // Between two frames of the block (h2 waits for the socket).
                write_all(&mut tracker, &first, usize::MAX);
                injector.inject(altsvc.clone(), false, None);
                assert!(
                    injector.poll_drain(&mut cx).is_pending(),
                    "inside a header block"
                );
                write_all(&mut tracker, &middle, usize::MAX);
                assert!(injector.poll_drain(&mut cx).is_pending(), "still inside it");
                assert_eq!(written(&wire), [&first[..], &middle[..]].concat());
                assert_eq!(wakes.0.load(Ordering::SeqCst), 0, "not woken inside it");

                // The block ends: the drain is woken.
                write_all(&mut tracker, &last, usize::MAX);
                assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
                let block = [&first[..], &middle[..], &last[..]].concat();
                if !ready_at_end {
                    assert_eq!(written(&wire), block);
                }
                assert!(matches!(injector.poll_drain(&mut cx), Poll::Ready(Ok(()))));
                assert_eq!(written(&wire), [&block[..], &altsvc[..]].concat());
            }
        }
    }

    #[test]
    fn a_header_block_stays_whole_while_filtering() {
        for allowance in [1, 5, usize::MAX] {
            for piece in [1, 9, 10, usize::MAX] {
                let (mut tracker, injector, wire) = tracked_with(vec![allowance]);
                write_all(&mut tracker, &h2_settings(), usize::MAX);
                injector.inject_goaway(3, 0, "inj", |_| {});
                drain(&injector);
                let start = written(&wire).len();
                let [first, middle, last] = header_block(HEADERS, 3);
                write_all(&mut tracker, &first, piece);
                let altsvc = altsvc_frame(3, "", "clear").expect("frame");
                injector.inject(altsvc.clone(), false, None);
                assert!(injector.poll_drain(&mut noop_cx()).is_pending());
                write_all(&mut tracker, &middle, piece);
                assert!(injector.poll_drain(&mut noop_cx()).is_pending());
                // The block's end, and an RST_STREAM above the GOAWAY (dropped).
                write_all(
                    &mut tracker,
                    &[&last[..], &h2_reset(5, 8)[..]].concat(),
                    piece,
                );
                drain(&injector);
                let expected = [&first[..], &middle[..], &last[..], &altsvc[..]].concat();
                assert_eq!(
                    written(&wire)[start..],
                    expected[..],
                    "allowance {allowance}, piece {piece}"
                );
            }
        }
    }

    // Bounded fuzzing (proptest). Default case counts keep these to a couple of seconds;
    // `PROPTEST_CASES=100000 cargo test --release --lib server::inject` searches longer.
    // Failures found are kept in `proptest-regressions/server/inject.txt`.

    /// `default_cases`, unless the standard `PROPTEST_CASES` environment variable says
    /// otherwise.
    fn config(default_cases: u32) -> ProptestConfig {
        let mut config = ProptestConfig::default();
        if std::env::var_os("PROPTEST_CASES").is_none() {
            config.cases = default_cases;
        }
        config
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

    fn stream_id() -> impl Strategy<Value = u32> {
        prop_oneof![3 => 0u32..12, 1 => 0u32..=STREAM_ID_MASK]
    }

    /// A frame of h2's, or a header block of h2's (RFC 9113 §6.10: a HEADERS or PUSH_PROMISE
    /// without END_HEADERS, then CONTINUATION frames up to one with END_HEADERS). Its GOAWAY
    /// frames' debug data starts with "h2", so that they are told from injected ones.
    fn h2_frames() -> impl Strategy<Value = Vec<TestFrame>> {
        let other = (
            prop::sample::select(vec![0x0u8, 0x2, 0x6, 0x8]),
            any::<u8>(),
            stream_id(),
            // Mostly small, sometimes up to the default SETTINGS_MAX_FRAME_SIZE (RFC 9113 §4.2).
            prop_oneof![4 => 0usize..64, 1 => 0usize..=16_384],
            any::<u8>(),
        )
            .prop_map(|(kind, flags, stream, len, fill)| TestFrame {
                kind,
                flags,
                stream,
                payload: vec![fill; len],
            });
        let settings = (any::<bool>(), 0usize..4).prop_map(|(ack, n)| {
            let (flags, len) = if ack { (ACK, 0) } else { (0, 6 * n) };
            TestFrame::new(SETTINGS, flags, 0, &vec![0; len])
        });
        let reset = (stream_id(), any::<u32>())
            .prop_map(|(stream, code)| TestFrame::new(RST_STREAM, 0, stream, &code.to_be_bytes()));
        let goaway = (
            prop_oneof![0u32..12, Just(STREAM_ID_MASK), any::<u32>()],
            prop_oneof![Just(0u32), any::<u32>()],
            0usize..20,
        )
            .prop_map(|(id, code, n)| {
                let payload = [
                    &id.to_be_bytes()[..],
                    &code.to_be_bytes(),
                    b"h2",
                    &vec![b'x'; n],
                ];
                TestFrame::new(GOAWAY, 0, 0, &payload.concat())
            });
        // A header block's frames: mostly small, sometimes a whole SETTINGS_MAX_FRAME_SIZE.
        let fragment = || {
            (
                any::<u8>(),
                prop_oneof![4 => 0usize..32, 1 => 0usize..=16_384],
            )
        };
        let headers = (
            prop::sample::select(vec![HEADERS, PUSH_PROMISE]),
            stream_id(),
            fragment(),
            // 0 to 3 CONTINUATION frames without END_HEADERS, then one with it.
            prop::collection::vec(fragment(), 1..5),
            any::<bool>(),
        )
            .prop_map(|(kind, stream, (flags, len), continuations, whole)| {
                let payload = vec![0x82; len];
                if whole {
                    return vec![TestFrame::new(kind, flags | END_HEADERS, stream, &payload)];
                }
                let mut block = vec![TestFrame::new(kind, flags & !END_HEADERS, stream, &payload)];
                let last = continuations.len() - 1;
                for (i, (flags, len)) in continuations.into_iter().enumerate() {
                    let flags = if i == last {
                        flags | END_HEADERS
                    } else {
                        flags & !END_HEADERS
                    };
                    block.push(TestFrame::new(
                        CONTINUATION,
                        flags,
                        stream,
                        &vec![0x87; len],
                    ));
                }
                block
            });
        prop_oneof![
            4 => other.prop_map(|f| vec![f]),
            2 => settings.prop_map(|f| vec![f]),
            2 => reset.prop_map(|f| vec![f]),
            1 => goaway.prop_map(|f| vec![f]),
            2 => headers,
        ]
    }

    /// Whether filtering drops h2's frame: an RST_STREAM above the lowest GOAWAY id out, or
    /// a GOAWAY(NO_ERROR) naming no lower id.
    fn filtered_out(frame: &TestFrame, floor: u32) -> bool {
        match frame.kind {
            RST_STREAM => frame.stream > floor,
            GOAWAY => frame.payload[4..8] == [0; 4] && frame.last_stream_id() >= floor,
            _ => false,
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// h2 offers its next bytes.
        Write,
        /// 0: ORIGIN, 1: ALTSVC, 2: GOAWAY (never held for SETTINGS).
        Inject {
            what: u8,
            after_settings: bool,
            last_stream_id: u32,
        },
        Drain,
        Flush,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => Just(Op::Write),
            2 => (0u8..3, any::<bool>(), prop_oneof![0u32..12, any::<u32>()]).prop_map(
                |(what, after_settings, last_stream_id)| Op::Inject {
                    what,
                    after_settings,
                    last_stream_id,
                }
            ),
            1 => Just(Op::Drain),
            1 => Just(Op::Flush),
        ]
    }

    /// A frame the test queued, and what became of it.
    struct Injected {
        /// The frame; for a GOAWAY, the id asked for and the one `inject_goaway` returned.
        frame: Result<Bytes, (u32, u32)>,
        after_settings: bool,
        /// What the connection had been sent when it was queued.
        queued_at: usize,
        /// `on_sent`'s calls: what the connection had been sent then, and the GOAWAY's id.
        sent: Log<(usize, u32)>,
    }

    fn is_injected(frame: &TestFrame) -> bool {
        frame.kind == ORIGIN
            || frame.kind == ALTSVC
            || frame.kind == GOAWAY && frame.payload.get(8..11) == Some(&b"inj"[..])
    }

    proptest! {
        #![proptest_config(config(1000))]

        /// h2 writes frames in pieces of any size (some vectored), the connection takes what
        /// it can, frames are injected and drained at any point: the connection gets h2's
        /// frames whole and in order, filtered once an injected GOAWAY is out, with each
        /// injected frame whole between two of them and never inside a header block (RFC 9113
        /// §6.10), in the order queued, not before it was queued nor (if so asked) before h2's
        /// first SETTINGS, and its `on_sent` run once, right after its last byte.
        #[test]
        fn frames_stay_whole_and_in_order_around_injected_ones(
            frames in prop::collection::vec(h2_frames(), 1..16).prop_map(|units| units.concat()),
            ops in prop::collection::vec(op(), 0..40),
            offers in prop::collection::vec(prop_oneof![1usize..16, 1usize..40_000], 1..16),
            splits in prop::collection::vec(prop_oneof![2 => Just(0usize), 1 => 1usize..20], 1..8),
            allowances in prop::collection::vec(prop_oneof![4 => 1usize..20, 2 => 1usize..40_000, 1 => Just(0usize)], 1..16)
                .prop_filter("some progress", |a| a.iter().any(|&n| n > 0)),
        ) {
            let mut stream = Vec::new();
            for frame in &frames {
                frame.encode(&mut stream);
            }
            let (mut tracker, injector, wire) = tracked_with(allowances);
            let mut cx = noop_cx();
            let mut injected: Vec<Injected> = Vec::new();
            let mut at = 0;
            let mut writes = 0;
            let mut ops = ops.into_iter();
            let mut polls = 0;
            loop {
                polls += 1;
                prop_assert!(polls < 1_000_000, "stuck at byte {} of {}", at, stream.len());
                let op = match ops.next() {
                    Some(op) => op,
                    None if at < stream.len() => Op::Write,
                    None => break,
                };
                match op {
                    Op::Write if at < stream.len() => {
                        let offer = offers[writes % offers.len()].min(stream.len() - at);
                        let split = splits[writes % splits.len()];
                        writes += 1;
                        let bytes = &stream[at..at + offer];
                        let polled = if split == 0 {
                            Pin::new(&mut tracker).poll_write(&mut cx, bytes)
                        } else {
                            let (a, b) = (split.min(offer), (2 * split).min(offer));
                            let slices = [
                                io::IoSlice::new(&bytes[..a]),
                                io::IoSlice::new(&bytes[a..b]),
                                io::IoSlice::new(&bytes[b..]),
                            ];
                            Pin::new(&mut tracker).poll_write_vectored(&mut cx, &slices)
                        };
                        match polled {
                            Poll::Ready(Ok(n)) => {
                                prop_assert!(n > 0 && n <= offer);
                                at += n;
                            }
                            Poll::Ready(Err(e)) => return Err(TestCaseError::fail(format!("write failed: {e}"))),
                            Poll::Pending => {}
                        }
                    }
                    Op::Write => {}
                    Op::Inject { what, after_settings, last_stream_id } => {
                        let j = injected.len();
                        let queued_at = written(&wire).len();
                        let sent = Arc::new(Mutex::new(Vec::new()));
                        let (log, w) = (Arc::clone(&sent), Arc::clone(&wire));
                        let on_sent = move |id| {
                            let len = w.lock().expect("wire").len();
                            log.lock().expect("log").push((len, id));
                        };
                        let (frame, after_settings) = match what {
                            0 => (origin_frame(&[format!("https://o{j}.example")]), after_settings),
                            1 if j.is_multiple_of(2) => (altsvc_frame(j as u32, "", &format!("h3=\":{j}\"")), after_settings),
                            1 => (altsvc_frame(0, &format!("https://a{j}.example"), "clear"), after_settings),
                            _ => {
                                let id = injector.inject_goaway(last_stream_id, j as u32, &format!("inj{j}"), on_sent);
                                injected.push(Injected { frame: Err((last_stream_id, id)), after_settings: false, queued_at, sent });
                                continue;
                            }
                        };
                        let frame = frame.map_err(|e| TestCaseError::fail(e.to_string()))?;
                        injector.inject(frame.clone(), after_settings, Some(Box::new(move || on_sent(0))));
                        injected.push(Injected { frame: Ok(frame), after_settings, queued_at, sent });
                    }
                    Op::Drain => {
                        if let Poll::Ready(Err(e)) = injector.poll_drain(&mut cx) {
                            return Err(TestCaseError::fail(format!("drain failed: {e}")));
                        }
                    }
                    Op::Flush => {
                        if let Poll::Ready(Err(e)) = Pin::new(&mut tracker).poll_flush(&mut cx) {
                            return Err(TestCaseError::fail(format!("flush failed: {e}")));
                        }
                    }
                }
            }
            // h2 is done: it flushes, and the injector drains what is left.
            loop {
                polls += 1;
                prop_assert!(polls < 1_000_000, "flush stuck");
                match Pin::new(&mut tracker).poll_flush(&mut cx) {
                    Poll::Ready(result) => break result.map_err(|e| TestCaseError::fail(e.to_string()))?,
                    Poll::Pending => {}
                }
            }
            loop {
                polls += 1;
                prop_assert!(polls < 1_000_000, "drain stuck");
                match injector.poll_drain(&mut cx) {
                    Poll::Ready(result) => break result.map_err(|e| TestCaseError::fail(e.to_string()))?,
                    Poll::Pending => {}
                }
            }

            // Read the connection as a peer does, and follow what should have happened.
            let out = written(&wire);
            let read = parse_frames(&out).map_err(TestCaseError::fail)?;
            let mut floor = u32::MAX;
            let mut filtering = false;
            let mut settings_seen = false;
            // Inside one of h2's header blocks (RFC 9113 §6.10): nothing may come between
            // its frames.
            let mut in_block = false;
            let mut h = 0;
            let mut j = 0;
            for (offset, frame) in read {
                let end = offset + FRAME_HEADER_LEN + frame.payload.len();
                if is_injected(&frame) {
                    prop_assert!(j < injected.len(), "an injected frame nobody queued at {}", offset);
                    prop_assert!(!in_block, "frame {} inside a header block at {}", j, offset);
                    let inj = &injected[j];
                    prop_assert!(offset >= inj.queued_at, "frame {} out before it was queued", j);
                    prop_assert!(!inj.after_settings || settings_seen, "frame {} out before SETTINGS", j);
                    let sent = inj.sent.lock().expect("log").clone();
                    match &inj.frame {
                        Ok(bytes) => {
                            prop_assert_eq!(&frame.bytes()[..], &bytes[..]);
                            prop_assert_eq!(sent, vec![(end, 0)]);
                        }
                        Err((asked, returned)) => {
                            let id = (asked & STREAM_ID_MASK).min(floor);
                            prop_assert!(id <= *returned && *returned <= asked & STREAM_ID_MASK);
                            let expected = goaway_frame(id, j as u32, &format!("inj{j}"));
                            prop_assert_eq!(&frame.bytes()[..], &expected[..]);
                            prop_assert_eq!(sent, vec![(end, id)]);
                            floor = floor.min(id);
                            filtering = true;
                        }
                    }
                    j += 1;
                    continue;
                }
                // h2's next frame, after those filtered out.
                while filtering && h < frames.len() && filtered_out(&frames[h], floor) {
                    h += 1;
                }
                prop_assert!(h < frames.len(), "a frame h2 did not write at {}", offset);
                let mut expected = frames[h].clone();
                h += 1;
                if expected.kind == GOAWAY {
                    if filtering {
                        let id = expected.last_stream_id().min(floor);
                        expected.payload[..4].copy_from_slice(&id.to_be_bytes());
                    }
                    floor = floor.min(expected.last_stream_id());
                }
                settings_seen |= expected.kind == SETTINGS && expected.flags & ACK == 0;
                prop_assert!(!in_block || expected.kind == 0x9, "a header block cut short at {}", offset);
                in_block = [0x1, 0x5, 0x9].contains(&expected.kind) && expected.flags & 0x4 == 0;
                prop_assert_eq!(frame, expected);
            }
            while filtering && h < frames.len() && filtered_out(&frames[h], floor) {
                h += 1;
            }
            prop_assert_eq!(h, frames.len(), "h2's frames all written");
            // Everything queued is out, unless it waits for a SETTINGS h2 never wrote (and
            // so does what was queued after it).
            let waiting = if settings_seen {
                injected.len()
            } else {
                injected.iter().position(|i| i.after_settings).unwrap_or(injected.len())
            };
            prop_assert_eq!(j, waiting);
            for inj in &injected[j..] {
                prop_assert!(inj.sent.lock().expect("log").is_empty(), "on_sent of a frame not sent");
            }
        }

        /// RFC 8336 §2.1: type 0xc, no flags, stream 0, then each origin as a 16-bit length
        /// and its bytes; over 16 384 bytes of payload it is refused.
        #[test]
        fn origin_frames_follow_rfc_8336_section_2_1(
            origins in prop::collection::vec(prop_oneof![
                "https?://[a-z0-9.-]{1,40}(:[0-9]{1,5})?",
                (0usize..3000, any::<u8>()).prop_map(|(n, c)| char::from(b'a' + c % 26).to_string().repeat(n)),
            ], 0..12),
        ) {
            let payload: usize = origins.iter().map(|o| 2 + o.len()).sum();
            let f = match origin_frame(&origins) {
                Err(e) => {
                    prop_assert!(payload > MAX_PAYLOAD);
                    prop_assert_eq!(e, FrameError::TooLarge(payload));
                    return Ok(());
                }
                Ok(f) => f,
            };
            prop_assert!(payload <= MAX_PAYLOAD);
            let head = h2::frame::Head::parse(&f[..FRAME_HEADER_LEN]);
            prop_assert_eq!(head.kind(), h2::frame::Kind::Unknown);
            prop_assert_eq!(f[3], 0xc, "type ORIGIN");
            prop_assert_eq!(head.flag(), 0);
            prop_assert_eq!(u32::from(head.stream_id()), 0);
            prop_assert_eq!(payload_len(&f), payload);
            prop_assert_eq!(f.len(), FRAME_HEADER_LEN + payload);
            let mut rest = &f[FRAME_HEADER_LEN..];
            let mut read = Vec::new();
            while !rest.is_empty() {
                let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                read.push(String::from_utf8(rest[2..2 + len].to_vec()).expect("ASCII"));
                rest = &rest[2 + len..];
            }
            prop_assert_eq!(read, origins);
        }

        /// RFC 7838 §4: type 0xa, no flags, the stream as given, a 16-bit origin length, the
        /// origin, then the field value to the end of the payload.
        #[test]
        fn altsvc_frames_follow_rfc_7838_section_4(
            stream in any::<u32>(),
            origin in prop_oneof!["", "https://[a-z.]{1,40}"],
            value in prop_oneof!["h3=\":[0-9]{1,5}\"(; ma=[0-9]{1,6})?", "clear", (0usize..17_000).prop_map(|n| "v".repeat(n))],
        ) {
            let payload = 2 + origin.len() + value.len();
            let f = match altsvc_frame(stream, &origin, &value) {
                Err(e) => {
                    prop_assert!(payload > MAX_PAYLOAD);
                    prop_assert_eq!(e, FrameError::TooLarge(payload));
                    return Ok(());
                }
                Ok(f) => f,
            };
            prop_assert!(payload <= MAX_PAYLOAD);
            let head = h2::frame::Head::parse(&f[..FRAME_HEADER_LEN]);
            prop_assert_eq!(f[3], 0xa, "type ALTSVC");
            prop_assert_eq!(head.flag(), 0);
            prop_assert_eq!(u32::from(head.stream_id()), stream & STREAM_ID_MASK);
            prop_assert_eq!(payload_len(&f), payload);
            let p = &f[FRAME_HEADER_LEN..];
            prop_assert_eq!(usize::from(u16::from_be_bytes([p[0], p[1]])), origin.len());
            prop_assert_eq!(&p[2..2 + origin.len()], origin.as_bytes());
            prop_assert_eq!(&p[2 + origin.len()..], value.as_bytes());
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
