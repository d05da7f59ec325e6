//! misdirect — a scriptable HTTP/2 test-harness server that misdirects on purpose.
//!
//! # Layout
//!
//! Data flows one way: a scenario file is parsed and validated ([`scenario`]), its CA and
//! certificates are generated ([`pki`]), and (in later modules) listeners serve it, an engine
//! decides each response, a journal records everything and expectations turn the journal
//! into a verdict.
//!
//! - [`scenario`]: the file format (serde + JSON Schema), loading with precise diagnostics,
//!   and cross-reference validation. Reads a file; does no other I/O.
//! - [`pki`]: CA and leaf certificates (rcgen on ring), SPKI hashes, PEM files with safe
//!   permissions. Knows nothing of HTTP.
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
