//! Serving a scenario: bind every listener, accept connections, do TLS with the scenario's
//! certificates, speak HTTP/2 (h2) or HTTP/1.1 (hyper), and put each request through the one
//! [`pipeline`]: facts, the engine's decision, the journal, a typed plan that the protocol
//! modules only translate onto the wire. No scenario logic lives here, and nothing of the
//! layers above: what the server serves beyond the scenario (the browser client page) is
//! handed down as engine [`Route`]s.
//!
//! - `connection`: one accepted connection: TLS or h2c detection, then the protocol.
//! - `pipeline`: a request's journey, protocol-free; the [`pipeline::Plan`] it yields.
//! - `h2conn`: the HTTP/2 translator and the connection's life as one state enum.
//! - `http1`: the HTTP/1.1 translator (hyper).
//! - `inject`: raw frames where h2 has no API (a GOAWAY with a chosen last-stream-id).

mod connection;
mod h2conn;
mod http1;
mod inject;
pub(crate) mod pipeline;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::{Engine, Route};
use crate::journal::{EventKind, Journal};
use crate::pki::{Lease, Manifest, Pki, PkiError};
pub use crate::ready::{Ready, ReadyListener};
use crate::scenario::{ListenerSpec, Scenario};
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
    /// Most connections open at once, over all listeners. One more is accepted and closed at
    /// once, journaled as opened and closed with the reason.
    pub max_connections: usize,
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
            max_connections: 10_000,
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
    /// Bind listeners on all interfaces (the unspecified address) instead of their
    /// loopback addresses, keeping their ports: for containers.
    pub bind_all: bool,
    /// Listeners with port 0 bind this port, the next such listener this + 1, …
    pub base_port: Option<u16>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            certs_dir: PathBuf::from("certs"),
            reuse_ca: false,
            journal_path: None,
            limits: Limits::default(),
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
    #[error("--journal {path}: {}", journal_problem(source))]
    Journal {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn journal_problem(source: &std::io::Error) -> String {
    if source.kind() == std::io::ErrorKind::ResourceBusy {
        source.to_string()
    } else {
        format!("cannot create the file: {source} (does its folder exist?)")
    }
}

/// The scenario in force and what was built from it; replaced whole by a reload, so that a
/// connection sees one consistent version from accept to close.
pub(crate) struct Active {
    pub scenario: Arc<Scenario>,
    /// TLS configuration per listener name (TLS listeners only).
    pub tls: BTreeMap<String, Arc<rustls::ServerConfig>>,
    /// The harness's own routes, kept for a reload that does not replace them.
    pub routes: Vec<Route>,
}

/// State every connection task shares.
pub(crate) struct Shared {
    pub active: RwLock<Arc<Active>>,
    pub engine: Mutex<Engine>,
    pub journal: Arc<Journal>,
    pub limits: Limits,
    pub next_connection: AtomicU64,
    /// Connections open now (see [`Limits::max_connections`]).
    pub open_connections: AtomicUsize,
    /// Cancelled when the server starts shutting down.
    pub shutdown: CancellationToken,
}

impl Shared {
    pub fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn active(&self) -> Arc<Active> {
        Arc::clone(&self.active.read().unwrap_or_else(|p| p.into_inner()))
    }
}

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

/// A cheap, cloneable handle to a running server: what embedding code (and the harness's
/// control API) use to read the journal, take a verdict, reset and reload. Every [`Server`]
/// derefs to one.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
    ready: Arc<Ready>,
    ca_pem: Arc<str>,
    /// This server's share of the certificate folder, held while any handle lives.
    lease: Arc<Lease>,
}

/// Why a scenario could not be loaded into a running server.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The listeners differ: they are bound once, at start.
    #[error("listeners: {0}")]
    Listeners(String),
    /// The limits differ: they are applied once, at start.
    #[error("limits: {0}")]
    Limits(String),
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

fn build_active(
    scenario: &Arc<Scenario>,
    pki: &Pki,
    routes: Vec<Route>,
) -> Result<Active, ServeError> {
    let mut tls_configs = BTreeMap::new();
    for spec in scenario.listeners.iter().filter(|l| l.tls) {
        tls_configs.insert(spec.name.clone(), tls::server_config(scenario, spec, pki)?);
    }
    Ok(Active {
        scenario: Arc::clone(scenario),
        tls: tls_configs,
        routes,
    })
}

/// A server whose certificates are written and listeners bound, not yet accepting: its
/// [`Ready`] is known (real ports), so that the layer above can compose what depends on it —
/// the routes it hands to [`Bound::serve`].
pub struct Bound {
    scenario: Arc<Scenario>,
    options: ServeOptions,
    pki: Pki,
    lease: Lease,
    journal: Journal,
    listeners: Vec<(ListenerSpec, TcpListener)>,
    ready: Ready,
}

