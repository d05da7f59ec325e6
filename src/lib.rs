//! misdirect — a scriptable HTTP/2 test-harness server that misdirects on purpose.
//!
//! # Layout
//!
//! Data flows one way: a scenario file is parsed and validated ([`scenario`]), its CA and
//! certificates are generated ([`pki`]), listeners serve it over TLS ([`tls`]) and HTTP/2
//! or HTTP/1.1 ([`server`]), a pure [`engine`] decides each response, the [`journal`] records
//! everything, and [`expect`] turns the journal into a verdict. The [`harness`] composes a
//! server with what misdirect serves beyond the scenario; `run`, the control API and the
//! command line sit on top.
//!
//! # Layers
//!
//! A module imports only from modules in layers below its own — never from its own layer,
//! never from above — so that no two modules import each other, however indirectly.
//! `tests/layers.rs` reads this table and checks every `crate::` path in `src/` against it.
//!
//! | layer | modules | what the layer is |
//! |---|---|---|
//! | 6 | `cli` | the command line: wiring only |
//! | 5 | `run`, `scorecard`, `control`, `testcontainers` | judging a client command; a card of many; the control API; the image as a testcontainers module |
//! | 4 | `harness` | a server composed with the client page and the control URL |
//! | 3 | `server`, `client`, `report` | serving a scenario; what a client is told; pictures of a journal |
//! | 2 | `tls`, `engine`, `expect`, `ready` | TLS set-up; the decision; the verdict; the readiness line |
//! | 1 | `pki`, `journal`, `library` | certificates; events; the scenario library |
//! | 0 | `scenario`, `locks` | the file format; who holds a file lock |
//!
//! - [`scenario`]: the file format (serde + JSON Schema), loading with precise diagnostics,
//!   and cross-reference validation. Reads the scenario file and the `body_file`s it names
//!   (inside its folder unless allowed); no other I/O.
//! - [`locks`]: which process holds a file lock (`/proc/locks`), for errors that name it.
//! - [`pki`]: CA and leaf certificates (rcgen on ring), SPKI hashes, PEM files written
//!   atomically with safe permissions. Knows nothing of HTTP.
//! - [`library`]: the bundled scenarios (compiled in) and catalogues of scenario files.
//! - [`journal`]: numbered, timestamped events in memory and as NDJSON, and the words they
//!   use ([`journal::Action`], [`journal::Protocol`], the harness's path prefix).
//! - [`tls`]: rustls configurations per listener and the SNI certificate resolver.
//! - [`engine`]: (connection facts, request facts, counters, time) → [`engine::Decision`].
//!   Sans-IO, seeded, property-tested; answers the harness's own [`engine::Route`]s first.
//! - [`expect`]: expectations over the journal → [`expect::Verdict`].
//! - [`ready`]: the readiness information a launcher learns.
//! - [`server`]: accept loops, TLS or h2c, one request pipeline yielding a typed plan, the
//!   HTTP/2 and HTTP/1.1 translators, frame injection, limits, graceful shutdown;
//!   [`server::Server`] is also the library's handle. Knows nothing of the layers above.
//! - [`client`]: the client plan with real ports, the environment of `misdirect run`, the
//!   browser page and its route.
//! - [`report`]: the journal drawn as lanes, as text and HTML/SVG.
//! - [`harness`]: a server with the client page on every host and the control API's URL in
//!   its readiness.
//! - [`run`]: running a client command against a harness and judging it.
//! - [`scorecard`]: every scenario × every client, each cell a `misdirect run` child process,
//!   judged at a level into one card (table, Markdown, JSON, JUnit XML, HTML) and compared
//!   with a baseline card.
//! - `control`: the HTTP/1.1 JSON control API (private; reached over HTTP).
//! - `testcontainers` (cargo feature `testcontainers`): the container image as a
//!   testcontainers module, with the control API's helpers over HTTP.
//! - [`cli`]: the `misdirect` command line (clap); wiring only.

pub mod cli;
pub mod client;
mod control;
pub mod engine;
pub mod expect;
pub mod harness;
pub mod journal;
pub mod library;
pub mod locks;
pub mod pki;
pub mod ready;
pub mod report;
pub mod run;
pub mod scenario;
pub mod scorecard;
pub mod server;
#[cfg(feature = "testcontainers")]
pub mod testcontainers;
pub mod tls;

// The README's Rust example is compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
