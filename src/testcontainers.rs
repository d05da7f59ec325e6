//! misdirect's container image as a [testcontainers](https://docs.rs/testcontainers) module
//! (cargo feature `testcontainers`): a test starts the image with its own scenario, reaches
//! the listeners through the ports Docker maps, trusts the CA the control API hands out, and
//! takes the verdict and the journal from the control API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), misdirect::testcontainers::Error> {
//! use misdirect::testcontainers::Misdirect;
//!
//! let misdirect = Misdirect::bundled("coalescing-wrong-server")?.start().await?;
//! let ca_pem = misdirect.ca_pem().await?; // trust this in the client under test
//! for (name, addr) in misdirect.names() {
//!     // map `name` to `addr` (e.g. reqwest's `resolve`) and request https://{name}:{port}/
//!     println!("{name} -> {addr}");
//! }
//! let verdict = misdirect.verdict(false).await?;
//! println!("{}", verdict.table());
//! # Ok(()) }
//! ```
//!
//! # The image
//!
//! [`Misdirect`] runs `misdirect:local` (what `scripts/docker-build` builds from this
//! repository; [`Misdirect::with_image`] names another) as `serve /scenario.json`, with the
//! scenario copied into the container before it starts. The image binds its listeners on
//! every interface at `MISDIRECT_BASE_PORT=8443`, 8444, … — one port per listener whose port
//! is 0, in listener order — and the control API at 9000; all are exposed and Docker maps
//! each to a free host port. The container is ready when Docker's own health check (the
//! image's `HEALTHCHECK`, `misdirect health`) says healthy.
//!
//! # No reaper, no pulls
//!
//! testcontainers-rs 0.28 has no Ryuk (the reaper container other testcontainers
//! implementations start): nothing but the image named here is started, and nothing is
//! pulled for testcontainers' own use. A container is removed when its
//! [`ContainerAsync`] (here, the [`MisdirectContainer`]) is dropped; a test process killed
//! with SIGKILL leaves it behind (`docker rm -f` it; testcontainers' optional `watchdog`
//! feature, not enabled here, would remove containers on SIGINT/SIGTERM too). Only when the
//! image is missing does testcontainers try to pull `name:tag` from a registry, which fails
//! where none is reachable: build `misdirect:local` first (`scripts/docker-build`).
//!
//! Scenarios whose names need several loopback addresses on one port
//! (`same-cert-different-ip`) do not fit a container, as the README's "In a container" says;
//! a scenario's `body_file`s are not copied in (inline the bodies).

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ::testcontainers::core::{ContainerPort, IntoContainerPort, WaitFor};
use ::testcontainers::runners::AsyncRunner;
use ::testcontainers::{ContainerAsync, CopyToContainer, Image, TestcontainersError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;

use crate::expect::Verdict;
use crate::journal::Event;
use crate::scenario::{self, LoadError, Scenario};

/// The image's default name: `misdirect:local`, as `scripts/docker-build` tags it.
pub const DEFAULT_NAME: &str = "misdirect";
/// The image's default tag.
pub const DEFAULT_TAG: &str = "local";
/// The container port of the first listener whose port is 0 (`MISDIRECT_BASE_PORT`).
pub const BASE_PORT: u16 = 8443;
/// The control API's container port (`MISDIRECT_CONTROL=0.0.0.0:9000`).
pub const CONTROL_PORT: u16 = 9000;
/// Where the scenario is copied in the container.
pub const SCENARIO_PATH: &str = "/scenario.json";

/// How long one control API call may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest control API answer read (the in-memory journal is at most 32 MiB of events).
const CONTROL_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Why the container could not be started or asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The scenario does not load (the same diagnostics as `misdirect validate`).
    #[error("scenario: {0}")]
    Scenario(Box<LoadError>),
    /// A scenario file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// No bundled scenario has this id.
    #[error("no bundled scenario {0:?} (`misdirect scenarios` lists them)")]
    UnknownScenario(String),
    /// Docker or testcontainers failed: no engine, the image is missing, it never became
    /// healthy, …
    #[error("container: {0}")]
    Container(Box<TestcontainersError>),
    /// The control API could not be reached, or answered something that is not HTTP.
    #[error("control API {path}: {message}")]
    Control {
        /// The endpoint asked.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The Docker host testcontainers reports has no address.
    #[error("the Docker host {host:?}: {message}")]
    Host {
        /// The host name.
        host: String,
        /// What went wrong.
        message: String,
    },
    /// The control API answered with an error status.
    #[error("control API {path}: HTTP {status}: {body}")]
    Status {
        /// The endpoint asked.
        path: String,
        /// The status code.
        status: u16,
        /// The answer's body (the control API explains itself in JSON).
        body: String,
    },
}

impl From<LoadError> for Error {
    fn from(err: LoadError) -> Self {
        Error::Scenario(Box::new(err))
    }
}

impl From<TestcontainersError> for Error {
    fn from(err: TestcontainersError) -> Self {
        Error::Container(Box::new(err))
    }
}

/// misdirect's image with one scenario: an [`Image`] for [`AsyncRunner::start`] (directly,
/// or after [`::testcontainers::ImageExt`]'s `with_*`), or started by [`Misdirect::start`].
#[derive(Debug, Clone)]
pub struct Misdirect {
    name: String,
    tag: String,
    scenario: Scenario,
    /// Each listener's name and port inside the container, in listener order.
    listeners: Vec<(String, u16)>,
    ports: Vec<ContainerPort>,
    copy: Vec<CopyToContainer>,
    env: Vec<(String, String)>,
    token: Option<String>,
}

impl Misdirect {
    /// The image with a scenario given as JSON, checked as `misdirect serve` checks it.
    pub fn new(scenario_json: impl Into<Vec<u8>>) -> Result<Misdirect, Error> {
        let json: Vec<u8> = scenario_json.into();
        let (scenario, _warnings) = scenario::from_bytes(&json)?;
        let listeners = container_ports(&scenario);
        let mut ports: Vec<ContainerPort> = Vec::new();
        for port in listeners
            .iter()
            .map(|(_, port)| *port)
            .chain([CONTROL_PORT])
        {
            if !ports.contains(&port.tcp()) {
                ports.push(port.tcp());
            }
        }
        Ok(Misdirect {
            name: DEFAULT_NAME.to_owned(),
            tag: DEFAULT_TAG.to_owned(),
            scenario,
            listeners,
            ports,
            copy: vec![CopyToContainer::new(json, SCENARIO_PATH)],
            env: Vec::new(),
            token: None,
        })
    }

    /// The image with a scenario file.
    pub fn from_path(path: impl AsRef<std::path::Path>) -> Result<Misdirect, Error> {
        let path = path.as_ref();
        let json = std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Misdirect::new(json)
    }

    /// The image with a bundled scenario, by id (`misdirect scenarios` lists them), e.g.
    /// `coalescing-wrong-server`.
    pub fn bundled(id: &str) -> Result<Misdirect, Error> {
        crate::library::BUNDLED
            .iter()
            .find(|(stem, _)| *stem == id)
            .ok_or_else(|| Error::UnknownScenario(id.to_owned()))
            .and_then(|(_, json)| Misdirect::new(json.as_bytes()))
    }

    /// Another image than `misdirect:local`, e.g. one a registry serves.
    pub fn with_image(mut self, name: impl Into<String>, tag: impl Into<String>) -> Misdirect {
        self.name = name.into();
        self.tag = tag.into();
        self
    }

    /// Requires `Authorization: Bearer TOKEN` on the control API (`MISDIRECT_CONTROL_TOKEN`);
    /// the helpers of [`MisdirectContainer`] send it.
    pub fn with_control_token(mut self, token: impl Into<String>) -> Misdirect {
        let token = token.into();
        self.env
            .push(("MISDIRECT_CONTROL_TOKEN".to_owned(), token.clone()));
        self.token = Some(token);
        self
    }

    /// The scenario the container serves.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Each listener's name and port inside the container, in listener order.
    pub fn listener_ports(&self) -> &[(String, u16)] {
        &self.listeners
    }

    /// Starts the container and waits until Docker says it is healthy.
    pub async fn start(self) -> Result<MisdirectContainer, Error> {
        let container = AsyncRunner::start(self).await?;
        MisdirectContainer::new(container).await
    }
}

/// Each listener's port inside the container, as `misdirect serve` binds them with
/// `MISDIRECT_BASE_PORT`: a listener's own port if it has one, the port of the listener its
/// `port_from` names, else the next base port.
fn container_ports(scenario: &Scenario) -> Vec<(String, u16)> {
    let mut next = Some(BASE_PORT);
    let mut ports: Vec<(String, u16)> = Vec::new();
    for listener in &scenario.listeners {
        let from = listener
            .port_from
            .as_ref()
            .and_then(|from| ports.iter().find(|(name, _)| name == from))
            .map(|(_, port)| *port);
        let port = match (from, listener.address.port(), next) {
            (Some(port), _, _) => Some(port),
            (None, 0, Some(base)) => {
                next = base.checked_add(1);
                Some(base)
            }
            (None, 0, None) => None,
            (None, port, _) => Some(port),
        };
        if let Some(port) = port {
            ports.push((listener.name.clone(), port));
        }
    }
    ports
}

impl Image for Misdirect {
    fn name(&self) -> &str {
        &self.name
    }

    fn tag(&self) -> &str {
        &self.tag
    }

    fn ready_conditions(&self) -> Vec<WaitFor> {
        vec![WaitFor::healthcheck()]
    }

    fn env_vars(
        &self,
    ) -> impl IntoIterator<Item = (impl Into<Cow<'_, str>>, impl Into<Cow<'_, str>>)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn copy_to_sources(&self) -> impl IntoIterator<Item = &CopyToContainer> {
        &self.copy
    }

    fn cmd(&self) -> impl IntoIterator<Item = impl Into<Cow<'_, str>>> {
        ["serve", SCENARIO_PATH]
    }

    fn expose_ports(&self) -> &[ContainerPort] {
        &self.ports
    }
}

