//! Certificates as an independent verifier sees them: x509-parser for the fields, rustls'
//! webpki verifier (and `openssl verify` where installed) for the chain.

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use misdirect::pki::Pki;
use misdirect::scenario::{self, Scenario};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

fn scenario(json: &str) -> Scenario {
    match scenario::from_bytes(json.as_bytes()) {
        Ok((scenario, _)) => scenario,
        Err(err) => panic!("test scenario is invalid:\n{err}"),
    }
}

const MIXED: &str = r#"{
  "ca": {"common_name": "pki test CA"},
  "certificates": [
    {"name": "multi", "sans": ["a.test", "*.site.test", "127.0.0.2", "::1"]},
    {"name": "p384", "sans": ["p384.test"], "key": "ecdsa-p384"},
    {"name": "ed", "sans": ["ed.test"], "key": "ed25519"},
    {"name": "expired", "sans": ["old.test"], "validity": {"not_before": "-30d", "not_after": "-1d"}},
    {"name": "future", "sans": ["new.test"], "validity": {"not_before": "+1d", "not_after": "+30d"}},
    {"name": "selfie", "sans": ["self.test"], "issuer": "self", "common_name": "selfie"}
  ],
  "hosts": [{"names": ["a.test"], "certificate": "multi"}]
}"#;

fn parse(der: &[u8]) -> X509Certificate<'_> {
    match X509Certificate::from_der(der) {
        Ok((_, cert)) => cert,
        Err(e) => panic!("generated certificate does not parse: {e}"),
    }
}

fn sans_of(cert: &X509Certificate<'_>) -> Vec<String> {
    let ext = cert
        .subject_alternative_name()
        .expect("SAN extension parses")
        .expect("SAN extension present");
    ext.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => dns.to_string(),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).expect("4 bytes")).to_string(),
                16 => IpAddr::from(<[u8; 16]>::try_from(*bytes).expect("16 bytes")).to_string(),
                n => panic!("IP SAN of {n} bytes"),
            },
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect()
}

fn verifier(ca: &CertificateDer<'static>) -> Arc<WebPkiServerVerifier> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("CA is a valid trust anchor");
    WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .expect("verifier builds")
}

