//! The harness: a [`Server`] composed with what misdirect serves beyond a scenario — the
//! browser client page, a route on every host — and the readiness a launcher learns, control
//! API included. `cli` starts one (and the control API beside it), `run` judges a client
//! against one, and the control API drives one. The server below knows none of this.

use std::sync::Arc;

use crate::client::{self, ResolvedStep};
use crate::ready::Ready;
use crate::scenario::Scenario;
use crate::server::{self, ReloadError, Reloaded, ServeError, ServeOptions, Server};

/// A running harness. Dropping it stops the server; [`Harness::shutdown`] waits for it.
pub struct Harness {
    server: Server,
    handle: Handle,
}

/// A cheap, cloneable handle to a running harness; derefs to the [`server::Handle`] for the
/// journal, the verdict and reset.
#[derive(Clone)]
pub struct Handle {
    server: server::Handle,
    ready: Arc<Ready>,
}

impl Harness {
    /// Writes the certificates, binds the listeners, composes the client page from their
    /// real ports and starts serving. `control_url` is the control API's base URL, when the
    /// caller runs one (the control API sits above the harness), for the readiness line and the client's
    /// environment. When this returns, the harness is ready.
    pub async fn start(
        scenario: Scenario,
        options: ServeOptions,
        control_url: Option<String>,
    ) -> Result<Harness, ServeError> {
        let bound = Server::bind(scenario, options).await?;
        let mut ready = bound.ready().clone();
        ready.control = control_url;
        ready.names = client::ready_names(bound.scenario(), &ready);
        let routes = vec![client::page_route(bound.scenario(), &ready)];
        let server = bound.serve(routes)?;
        let handle = Handle {
            server: server.handle(),
            ready: Arc::new(ready),
        };
        Ok(Harness { server, handle })
    }

    /// A handle that can be cloned and moved into tasks.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Runs `task` beside the server; [`Harness::shutdown`] waits for it, so it should end
    /// when the shutdown token is cancelled.
    pub fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.server.spawn(task);
    }

    /// Stops the server: see [`Server::shutdown`].
    pub async fn shutdown(&self, reason: &str) {
        self.server.shutdown(reason).await;
    }
}

impl std::ops::Deref for Harness {
    type Target = Handle;

    fn deref(&self) -> &Handle {
        &self.handle
    }
}

impl std::ops::Deref for Handle {
    type Target = server::Handle;

    fn deref(&self) -> &server::Handle {
        &self.server
    }
}

impl Handle {
    /// The readiness information, control API included.
    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    /// The readiness information with the names of the scenario in force now (a scenario
    /// loaded since may serve other names).
    pub fn ready_now(&self) -> Ready {
        let mut ready = (*self.ready).clone();
        ready.names = client::ready_names(&self.scenario(), &ready);
        ready
    }

    /// The scenario's client plan with real ports.
    pub fn plan(&self) -> Vec<ResolvedStep> {
        client::resolved_plan(&self.scenario(), &self.ready)
    }

    /// The environment a client command runs with (`MISDIRECT_*`).
    pub fn environment(&self) -> Vec<(String, String)> {
        client::environment(&self.scenario(), &self.ready, self.ready.control.as_deref())
    }

    /// Puts another scenario in force (see [`server::Handle::reload`]), with the client page
    /// built for it.
    pub fn reload(&self, scenario: Scenario) -> Result<Reloaded, ReloadError> {
        let routes = vec![client::page_route(&scenario, &self.ready)];
        self.server.reload_with_routes(scenario, routes)
    }
}
