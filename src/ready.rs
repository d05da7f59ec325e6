//! What a launcher learns once the harness is ready: every listener with its real port, the CA
//! to trust, every certificate, the journal file and the control API. The server fills in
//! what it bound and wrote; the layer that composes the harness adds the control API.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Serialize;

use crate::pki::ManifestEntry;
use crate::scenario::Alpn;

/// What a launcher needs to know, printed as one JSON line when — and only when — every
/// listener is bound and every certificate written.
#[derive(Debug, Clone, Serialize)]
pub struct Ready {
    /// Always `true`: this line means ready.
    pub ready: bool,
    /// The server's process id.
    pub pid: u32,
    /// Scenario name.
    pub scenario: Option<String>,
    /// Every listener with its real port.
    pub listeners: Vec<ReadyListener>,
    /// The CA certificate file to trust.
    pub ca: PathBuf,
    /// The folder holding every PEM file.
    pub certs_dir: PathBuf,
    /// Every leaf certificate: files, SANs, SPKI SHA-256.
    pub certificates: BTreeMap<String, ManifestEntry>,
    /// The NDJSON journal file, if any.
    pub journal: Option<PathBuf>,
    /// Base URL of the control API, if it runs.
    pub control: Option<String>,
    /// Every concrete name of the scenario (its hosts' names but wildcards, and the client
    /// plan's), with the listener and address a client must map it to: what `/etc/hosts`,
    /// `--resolve` or a custom resolver needs. Filled in by the harness.
    pub names: BTreeMap<String, ReadyName>,
}

/// Where one of the scenario's names is served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadyName {
    /// The listener's name.
    pub listener: String,
    /// Its `ip:port`.
    pub address: SocketAddr,
}

/// One bound listener.
#[derive(Debug, Clone, Serialize)]
pub struct ReadyListener {
    /// Listener name.
    pub name: String,
    /// `ip:port` as bound.
    pub address: SocketAddr,
    /// The IP alone.
    pub ip: IpAddr,
    /// The real port (never 0).
    pub port: u16,
    /// TLS or cleartext.
    pub tls: bool,
    /// ALPN offered (TLS) or protocols spoken (cleartext).
    pub alpn: Vec<Alpn>,
}
