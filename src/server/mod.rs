//! Serving a scenario: bind every listener, accept connections, do TLS with the scenario's
//! certificates, speak HTTP/2 (h2) or HTTP/1.1 (hyper), ask the engine what to do with each
//! request, carry it out, and journal everything. No scenario logic lives here.

mod connection;
mod h2conn;
mod http1;
mod inject;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::Engine;
use crate::journal::{EventKind, Journal};
use crate::pki::{Manifest, Pki, PkiError};
use crate::scenario::{Alpn, Scenario};
use crate::tls::{self, TlsError};

pub use inject::goaway_frame;

/// Limits that keep a misbehaving client from hurting the harness.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time allowed for the TLS handshake (and for a cleartext client's first bytes).
    pub handshake_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_concurrent_streams: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE, and the HTTP/1.1 header buffer.
    pub max_header_list_size: u32,
    /// Request bodies beyond this get 413.
    pub max_body_bytes: u64,
    /// On shutdown, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_concurrent_streams: 100,
            max_header_list_size: 64 * 1024,
            max_body_bytes: 1024 * 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where the PEM files go.
    pub certs_dir: PathBuf,
    /// Reuse the CA in `certs_dir` (also when the scenario says `"reuse": true`).
    pub reuse_ca: bool,
    /// NDJSON journal file, if any.
    pub journal_path: Option<PathBuf>,
    /// Protective limits.
    pub limits: Limits,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            certs_dir: PathBuf::from("certs"),
            reuse_ca: false,
            journal_path: None,
            limits: Limits::default(),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Certificates could not be made or written.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// A TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listener could not be bound.
    #[error("listener {listener:?}: cannot bind {address}: {source}")]
    Bind {
        /// Which listener.
        listener: String,
        /// The address asked for.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The journal file could not be created.
    #[error("journal {path}: {source}")]
    Journal {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

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
    pub certificates: std::collections::BTreeMap<String, crate::pki::ManifestEntry>,
    /// The NDJSON journal file, if any.
    pub journal: Option<PathBuf>,
}

/// One bound listener.
#[derive(Debug, Clone, Serialize)]
pub struct ReadyListener {
    /// Listener name.
    pub name: String,
    /// `ip:port` as bound.
    pub address: SocketAddr,
    /// The IP alone.
    pub ip: std::net::IpAddr,
    /// The real port (never 0).
    pub port: u16,
    /// TLS or cleartext.
    pub tls: bool,
    /// ALPN offered (TLS) or protocols spoken (cleartext).
    pub alpn: Vec<Alpn>,
}

/// State every connection task shares.
pub(crate) struct Shared {
    pub scenario: Arc<Scenario>,
    pub engine: Mutex<Engine>,
    pub journal: Arc<Journal>,
    pub limits: Limits,
    pub next_connection: AtomicU64,
    /// Cancelled when the server starts shutting down.
    pub shutdown: CancellationToken,
}

impl Shared {
    pub fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running server.
pub struct Server {
    shared: Arc<Shared>,
    ready: Ready,
    tracker: TaskTracker,
}

impl Server {
    /// Generates and writes the certificates, binds every listener and starts accepting.
    /// When this returns, the server is ready.
    pub async fn start(scenario: Scenario, options: ServeOptions) -> Result<Server, ServeError> {
        let scenario = Arc::new(scenario);
        let reuse = (options.reuse_ca || scenario.ca.reuse).then_some(options.certs_dir.as_path());
        let pki = Pki::generate(&scenario, reuse, time::OffsetDateTime::now_utc())?;
        let manifest = pki.write(&options.certs_dir)?;
        let journal = Journal::new(options.journal_path.as_deref()).map_err(|source| {
            ServeError::Journal {
                path: options.journal_path.clone().unwrap_or_default(),
                source,
            }
        })?;
        let shared = Arc::new(Shared {
            engine: Mutex::new(Engine::new(&scenario)),
            scenario: Arc::clone(&scenario),
            journal: Arc::new(journal),
            limits: options.limits.clone(),
            next_connection: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
        });

        let mut bound = Vec::new();
        for spec in &scenario.listeners {
            let listener =
                TcpListener::bind(spec.address)
                    .await
                    .map_err(|source| ServeError::Bind {
                        listener: spec.name.clone(),
                        address: spec.address,
                        source,
                    })?;
            let address = listener.local_addr().map_err(|source| ServeError::Bind {
                listener: spec.name.clone(),
                address: spec.address,
                source,
            })?;
            let tls = if spec.tls {
                Some(tls::server_config(&scenario, spec, &pki)?)
            } else {
                None
            };
            bound.push((spec.clone(), listener, address, tls));
        }

        let tracker = TaskTracker::new();
        let mut listeners = Vec::new();
        for (spec, listener, address, tls) in bound {
            shared.journal.record(EventKind::Listening {
                listener: spec.name.clone(),
                address: address.to_string(),
                tls: spec.tls,
            });
            listeners.push(ReadyListener {
                name: spec.name.clone(),
                address,
                ip: address.ip(),
                port: address.port(),
                tls: spec.tls,
                alpn: spec.alpn.clone(),
            });
            tracker.spawn(accept_loop(
                Arc::clone(&shared),
                spec.name.clone(),
                listener,
                tls,
                tracker.clone(),
            ));
        }
        let ready = ready_info(&scenario, listeners, &manifest, &options);
        Ok(Server {
            shared,
            ready,
            tracker,
        })
    }

    /// The readiness information.
    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    /// The journal.
    pub fn journal(&self) -> Arc<Journal> {
        Arc::clone(&self.shared.journal)
    }

    /// Stops accepting, sends GOAWAY on every HTTP/2 connection, lets in-flight requests
    /// finish within the grace period, and flushes the journal.
    pub async fn shutdown(self, reason: &str) {
        self.shared.journal.record(EventKind::Shutdown {
            reason: reason.to_owned(),
        });
        self.shared.shutdown.cancel();
        self.tracker.close();
        // Connections cut themselves off after the grace period; this bound is a backstop.
        let backstop = self.shared.limits.shutdown_grace + Duration::from_secs(2);
        if tokio::time::timeout(backstop, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the shutdown grace period");
        }
        if let Err(err) = self.shared.journal.flush() {
            tracing::error!(error = %err, "flushing the journal failed");
        }
    }
}

fn ready_info(
    scenario: &Scenario,
    listeners: Vec<ReadyListener>,
    manifest: &Manifest,
    options: &ServeOptions,
) -> Ready {
    let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let certificates = manifest
        .certificates
        .iter()
        .map(|(name, entry)| {
            let mut entry = entry.clone();
            entry.cert = absolute(&entry.cert);
            entry.key = absolute(&entry.key);
            entry.chain = entry.chain.as_deref().map(absolute);
            (name.clone(), entry)
        })
        .collect();
    Ready {
        ready: true,
        pid: std::process::id(),
        scenario: scenario.name.clone(),
        listeners,
        ca: absolute(&manifest.ca.cert),
        certs_dir: absolute(&options.certs_dir),
        certificates,
        journal: options.journal_path.as_deref().map(absolute),
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener_name: String,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shared.shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
                tracker.spawn(connection::serve(
                    Arc::clone(&shared),
                    id,
                    listener_name.clone(),
                    stream,
                    peer,
                    tls.clone(),
                ));
            }
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(listener = %listener_name, error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