/// A running misdirect container: the testcontainers handle (it derefs to it; dropping it
/// removes the container) with the mapped ports and the control API's helpers.
pub struct MisdirectContainer {
    container: ContainerAsync<Misdirect>,
    ip: IpAddr,
    control: SocketAddr,
    listeners: Vec<(String, SocketAddr)>,
}

impl MisdirectContainer {
    /// Wraps a container started from a [`Misdirect`] image (say, after `ImageExt`'s
    /// `with_*`): looks up the host and the mapped ports.
    pub async fn new(container: ContainerAsync<Misdirect>) -> Result<MisdirectContainer, Error> {
        let host = container.get_host().await?.to_string();
        let ip = host_ip(&host).await?;
        let control_port = container.get_host_port_ipv4(CONTROL_PORT.tcp()).await?;
        let mut listeners = Vec::new();
        for (name, port) in container.image().listener_ports() {
            let mapped = container.get_host_port_ipv4(port.tcp()).await?;
            listeners.push((name.clone(), SocketAddr::new(ip, mapped)));
        }
        Ok(MisdirectContainer {
            container,
            ip,
            control: SocketAddr::new(ip, control_port),
            listeners,
        })
    }

    /// The container's testcontainers handle.
    pub fn container(&self) -> &ContainerAsync<Misdirect> {
        &self.container
    }

