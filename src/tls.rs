//! TLS for the listeners: rustls `ServerConfig`s whose certificate is chosen by SNI exactly
//! as the scenario says — including certificates that do not cover the name, a default for
//! unknown or absent SNI, or a failed handshake. rustls' own SNI resolver cannot do this: it
//! refuses certificates that do not cover their name and has no default.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::pki::Pki;
use crate::scenario::{ListenerSpec, Scenario, SniFallback, name_matches};

/// Why a listener's TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused a key or the protocol versions.
    #[error("listener {listener:?}: {source}")]
    Rustls {
        /// Which listener.
        listener: String,
        /// rustls' error.
        source: rustls::Error,
    },
}

/// The ring provider: the only one this crate builds with.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Which certificate a listener presents for a ClientHello's SNI, by the scenario's rules:
/// the certificate of the host on this listener that answers to the SNI; otherwise the
/// listener's fallback for unknown (or absent) SNI. `None` means: fail the handshake.
pub fn choose_certificate<'a>(
    scenario: &'a Scenario,
    listener: &'a ListenerSpec,
    sni: Option<&str>,
) -> Option<&'a str> {
    let by_host = sni.and_then(|sni| {
        scenario
            .hosts
            .iter()
            .filter(|host| Scenario::host_on_listener(host, &listener.name))
            .find(|host| host.names.iter().any(|n| name_matches(n, sni)))
            .and_then(|host| host.certificate.as_deref())
    });
    let fallback = match sni {
        Some(_) => &listener.unknown_sni,
        None => listener.no_sni.as_ref().unwrap_or(&listener.unknown_sni),
    };
    by_host.or(match fallback {
        SniFallback::Reject => None,
        SniFallback::Certificate(name) => Some(name.as_str()),
    })
}

/// Chooses the certificate per [`choose_certificate`] for each handshake.
#[derive(Debug)]
struct SniResolver {
    scenario: Arc<Scenario>,
    listener: ListenerSpec,
    keys: BTreeMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = choose_certificate(&self.scenario, &self.listener, hello.server_name())?;
        self.keys.get(name).cloned()
    }
}

/// Builds the rustls configuration of one TLS listener.
pub fn server_config(
    scenario: &Arc<Scenario>,
    listener: &ListenerSpec,
    pki: &Pki,
) -> Result<Arc<ServerConfig>, TlsError> {
    let fail = |source| TlsError::Rustls {
        listener: listener.name.clone(),
        source,
    };
    let provider = provider();
    let mut keys = BTreeMap::new();
    for (name, leaf) in &pki.leaves {
        let signing_key = provider
            .key_provider
            .load_private_key(leaf.private_key())
            .map_err(fail)?;
        keys.insert(
            name.clone(),
            Arc::new(CertifiedKey::new(leaf.chain.clone(), signing_key)),
        );
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(fail)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver {
            scenario: Arc::clone(scenario),
            listener: listener.clone(),
            keys,
        }));
    config.alpn_protocols = listener
        .alpn
        .iter()
        .map(|alpn| alpn.wire_id().to_vec())
        .collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> Scenario {
        let json = r#"{
          "certificates": [
            {"name": "a", "sans": ["a.test"]},
            {"name": "wild", "sans": ["*.site.test"]},
            {"name": "wrong", "sans": ["elsewhere.test"]}
          ],
          "listeners": [
            {"name": "strict"},
            {"name": "lenient", "address": "127.0.0.2:0",
             "unknown_sni": {"certificate": "wrong"}, "no_sni": {"certificate": "a"}}
          ],
          "hosts": [
            {"names": ["a.test"], "certificate": "a"},
            {"names": ["*.site.test"], "certificate": "wild", "listeners": ["lenient"]}
          ]
        }"#;
        match crate::scenario::from_bytes(json.as_bytes()) {
            Ok((s, _)) => s,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn sni_picks_the_host_certificate_on_that_listener_only() {
        let s = scenario();
        let strict = &s.listeners[0];
        let lenient = &s.listeners[1];
        assert_eq!(choose_certificate(&s, strict, Some("a.test")), Some("a"));
        assert_eq!(choose_certificate(&s, strict, Some("x.site.test")), None);
        assert_eq!(
            choose_certificate(&s, lenient, Some("x.site.test")),
            Some("wild")
        );
    }

    #[test]
    fn unknown_and_absent_sni_use_the_listener_fallbacks() {
        let s = scenario();
        let strict = &s.listeners[0];
        let lenient = &s.listeners[1];
        assert_eq!(choose_certificate(&s, strict, Some("nobody.test")), None);
        assert_eq!(choose_certificate(&s, strict, None), None);
        assert_eq!(
            choose_certificate(&s, lenient, Some("nobody.test")),
            Some("wrong")
        );
        assert_eq!(choose_certificate(&s, lenient, None), Some("a"));
    }
}
