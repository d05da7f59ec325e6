//! Serving a scenario: bind every listener, accept connections, do TLS with the scenario's
//! certificates, speak HTTP/2 (h2) or HTTP/1.1 (hyper), ask the engine what to do with each
//! request, carry it out, and journal everything. No scenario logic lives here.

mod connection;
mod h2conn;
mod http1;
mod inject;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
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
    /// The control API, if it should run.
    pub control: Option<ControlOptions>,
    /// Bind listeners on all interfaces (the unspecified address) instead of their
    /// loopback addresses, keeping their ports: for containers.
    pub bind_all: bool,
    /// Listeners with port 0 bind this port, the next such listener this + 1, …
    pub base_port: Option<u16>,
}

/// Where and how the control API listens.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    /// Address to bind (loopback unless the caller explicitly chose otherwise).
    pub address: SocketAddr,
    /// When set, every request must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            certs_dir: PathBuf::from("certs"),
            reuse_ca: false,
            journal_path: None,
            limits: Limits::default(),
            control: None,
            bind_all: false,
            base_port: None,
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
    #[error(
        "listener {listener:?}: cannot bind {address}: {source} (is another process using that port? port 0 picks a free one)"
    )]
    Bind {
        /// Which listener.
        listener: String,
        /// The address asked for.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The journal file could not be created.
    #[error("--journal {path}: cannot create the file: {source} (does its folder exist?)")]
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
    /// Base URL of the control API, if it runs.
    pub control: Option<String>,
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

/// The scenario in force and what was built from it; replaced whole by a reload, so that a
/// connection sees one consistent version from accept to close.
pub(crate) struct Active {
    pub scenario: Arc<Scenario>,
    /// TLS configuration per listener name (TLS listeners only).
    pub tls: BTreeMap<String, Arc<rustls::ServerConfig>>,
}

/// State every connection task shares.
pub(crate) struct Shared {
    pub active: RwLock<Arc<Active>>,
    pub engine: Mutex<Engine>,
    pub journal: Arc<Journal>,
    pub limits: Limits,
    pub next_connection: AtomicU64,
    /// Cancelled when the server starts shutting down.
    pub shutdown: CancellationToken,
    /// The browser client page, served at [`CLIENT_PAGE_PATH`] on every host.
    pub client_page: RwLock<String>,
}

impl Shared {
    pub fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn active(&self) -> Arc<Active> {
        Arc::clone(&self.active.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn client_page(&self) -> String {
        self.client_page
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Where every host serves the page that carries out the client plan in a browser.
pub const CLIENT_PAGE_PATH: &str = "/_misdirect/client";

/// A running server. Dropping it stops accepting and winds connections down in the
/// background; [`Server::shutdown`] does the same and waits for it.
pub struct Server {
    handle: Handle,
    tracker: TaskTracker,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.handle.shared.shutdown.cancel();
    }
}

impl std::ops::Deref for Server {
    type Target = Handle;

    fn deref(&self) -> &Handle {
        &self.handle
    }
}

/// A cheap, cloneable handle to a running server: what the control API and embedding code
/// use to read the journal, take a verdict, reset and reload. Every [`Server`] derefs to one.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
    ready: Arc<Ready>,
    options: Arc<ServeOptions>,
    ca_pem: Arc<str>,
}

/// Why a scenario could not be loaded into a running server.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The listeners differ: they are bound once, at start.
    #[error("listeners: {0}")]
    Listeners(String),
    /// Certificates or TLS configurations could not be built.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// What a reload did.
#[derive(Debug, Clone, Serialize)]
pub struct Reloaded {
    /// Name of the scenario now in force.
    pub scenario: Option<String>,
    /// Whether certificates were generated again (they are only when the certificate list
    /// changed; the CA is kept either way, so clients keep trusting it).
    pub certificates_regenerated: bool,
    /// Sequence number of the journal's `scenario_loaded` event.
    pub seq: u64,
}

fn build_active(scenario: &Arc<Scenario>, pki: &Pki) -> Result<Active, ServeError> {
    let mut tls_configs = BTreeMap::new();
    for spec in scenario.listeners.iter().filter(|l| l.tls) {
        tls_configs.insert(spec.name.clone(), tls::server_config(scenario, spec, pki)?);
    }
    Ok(Active {
        scenario: Arc::clone(scenario),
        tls: tls_configs,
    })
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
        let active = build_active(&scenario, &pki)?;

        let mut bound: Vec<(crate::scenario::ListenerSpec, TcpListener, SocketAddr)> = Vec::new();
        let mut next_base_port = options.base_port;
        for spec in &scenario.listeners {
            let mut address = spec.address;
            if address.port() == 0
                && spec.port_from.is_none()
                && let Some(port) = next_base_port
            {
                address.set_port(port);
                next_base_port = port.checked_add(1);
            }
            if options.bind_all {
                address.set_ip(match address.ip() {
                    std::net::IpAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
                    std::net::IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
                });
            }
            if let Some(from) = &spec.port_from
                && let Some((_, _, other)) = bound.iter().find(|(s, _, _)| &s.name == from)
            {
                address.set_port(other.port());
            }
            let bind_error = |source| ServeError::Bind {
                listener: spec.name.clone(),
                address,
                source,
            };
            let listener = TcpListener::bind(address).await.map_err(bind_error)?;
            let address = listener.local_addr().map_err(bind_error)?;
            bound.push((spec.clone(), listener, address));
        }
        let listeners: Vec<ReadyListener> = bound
            .iter()
            .map(|(spec, _, address)| ReadyListener {
                name: spec.name.clone(),
                address: *address,
                ip: address.ip(),
                port: address.port(),
                tls: spec.tls,
                alpn: spec.alpn.clone(),
            })
            .collect();
        let control = match &options.control {
            Some(control) => {
                let listener = TcpListener::bind(control.address).await.map_err(|source| {
                    ServeError::Bind {
                        listener: "control".to_owned(),
                        address: control.address,
                        source,
                    }
                })?;
                let address = listener.local_addr().map_err(|source| ServeError::Bind {
                    listener: "control".to_owned(),
                    address: control.address,
                    source,
                })?;
                Some((listener, address))
            }
            None => None,
        };
        let mut ready = ready_info(&scenario, listeners, &manifest, &options);
        ready.control = control
            .as_ref()
            .map(|(_, address)| format!("http://{address}"));
        let shared = Arc::new(Shared {
            engine: Mutex::new(Engine::new(&scenario)),
            active: RwLock::new(Arc::new(active)),
            journal: Arc::new(journal),
            limits: options.limits.clone(),
            next_connection: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
            client_page: RwLock::new(crate::client::page(&scenario, &ready)),
        });

        let tracker = TaskTracker::new();
        for (spec, listener, address) in bound {
            shared.journal.record(EventKind::Listening {
                listener: spec.name.clone(),
                address: address.to_string(),
                tls: spec.tls,
            });
            tracker.spawn(accept_loop(
                Arc::clone(&shared),
                spec.name.clone(),
                listener,
                tracker.clone(),
            ));
        }
        let handle = Handle {
            shared,
            ready: Arc::new(ready),
            ca_pem: Arc::from(pki.ca.cert_pem.as_str()),
            options: Arc::new(options),
        };
        if let Some((listener, _)) = control {
            let token = handle
                .options
                .control
                .as_ref()
                .and_then(|c| c.token.clone());
            tracker.spawn(crate::control::serve(listener, handle.clone(), token));
        }
        Ok(Server { handle, tracker })
    }

    /// A handle to this server that can be cloned and moved into tasks.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stops accepting, sends GOAWAY on every HTTP/2 connection, lets in-flight requests
    /// finish within the grace period, and flushes the journal.
    pub async fn shutdown(&self, reason: &str) {
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

impl Handle {
    /// The readiness information (also served by the control API).
    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    /// The journal.
    pub fn journal(&self) -> Arc<Journal> {
        Arc::clone(&self.shared.journal)
    }

    /// The address of a listener, by name.
    pub fn addr(&self, listener: &str) -> Option<SocketAddr> {
        self.ready
            .listeners
            .iter()
            .find(|l| l.name == listener)
            .map(|l| l.address)
    }

    /// The CA certificate a client must trust, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The scenario in force.
    pub fn scenario(&self) -> Arc<Scenario> {
        Arc::clone(&self.shared.active().scenario)
    }

    /// Evaluates the scenario's expectations against the journal as it is now.
    pub fn verdict(&self, allow_not_exercised: bool) -> crate::expect::Verdict {
        let scenario = self.scenario();
        crate::expect::evaluate(
            &scenario.expect,
            &self.shared.journal.snapshot(),
            allow_not_exercised,
        )
    }

    /// Clears the in-memory journal and every engine counter (between test cases); returns
    /// the sequence number of the `reset` event that starts the new journal.
    pub fn reset(&self) -> u64 {
        self.shared.engine().reset();
        self.shared.journal.clear()
    }

    /// Puts another scenario in force without restarting: new connections use it (open ones
    /// finish with the old), counters start over, certificates are generated again only if
    /// the certificate list changed, and the CA stays the same. The listeners must be the
    /// same as at start.
    pub fn reload(&self, scenario: Scenario) -> Result<Reloaded, ReloadError> {
        let current = self.scenario();
        let same_listeners = scenario.listeners.len() == current.listeners.len()
            && scenario
                .listeners
                .iter()
                .zip(&current.listeners)
                .all(|(new, old)| {
                    new.name == old.name && new.address == old.address && new.tls == old.tls
                });
        if !same_listeners {
            return Err(ReloadError::Listeners(
                "a reload must keep the listeners (names, addresses, tls) as they were at start; restart misdirect to change them".to_owned(),
            ));
        }
        let regenerate = scenario.certificates != current.certificates;
        let scenario = Arc::new(scenario);
        let pki = Pki::generate(
            &scenario,
            Some(self.options.certs_dir.as_path()),
            time::OffsetDateTime::now_utc(),
        )
        .map_err(ServeError::from)?;
        if regenerate {
            pki.write(&self.options.certs_dir)
                .map_err(ServeError::from)?;
        }
        let active = build_active(&scenario, &pki)?;
        *self.shared.engine() = Engine::new(&scenario);
        *self
            .shared
            .client_page
            .write()
            .unwrap_or_else(|p| p.into_inner()) = crate::client::page(&scenario, &self.ready);
        *self
            .shared
            .active
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(active);
        let seq = self.shared.journal.record(EventKind::ScenarioLoaded {
            scenario: scenario.name.clone(),
            certificates_regenerated: regenerate,
        });
        Ok(Reloaded {
            scenario: scenario.name.clone(),
            certificates_regenerated: regenerate,
            seq,
        })
    }

    /// Whether the server has begun shutting down.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.is_cancelled()
    }

    /// Cancelled when the server begins shutting down.
    pub(crate) fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// Asks the server to stop (the owner of the [`Server`] does the waiting).
    pub fn request_shutdown(&self) {
        self.shared.shutdown.cancel();
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
        control: None,
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener_name: String,
    listener: TcpListener,
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
                    shared.active(),
                    id,
                    listener_name.clone(),
                    stream,
                    peer,
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