fn verify(pki: &Pki, leaf: &str, name: &str) -> Result<(), rustls::Error> {
    let leaf = &pki.leaves[leaf];
    let server_name = ServerName::try_from(name.to_owned()).expect("valid server name");
    verifier(&pki.ca.cert_der)
        .verify_server_cert(
            &leaf.chain[0],
            &leaf.chain[1..],
            &server_name,
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
}

#[test]
fn sans_are_exactly_as_asked_dns_wildcard_and_ip() {
    let pki = Pki::generate(&scenario(MIXED), None, OffsetDateTime::now_utc()).expect("generates");
    let cert = parse(&pki.leaves["multi"].chain[0]);
    assert_eq!(
        sans_of(&cert),
        ["a.test", "*.site.test", "127.0.0.2", "::1"]
    );
}

#[test]
fn chain_verifies_against_the_ca_for_each_covered_name() {
    let pki = Pki::generate(&scenario(MIXED), None, OffsetDateTime::now_utc()).expect("generates");
    for (leaf, name) in [
        ("multi", "a.test"),
        ("multi", "x.site.test"),
        ("multi", "127.0.0.2"),
        ("multi", "::1"),
        ("p384", "p384.test"),
        ("ed", "ed.test"),
    ] {
        verify(&pki, leaf, name).unwrap_or_else(|e| panic!("{leaf} for {name}: {e}"));
    }
}

#[test]
fn names_outside_the_sans_are_rejected_by_the_verifier() {
    let pki = Pki::generate(&scenario(MIXED), None, OffsetDateTime::now_utc()).expect("generates");
    for name in ["b.test", "site.test", "x.y.site.test", "127.0.0.1"] {
        let err = verify(&pki, "multi", name).expect_err(name);
        assert!(
            matches!(err, rustls::Error::InvalidCertificate(_)),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn expired_and_not_yet_valid_windows_are_as_asked() {
    let now = OffsetDateTime::now_utc();
    let pki = Pki::generate(&scenario(MIXED), None, now).expect("generates");
    let day = time::Duration::days(1);
    let expired = parse(&pki.leaves["expired"].chain[0]);
    let window = expired.validity();
    let not_after = OffsetDateTime::from_unix_timestamp(window.not_after.timestamp()).unwrap();
    let not_before = OffsetDateTime::from_unix_timestamp(window.not_before.timestamp()).unwrap();
    assert!((not_after - (now - day)).abs() < time::Duration::seconds(2));
    assert!((not_before - (now - time::Duration::days(30))).abs() < time::Duration::seconds(2));
    let err = verify(&pki, "expired", "old.test").expect_err("expired must not verify");
    assert!(format!("{err:?}").contains("Expired"), "{err:?}");
    let err = verify(&pki, "future", "new.test").expect_err("future must not verify");
    assert!(format!("{err:?}").contains("NotValidYet"), "{err:?}");
}

#[test]
fn ca_and_leaves_have_distinct_subjects_and_only_the_ca_is_a_ca() {
    let pki = Pki::generate(&scenario(MIXED), None, OffsetDateTime::now_utc()).expect("generates");
    let ca = parse(&pki.ca.cert_der);
    assert!(ca.is_ca());
    assert_eq!(ca.subject().to_string(), "CN=pki test CA, O=misdirect");
    for leaf in pki.leaves.values() {
        let cert = parse(&leaf.chain[0]);
        assert!(!cert.is_ca(), "{} must not be a CA", leaf.name);
        assert_ne!(cert.subject(), ca.subject(), "{}", leaf.name);
    }
    let selfie = parse(&pki.leaves["selfie"].chain[0]);
    assert_eq!(selfie.subject(), selfie.issuer());
    assert_eq!(pki.leaves["selfie"].chain.len(), 1);
    let err = verify(&pki, "selfie", "self.test").expect_err("self-signed must not verify");
    assert!(matches!(err, rustls::Error::InvalidCertificate(_)));
}

#[test]
fn spki_hash_is_sha256_of_the_certificates_public_key() {
    let pki = Pki::generate(&scenario(MIXED), None, OffsetDateTime::now_utc()).expect("generates");
    use base64::Engine;
    for leaf in pki.leaves.values() {
        let cert = parse(&leaf.chain[0]);
        let spki = cert.tbs_certificate.subject_pki.raw;
        let digest = ring::digest::digest(&ring::digest::SHA256, spki);
        let expected = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
        assert_eq!(leaf.spki_sha256, expected, "{}", leaf.name);
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("file exists")
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[test]
fn written_keys_are_private_and_certificates_readable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::generate(&scenario(MIXED), None, OffsetDateTime::now_utc()).expect("generates");
    let manifest = pki.write(dir.path()).expect("writes");
    assert_eq!(mode(&manifest.ca.key), 0o600);
    assert_eq!(mode(&manifest.ca.cert), 0o644);
    for entry in manifest.certificates.values() {
        assert_eq!(mode(&entry.key), 0o600, "{}", entry.key.display());
        assert_eq!(mode(&entry.cert), 0o644);
    }
    let spki = std::fs::read_to_string(dir.path().join("multi.spki")).expect("spki file");
    assert_eq!(spki.trim(), pki.leaves["multi"].spki_sha256);
}

#[test]
fn a_reused_ca_signs_the_new_leaves() {
    let dir = tempfile::tempdir().expect("temp dir");
    let now = OffsetDateTime::now_utc();
    let first = Pki::generate(&scenario(MIXED), None, now).expect("generates");
    first.write(dir.path()).expect("writes");
    let second = Pki::generate(&scenario(MIXED), Some(dir.path()), now).expect("reuses");
    assert!(second.ca.reused);
    assert_eq!(second.ca.cert_der, first.ca.cert_der);
    assert_ne!(
        second.leaves["multi"].chain[0],
        first.leaves["multi"].chain[0]
    );
    verify(&second, "multi", "a.test").expect("new leaf chains to the reused CA");
    let manifest = second.write(dir.path()).expect("writes again");
    assert_eq!(manifest.ca.reused, Some(true));
}

#[test]
fn reuse_refuses_a_certificate_without_its_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::generate(&scenario(MIXED), None, OffsetDateTime::now_utc()).expect("generates");
    pki.write(dir.path()).expect("writes");
    std::fs::remove_file(dir.path().join("ca.key")).expect("remove key");
    let err = Pki::generate(
        &scenario(MIXED),
        Some(dir.path()),
        OffsetDateTime::now_utc(),
    )
    .err()
    .expect("must refuse");
    assert!(err.to_string().contains("ca.key is missing"), "{err}");
}

#[test]
fn openssl_verify_accepts_the_chain() {
    if !common::have_tool(
        "openssl_verify_accepts_the_chain",
        "openssl",
        "the Debian package `openssl`",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::generate(&scenario(MIXED), None, OffsetDateTime::now_utc()).expect("generates");
    let manifest = pki.write(dir.path()).expect("writes");
    let run = |leaf: &str, extra: &[&str]| {
        Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&manifest.ca.cert)
            .args(extra)
            .arg(&manifest.certificates[leaf].cert)
            .output()
            .expect("openssl runs")
    };
    let ok = run("multi", &["-verify_hostname", "a.test"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let wild = run("multi", &["-verify_hostname", "x.site.test"]);
    assert!(wild.status.success());
    let ip = run("multi", &["-verify_ip", "127.0.0.2"]);
    assert!(ip.status.success());
    let wrong = run("multi", &["-verify_hostname", "b.test"]);
    assert!(!wrong.status.success());
    let expired = run("expired", &[]);
    assert!(!expired.status.success());
    let text = String::from_utf8_lossy(&expired.stdout).to_string()
        + &String::from_utf8_lossy(&expired.stderr);
    assert!(text.contains("expired"), "{text}");
}

#[cfg(feature = "rsa")]
#[test]
fn rsa_2048_leaf_under_an_rsa_ca_verifies() {
    let pki = Pki::generate(
        &scenario(
            r#"{"ca": {"key": "rsa2048"},
                "certificates": [{"name": "r", "sans": ["r.test"], "key": "rsa2048"}],
                "hosts": [{"names": ["r.test"], "certificate": "r"}]}"#,
        ),
        None,
        OffsetDateTime::now_utc(),
    )
    .expect("generates");
    let cert = parse(&pki.leaves["r"].chain[0]);
    assert_eq!(
        cert.public_key().parsed().expect("key parses").key_size(),
        2048
    );
    verify(&pki, "r", "r.test").expect("RSA chain verifies");
}