    /// The host address every mapped port is reached on (127.0.0.1 for a local engine).
    pub fn host_ip(&self) -> IpAddr {
        self.ip
    }

    /// Each listener's name and host address (the mapped port), in listener order.
    pub fn listeners(&self) -> &[(String, SocketAddr)] {
        &self.listeners
    }

    /// The host port Docker mapped for the listener named `listener`.
    pub fn listener_port(&self, listener: &str) -> Option<u16> {
        self.listener_addr(listener).map(|addr| addr.port())
    }

    /// The host address (the mapped port) of the listener named `listener`.
    pub fn listener_addr(&self, listener: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(name, _)| name == listener)
            .map(|(_, addr)| *addr)
    }

    /// Every concrete host name of the scenario (wildcards left out) with the host address
    /// a client must resolve it to: the mapped port of the first listener serving it (TLS
    /// listeners first). Request `https://NAME:PORT/` with that address's port, so that SNI,
    /// `Host` and `:authority` carry the name.
    pub fn names(&self) -> Vec<(String, SocketAddr)> {
        let scenario = self.container.image().scenario();
        let mut names: Vec<(String, SocketAddr)> = Vec::new();
        for host in &scenario.hosts {
            let listener = [true, false].iter().find_map(|tls| {
                scenario
                    .listeners
                    .iter()
                    .filter(|l| l.tls == *tls && Scenario::host_on_listener(host, &l.name))
                    .find_map(|l| self.listener_addr(&l.name))
            });
            let Some(addr) = listener else { continue };
            for name in host.names.iter().filter(|n| !n.starts_with("*.")) {
                if !names.iter().any(|(known, _)| known == name) {
                    names.push((name.clone(), addr));
                }
            }
        }
        names
    }

    /// The control API's base URL on the host, e.g. `http://127.0.0.1:32771`.
    pub fn control_url(&self) -> String {
        format!("http://{}", self.control)
    }

    /// The CA certificate to trust, as PEM (`GET /ca.pem`).
    pub async fn ca_pem(&self) -> Result<String, Error> {
        let body = self.call("GET", "/ca.pem", &[]).await?;
        String::from_utf8(body).map_err(|_| Error::Control {
            path: "/ca.pem".to_owned(),
            message: "the CA is not UTF-8 text".to_owned(),
        })
    }

    /// The verdict on the journal so far (`GET /verdict`); `allow_not_exercised` passes an
    /// expectation nothing exercised, as `--allow-not-exercised` does.
    pub async fn verdict(&self, allow_not_exercised: bool) -> Result<Verdict, Error> {
        let path = format!("/verdict?allow_not_exercised={allow_not_exercised}");
        self.json(&path).await
    }

    /// Every event in memory (`GET /journal`).
    pub async fn journal(&self) -> Result<Vec<Event>, Error> {
        self.json("/journal").await
    }

    /// The client plan with the container's ports (`GET /plan`): the ports inside the
    /// container, not the mapped ones.
    pub async fn plan(&self) -> Result<serde_json::Value, Error> {
        self.json("/plan").await
    }

    /// Clears the journal and every counter between test cases (`POST /reset`); returns the
    /// sequence number of the `reset` event.
    pub async fn reset(&self) -> Result<u64, Error> {
        let value: serde_json::Value = parse("/reset", &self.call("POST", "/reset", &[]).await?)?;
        value
            .get("seq")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| Error::Control {
                path: "/reset".to_owned(),
                message: format!("no sequence number in {value}"),
            })
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        parse(path, &self.call("GET", path, &[]).await?)
    }

    /// One HTTP/1.1 exchange with the control API (hyper's client), on a connection of its
    /// own, bounded in time and size.
    async fn call(&self, method: &str, path: &str, body: &[u8]) -> Result<Vec<u8>, Error> {
        let failed = |message: String| Error::Control {
            path: path.to_owned(),
            message,
        };
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, self.control.to_string());
        if let Some(token) = self.container.image().token.as_deref() {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| failed(e.to_string()))?;
        let exchange = async {
            let stream = tokio::net::TcpStream::connect(self.control)
                .await
                .map_err(|e| format!("{e} ({})", self.control))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
            // Ends when the exchange is over (the sender dropped) or the peer goes.
            tokio::spawn(connection);
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), CONTROL_MAX_BYTES)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) = tokio::time::timeout(CONTROL_TIMEOUT, exchange)
            .await
            .map_err(|_| failed(format!("no answer within {CONTROL_TIMEOUT:?}")))?
            .map_err(failed)?;
        if !(200..300).contains(&status) {
            return Err(Error::Status {
                path: path.to_owned(),
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok(body.to_vec())
    }
}

impl std::ops::Deref for MisdirectContainer {
    type Target = ContainerAsync<Misdirect>;

    fn deref(&self) -> &ContainerAsync<Misdirect> {
        &self.container
    }
}

fn parse<T: serde::de::DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::Control {
        path: path.to_owned(),
        message: format!("unexpected JSON: {e}"),
    })
}

