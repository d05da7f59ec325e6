//! misdirect — a scriptable HTTP/2 test-harness server that misdirects on purpose.
//!
//! # Layout
//!
//! Data flows one way: a scenario file is parsed and validated ([`scenario`]), its CA and
//! certificates are generated ([`pki`]), listeners serve it over TLS ([`tls`]) and HTTP/2
//! or HTTP/1.1 ([`server`]), a pure [`engine`] decides each response, the [`journal`] records
//! everything, and [`expect`] turns the journal into a verdict.
//!
//! - [`scenario`]: the file format (serde + JSON Schema), loading with precise diagnostics,
//!   and cross-reference validation. Reads a file; does no other I/O.
//! - [`pki`]: CA and leaf certificates (rcgen on ring), SPKI hashes, PEM files with safe
//!   permissions. Knows nothing of HTTP.
//! - [`tls`]: rustls configurations per listener and the SNI certificate resolver.
//! - [`engine`]: (connection facts, request facts, counters, time) → outcome. Sans-IO,
//!   seeded, property-tested.
//! - [`server`]: accept loops, h2 and hyper plumbing, carrying out outcomes, frame
//!   injection, limits, graceful shutdown; [`server::Server`] is also the library's handle.
//! - [`journal`]: numbered, timestamped events in memory and as NDJSON.
//! - [`expect`]: expectations over the journal → [`expect::Verdict`].
//! - [`client`]: the client plan with real ports, the environment of `misdirect run`, the
//!   browser page.
//! - [`run`]: running a client command against a server and judging it.
//! - [`report`]: the journal drawn as lanes, as text and HTML/SVG.
//! - `control`: the HTTP/1.1 JSON control API (private; reached over HTTP).
//! - [`cli`]: the `misdirect` command line (clap); wiring only.

pub mod cli;
pub mod client;
mod control;
pub mod engine;
pub mod expect;
pub mod journal;
pub mod pki;
pub mod report;
pub mod run;
pub mod scenario;
pub mod server;
pub mod tls;

// The README's Rust example is compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
