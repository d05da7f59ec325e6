//! A scripted HTTP/2 peer, as h2's own tests script theirs: client frames built with h2's
//! frame types, server frames decoded by h2's codec (HPACK included) into [`Seen`] values
//! that tests compare exactly. Connection housekeeping (SETTINGS, WINDOW_UPDATE, PING) is
//! answered and left out, so that a test reads as the exchange it checks. Plus a raw
//! HTTP/1.1 exchange for the same scenarios.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use h2::Codec;
use h2::frame::{self, Frame, Pseudo, StreamId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// RFC 9113 §3.4.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// No exchange in these tests should take longer.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// A server frame (or the end of the connection), as a test compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A response head.
    Headers {
        /// Stream id.
        stream: u32,
        /// `:status`.
        status: u16,
        /// Regular fields, in order.
        fields: Vec<(String, String)>,
        /// END_STREAM set.
        end_stream: bool,
    },
    /// Response content.
    Data {
        /// Stream id.
        stream: u32,
        /// The payload.
        data: Bytes,
        /// END_STREAM set.
        end_stream: bool,
    },
    /// RST_STREAM.
    Reset {
        /// Stream id.
        stream: u32,
        /// Error code (RFC 9113 §7).
        code: u32,
    },
    /// GOAWAY.
    GoAway {
        /// The last stream the server says it processed.
        last_stream_id: u32,
        /// Error code.
        code: u32,
        /// Debug data.
        debug: Bytes,
    },
    /// The server closed the connection (or it failed).
    Closed,
}