/// The address of the Docker host name testcontainers reports (`localhost` for a local
/// engine): IPv4 first, since the ports asked for are the IPv4 mappings.
async fn host_ip(host: &str) -> Result<IpAddr, Error> {
    if host == "localhost" {
        return Ok(Ipv4Addr::LOCALHOST.into());
    }
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(ip);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| Error::Host {
            host: host.to_owned(),
            message: format!("cannot resolve it: {e}"),
        })?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .map(|a| a.ip())
        .ok_or_else(|| Error::Host {
            host: host.to_owned(),
            message: "it resolves to no address".to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_get_base_ports_in_order_and_their_own_ports_otherwise() {
        let image = Misdirect::new(
            br#"{
                "certificates": [{"name": "shared", "sans": ["a.test"]}],
                "listeners": [
                    {"name": "one"},
                    {"name": "fixed", "address": "127.0.0.1:9443"},
                    {"name": "two", "tls": false},
                    {"name": "beside", "address": "127.0.0.2:0", "port_from": "one"}
                ],
                "hosts": [{"names": ["a.test"], "certificate": "shared"}]
            }"# as &[u8],
        )
        .expect("a valid scenario");
        assert_eq!(
            image.listener_ports(),
            [
                ("one".to_owned(), 8443),
                ("fixed".to_owned(), 9443),
                ("two".to_owned(), 8444),
                ("beside".to_owned(), 8443)
            ]
        );
        assert_eq!(
            image.expose_ports(),
            [8443.tcp(), 9443.tcp(), 8444.tcp(), 9000.tcp()]
        );
        let cmd: Vec<String> = image
            .cmd()
            .into_iter()
            .map(|c| Cow::<str>::into_owned(c.into()))
            .collect();
        assert_eq!(cmd, ["serve", "/scenario.json"]);
    }

    #[test]
    fn every_bundled_scenario_loads_and_an_unknown_one_is_named() {
        for (id, _) in crate::library::BUNDLED {
            let image = Misdirect::bundled(id).expect("a bundled scenario loads");
            assert!(!image.listener_ports().is_empty(), "{id}");
        }
        assert!(matches!(
            Misdirect::bundled("no-such"),
            Err(Error::UnknownScenario(_))
        ));
    }
}