impl Bound {
    /// The readiness information (no control API: the server has none).
    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    /// The scenario being served.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Starts accepting, with the harness's own `routes` answered on every host before the
    /// scenario's rules.
    pub fn serve(self, routes: Vec<Route>) -> Result<Server, ServeError> {
        let active = build_active(&self.scenario, &self.pki, routes)?;
        let shared = Arc::new(Shared {
            engine: Mutex::new(Engine::with_routes(&self.scenario, active.routes.clone())),
            active: RwLock::new(Arc::new(active)),
            journal: Arc::new(self.journal),
            limits: self.options.limits.clone(),
            next_connection: AtomicU64::new(1),
            open_connections: AtomicUsize::new(0),
            shutdown: CancellationToken::new(),
        });
        let tracker = TaskTracker::new();
        for (spec, listener) in self.listeners {
            let address = listener
                .local_addr()
                .map_or_else(|_| spec.address.to_string(), |a| a.to_string());
            shared.journal.record(EventKind::Listening {
                listener: spec.name.clone(),
                address,
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
            ready: Arc::new(self.ready),
            ca_pem: Arc::from(self.pki.ca.cert_pem.as_str()),
            lease: Arc::new(self.lease),
        };
        Ok(Server { handle, tracker })
    }
}

impl Server {
    /// Generates and writes the certificates, binds every listener and starts accepting.
    /// When this returns, the server is ready.
    pub async fn start(scenario: Scenario, options: ServeOptions) -> Result<Server, ServeError> {
        Server::bind(scenario, options).await?.serve(Vec::new())
    }

    /// Generates and writes the certificates and binds every listener, without accepting
    /// yet: the first half of [`Server::start`], for callers that compose routes from the
    /// real ports.
    pub async fn bind(scenario: Scenario, options: ServeOptions) -> Result<Bound, ServeError> {
        let scenario = Arc::new(scenario);
        // The journal first: a server refused its journal leaves no certificates behind.
        let journal = Journal::new(options.journal_path.as_deref()).map_err(|source| {
            ServeError::Journal {
                path: options.journal_path.clone().unwrap_or_default(),
                source,
            }
        })?;
        let reuse = options.reuse_ca || scenario.ca.reuse;
        let (lease, pki, manifest) = Lease::take(
            &scenario,
            &options.certs_dir,
            reuse,
            time::OffsetDateTime::now_utc(),
        )?;

        let mut bound: Vec<(ListenerSpec, TcpListener, SocketAddr)> = Vec::new();
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
        let ready = ready_info(&scenario, listeners, &manifest, &options, lease.files_dir());
        Ok(Bound {
            scenario,
            options,
            pki,
            lease,
            journal,
            listeners: bound.into_iter().map(|(spec, l, _)| (spec, l)).collect(),
            ready,
        })
    }

    /// A handle to this server that can be cloned and moved into tasks.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Runs `task` beside the server's connections: [`Server::shutdown`] waits for it as for
    /// them, so it should end when [`Handle::shutdown_token`] is cancelled.
    pub fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task);
    }

    /// Stops accepting, sends GOAWAY on every HTTP/2 connection, lets in-flight requests
    /// finish within the grace period, and flushes the journal.
    ///
    /// Every connection, in whatever state (accepted, mid-handshake, before its preface,
    /// idle, draining, answering), is closed by the end of the grace period (plus
    /// [`connection::CUT_OFF_SLACK`] to write its last frames), so this returns within
    /// about grace + ½ s; the journal then has a `connection_closed` for every
    /// `connection_opened`, and the `shutdown` event is its last line.
    pub async fn shutdown(&self, reason: &str) {
        self.shared.shutdown.cancel();
        self.tracker.close();
        // Connections cut themselves off (see above); this bound is only a backstop.
        let backstop = self.shared.limits.shutdown_grace
            + connection::CUT_OFF_SLACK
            + connection::TASKS_AFTER_CLOSE
            + Duration::from_millis(200);
        if tokio::time::timeout(backstop, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the shutdown grace period");
        }
        self.shared.journal.record(EventKind::Shutdown {
            reason: reason.to_owned(),
        });
        if let Err(err) = self.shared.journal.flush() {
            tracing::error!(error = %err, "flushing the journal failed");
        }
    }
}

impl Handle {
    /// The readiness information: listeners, CA, certificates, journal (the server runs no
    /// control API, so `control` is `None` here).
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

    /// Puts another scenario in force without restarting, keeping the routes: new
    /// connections use it (open ones finish with the old), counters start over, certificates
    /// are generated again only if the certificate list changed, and the CA stays the same.
    /// The listeners must be the same as at start.
    pub fn reload(&self, scenario: Scenario) -> Result<Reloaded, ReloadError> {
        let routes = self.shared.active().routes.clone();
        self.reload_with_routes(scenario, routes)
    }

    /// [`Handle::reload`] with new routes (for routes built from the scenario).
    pub fn reload_with_routes(
        &self,
        scenario: Scenario,
        routes: Vec<Route>,
    ) -> Result<Reloaded, ReloadError> {
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
        if scenario.limits != current.limits {
            return Err(ReloadError::Limits(
                "a reload must keep the scenario's limits as they were at start (they are applied once, with the flags); restart misdirect to change them".to_owned(),
            ));
        }
        let regenerate = scenario.certificates != current.certificates;
        let scenario = Arc::new(scenario);
        let pki = self
            .lease
            .generate(&scenario, time::OffsetDateTime::now_utc())
            .map_err(ServeError::from)?;
        if regenerate {
            self.lease.write(&pki).map_err(ServeError::from)?;
        }
        let active = build_active(&scenario, &pki, routes)?;
        *self.shared.engine() = Engine::with_routes(&scenario, active.routes.clone());
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
    pub fn shutdown_token(&self) -> CancellationToken {
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
    files_dir: &Path,
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
        certs_dir: absolute(files_dir),
        certificates,
        journal: options.journal_path.as_deref().map(absolute),
        control: None,
        names: BTreeMap::new(),
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
                let Some(slot) = connection::Slot::take(&shared) else {
                    connection::refuse(&shared, id, &listener_name, stream, peer);
                    continue;
                };
                tracker.spawn(connection::serve(
                    slot,
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