impl Seen {
    /// The `:status` of a HEADERS frame.
    pub fn status(&self) -> Option<u16> {
        match self {
            Seen::Headers { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A field of a HEADERS frame.
    pub fn field(&self, name: &str) -> Option<&str> {
        match self {
            Seen::Headers { fields, .. } => fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

/// A frame as it came off the wire, whatever its type (h2's codec drops the types it does
/// not know, such as ORIGIN and ALTSVC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// Frame type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream id.
    pub stream: u32,
    /// Payload.
    pub payload: Vec<u8>,
}

/// The connection, keeping a copy of every byte read, so that the raw frame sequence can be
/// read back beside what the codec decodes.
pub struct Tap {
    io: TcpStream,
    read: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl tokio::io::AsyncRead for Tap {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        let new = &buf.filled()[before..];
        self.read.lock().expect("tap").extend_from_slice(new);
        polled
    }
}

impl tokio::io::AsyncWrite for Tap {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The client side of an HTTP/2 connection (h2c by prior knowledge), frame by frame.
pub struct H2Client {
    codec: Codec<Tap, Bytes>,
    read: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    next_stream: u32,
}

impl H2Client {
    /// Connects, sends the preface and empty SETTINGS.
    pub async fn connect(address: SocketAddr) -> H2Client {
        H2Client::connect_with(address, frame::Settings::default()).await
    }

    /// Connects, sends the preface and these SETTINGS.
    pub async fn connect_with(address: SocketAddr, settings: frame::Settings) -> H2Client {
        let mut io = TcpStream::connect(address).await.expect("connect");
        io.write_all(PREFACE).await.expect("preface");
        let read = std::sync::Arc::default();
        let tap = Tap {
            io,
            read: std::sync::Arc::clone(&read),
        };
        let mut client = H2Client {
            codec: Codec::new(tap),
            read,
            next_stream: 1,
        };
        client.send(settings.into()).await;
        client
    }

    /// Every whole frame read from the server so far, in wire order, of any type.
    pub fn raw(&self) -> Vec<RawFrame> {
        let read = self.read.lock().expect("tap");
        let mut bytes = &read[..];
        let mut frames = Vec::new();
        while bytes.len() >= 9 {
            let len =
                usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
            if bytes.len() < 9 + len {
                break;
            }
            frames.push(RawFrame {
                kind: bytes[3],
                flags: bytes[4],
                stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
                payload: bytes[9..9 + len].to_vec(),
            });
            bytes = &bytes[9 + len..];
        }
        frames
    }

    /// The next frame that is not housekeeping, if one comes within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Seen> {
        tokio::time::timeout(wait, self.next()).await.ok()
    }

    /// Sends one frame.
    pub async fn send(&mut self, frame: Frame<Bytes>) {
        tokio::time::timeout(PATIENCE, self.codec.send(frame))
            .await
            .expect("send in time")
            .expect("send");
    }

    /// Opens the next stream with a request; `body` (if any) follows as one DATA frame.
    /// Returns the stream id.
    pub async fn request(
        &mut self,
        method: &str,
        authority: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> u32 {
        let id = self.next_stream;
        self.next_stream += 2;
        let uri: http::Uri = format!("http://{authority}{path}").parse().expect("uri");
        let method: http::Method = method.parse().expect("method");
        let mut headers = frame::Headers::new(
            StreamId::from(id),
            Pseudo::request(method, uri, None),
            http::HeaderMap::new(),
        );
        if body.is_none() {
            headers.set_end_stream();
        }
        self.send(headers.into()).await;
        if let Some(body) = body {
            let mut data = frame::Data::new(StreamId::from(id), Bytes::copy_from_slice(body));
            data.set_end_stream(true);
            self.send(data.into()).await;
        }
        id
    }

    /// Opens the next stream with a request whose body is still to come (no END_STREAM).
    /// Returns the stream id.
    pub async fn open(&mut self, method: &str, authority: &str, path: &str) -> u32 {
        let id = self.next_stream;
        self.next_stream += 2;
        let uri: http::Uri = format!("http://{authority}{path}").parse().expect("uri");
        let method: http::Method = method.parse().expect("method");
        let headers = frame::Headers::new(
            StreamId::from(id),
            Pseudo::request(method, uri, None),
            http::HeaderMap::new(),
        );
        self.send(headers.into()).await;
        id
    }

    /// `GET` on the next stream.
    pub async fn get(&mut self, authority: &str, path: &str) -> u32 {
        self.request("GET", authority, path, None).await
    }

    /// The next frame that is not housekeeping; SETTINGS and PINGs are acknowledged on the
    /// way. [`Seen::Closed`] once the server has closed.
    pub async fn next(&mut self) -> Seen {
        loop {
            let frame = match tokio::time::timeout(PATIENCE, self.codec.next()).await {
                Err(_) => panic!("no frame from the server within {PATIENCE:?}"),
                Ok(None | Some(Err(_))) => return Seen::Closed,
                Ok(Some(Ok(frame))) => frame,
            };
            match frame {
                Frame::Settings(settings) if !settings.is_ack() => {
                    self.send(frame::Settings::ack().into()).await;
                }
                Frame::Ping(ping) if !ping.is_ack() => {
                    self.send(frame::Ping::pong(ping.into_payload()).into())
                        .await;
                }
                Frame::Settings(_) | Frame::Ping(_) | Frame::WindowUpdate(_) => {}
                Frame::Priority(_) | Frame::PushPromise(_) => {}
                Frame::Headers(headers) => {
                    let stream = u32::from(headers.stream_id());
                    let end_stream = headers.is_end_stream();
                    let (pseudo, fields) = headers.into_parts();
                    return Seen::Headers {
                        stream,
                        status: pseudo.status.map_or(0, |s| s.as_u16()),
                        fields: fields
                            .iter()
                            .map(|(n, v)| {
                                (
                                    n.as_str().to_owned(),
                                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                )
                            })
                            .collect(),
                        end_stream,
                    };
                }
                Frame::Data(data) => {
                    return Seen::Data {
                        stream: u32::from(data.stream_id()),
                        end_stream: data.is_end_stream(),
                        data: data.into_payload(),
                    };
                }
                Frame::Reset(reset) => {
                    return Seen::Reset {
                        stream: u32::from(reset.stream_id()),
                        code: u32::from(reset.reason()),
                    };
                }
                Frame::GoAway(goaway) => {
                    return Seen::GoAway {
                        last_stream_id: u32::from(goaway.last_stream_id()),
                        code: u32::from(goaway.reason()),
                        debug: goaway.debug_data().clone(),
                    };
                }
            }
        }
    }

    /// The DATA of `stream` up to END_STREAM, giving back the window as it reads (stream and
    /// connection), as a reading client does.
    pub async fn read_body(&mut self, stream: u32) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            match self.next().await {
                Seen::Data {
                    data, end_stream, ..
                } => {
                    body.extend_from_slice(&data);
                    let n = u32::try_from(data.len()).expect("frame size");
                    if n > 0 {
                        self.send(frame::WindowUpdate::new(StreamId::from(stream), n).into())
                            .await;
                        self.send(frame::WindowUpdate::new(StreamId::zero(), n).into())
                            .await;
                    }
                    if end_stream {
                        return body;
                    }
                }
                other => panic!("expected DATA of stream {stream}, got {other:?}"),
            }
        }
    }

    /// Every frame until the server closes.
    pub async fn until_closed(&mut self) -> Vec<Seen> {
        let mut seen = Vec::new();
        loop {
            let frame = self.next().await;
            if frame == Seen::Closed {
                return seen;
            }
            seen.push(frame);
        }
    }
}

/// The body of the DATA frames of `stream` among `frames`, concatenated.
pub fn body_of(frames: &[Seen], stream: u32) -> String {
    let mut body = Vec::new();
    for frame in frames {
        if let Seen::Data {
            stream: s, data, ..
        } = frame
            && *s == stream
        {
            body.extend_from_slice(data);
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// What an HTTP/1.1 exchange came to.
#[derive(Debug)]
pub struct Http1Answer {
    /// Status code, or `None` when the server closed without answering.
    pub status: Option<u16>,
    /// Header lines as (lower-case name, value).
    pub fields: Vec<(String, String)>,
    /// The body (what followed the head).
    pub body: String,
    /// Whether the server closed the connection after it.
    pub closed: bool,
}

impl Http1Answer {
    /// A header's value.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request (keep-alive) and reads one answer; reports whether the server
/// then closed the connection.
pub async fn http1(
    address: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    body: &[u8],
) -> Http1Answer {
    let mut io = TcpStream::connect(address).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    io.write_all(head.as_bytes()).await.expect("request head");
    io.write_all(body).await.expect("request body");
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the answer is whole (by content-length), then look for the close.
    let closed = loop {
        let n = match tokio::time::timeout(PATIENCE, io.read(&mut buf)).await {
            Err(_) => panic!("no HTTP/1.1 answer within {PATIENCE:?}"),
            Ok(Err(_)) | Ok(Ok(0)) => break true,
            Ok(Ok(n)) => n,
        };
        received.extend_from_slice(&buf[..n]);
        if answer_is_whole(&received) {
            // A server that closes does so at once; one that keeps the connection says nothing.
            let more = tokio::time::timeout(Duration::from_millis(500), io.read(&mut buf)).await;
            break matches!(more, Ok(Ok(0)) | Ok(Err(_)));
        }
    };
    parse_http1(&received, closed)
}

fn answer_is_whole(received: &[u8]) -> bool {
    let text = String::from_utf8_lossy(received);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    body.len() >= length
}

fn parse_http1(received: &[u8], closed: bool) -> Http1Answer {
    let text = String::from_utf8_lossy(received).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Http1Answer {
            status: None,
            fields: Vec::new(),
            body: text,
            closed,
        };
    };
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok());
    let fields = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Http1Answer {
        status,
        fields,
        body: body.to_owned(),
        closed,
    }
}
