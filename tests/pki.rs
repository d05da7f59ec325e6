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

// --- One certificate folder shared by servers started together (pki::Lease) ---

use misdirect::pki::{Lease, Manifest, PkiError, SUBFOLDER_PREFIX};
use rustls::pki_types::pem::PemObject;

const ONE_LEAF: &str = r#"{
  "certificates": [{"name": "site", "sans": ["a.test", "b.test"]}],
  "hosts": [{"names": ["a.test", "b.test"], "certificate": "site"}]
}"#;

fn one_leaf_with_ca(common_name: &str) -> Scenario {
    scenario(&ONE_LEAF.replacen(
        '{',
        &format!(r#"{{"ca": {{"common_name": "{common_name}"}},"#),
        1,
    ))
}

/// Verifies the leaf *file* the manifest names against the CA *file* it names, as a client
/// given those paths would.
fn verify_files(manifest: &Manifest, leaf: &str, name: &str) -> Result<(), rustls::Error> {
    let ca = CertificateDer::from_pem_file(&manifest.ca.cert).expect("CA file holds a certificate");
    let cert = CertificateDer::from_pem_file(&manifest.certificates[leaf].cert)
        .expect("leaf file holds a certificate");
    let server_name = ServerName::try_from(name.to_owned()).expect("valid server name");
    verifier(&ca)
        .verify_server_cert(&cert, &[], &server_name, &[], UnixTime::now())
        .map(|_| ())
}

fn take(scenario: &Scenario, dir: &Path, reuse: bool) -> (Lease, Pki, Manifest) {
    match Lease::take(scenario, dir, reuse, OffsetDateTime::now_utc()) {
        Ok(taken) => taken,
        Err(err) => panic!("lease on {}: {err}", dir.display()),
    }
}

#[test]
fn eight_servers_taking_one_folder_at_once_each_verify_against_their_own_ca_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = dir.path().join("certs");
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let taken: Vec<(Lease, Pki, Manifest)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                let certs = certs.clone();
                scope.spawn(move || {
                    barrier.wait();
                    take(&scenario(ONE_LEAF), &certs, false)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let owners: Vec<_> = taken.iter().filter(|(l, _, _)| l.owns_folder()).collect();
    assert_eq!(owners.len(), 1, "exactly one owns the folder");
    let (owner, owner_pki, owner_manifest) = owners[0];
    assert_eq!(owner.files_dir(), certs);
    assert_eq!(owner_manifest.ca.cert, certs.join("ca.pem"));
    let mut folders = std::collections::BTreeSet::new();
    // Checked after every server wrote: nothing one wrote replaced another's files.
    for (lease, pki, manifest) in &taken {
        assert!(folders.insert(lease.files_dir().to_owned()), "shared files");
        verify_files(manifest, "site", "b.test")
            .expect("own leaf file verifies against own CA file");
        verify(pki, "site", "a.test").expect("served chain verifies");
        // The same scenario asks for the same CA: the owner's, which clients may trust once.
        assert_eq!(pki.ca.cert_der, owner_pki.ca.cert_der);
        if !lease.owns_folder() {
            let name = lease
                .files_dir()
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            assert!(name.starts_with(SUBFOLDER_PREFIX), "{name}");
            assert_eq!(lease.files_dir().parent(), Some(certs.as_path()));
            assert_eq!(manifest.ca.reused, Some(true));
            assert_eq!(mode(&manifest.ca.key), 0o600);
            assert!(lease.files_dir().join("manifest.json").is_file());
        }
    }
    assert_eq!(owner_manifest.ca.reused, Some(false));
}

#[test]
fn a_server_asking_for_another_ca_gets_one_of_its_own_and_reuse_takes_the_owners() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_owner, owner_pki, owner_manifest) =
        take(&one_leaf_with_ca("first CA"), dir.path(), false);
    let (other, other_pki, other_manifest) =
        take(&one_leaf_with_ca("second CA"), dir.path(), false);
    assert!(!other.owns_folder());
    assert_ne!(other_pki.ca.cert_der, owner_pki.ca.cert_der);
    assert_eq!(other_manifest.ca.reused, Some(false));
    verify_files(&other_manifest, "site", "a.test").expect("own CA file");
    verify_files(&owner_manifest, "site", "a.test").expect("owner's files untouched");
    // Another key type is another CA too.
    let mut p384 = one_leaf_with_ca("first CA");
    p384.ca.key = misdirect::scenario::KeyType::EcdsaP384;
    let (_p384, p384_pki, _) = take(&p384, dir.path(), false);
    assert_ne!(p384_pki.ca.cert_der, owner_pki.ca.cert_der);
    // Asked to reuse the folder's CA, a server takes it whatever its name.
    let (reusing, reusing_pki, reusing_manifest) =
        take(&one_leaf_with_ca("second CA"), dir.path(), true);
    assert!(!reusing.owns_folder());
    assert_eq!(reusing_pki.ca.cert_der, owner_pki.ca.cert_der);
    verify_files(&reusing_manifest, "site", "a.test").expect("owner's CA, copied");
}

#[test]
fn a_folder_whose_servers_are_gone_is_owned_afresh_and_their_subfolders_removed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (first, first_pki, _) = take(&scenario(ONE_LEAF), dir.path(), false);
    let (second, _, _) = take(&scenario(ONE_LEAF), dir.path(), false);
    let subfolder = second.files_dir().to_owned();
    assert!(subfolder.is_dir());
    drop(first);
    drop(second);
    let (third, third_pki, manifest) = take(&scenario(ONE_LEAF), dir.path(), false);
    assert!(third.owns_folder());
    assert!(!subfolder.exists(), "a gone server's subfolder is removed");
    // Without reuse, a new owner makes a new CA, as a lone server always has.
    assert_ne!(third_pki.ca.cert_der, first_pki.ca.cert_der);
    verify_files(&manifest, "site", "a.test").expect("verifies");
    drop(third);
    let (fourth, fourth_pki, _) = take(&scenario(ONE_LEAF), dir.path(), true);
    assert!(fourth.owns_folder());
    assert_eq!(
        fourth_pki.ca.cert_der, third_pki.ca.cert_der,
        "reuse keeps it"
    );
}

#[test]
fn writing_certificates_into_a_folder_a_live_server_owns_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (lease, _, _) = take(&scenario(ONE_LEAF), dir.path(), false);
    let ca_before = std::fs::read(dir.path().join("ca.pem")).expect("ca");
    let pki =
        Pki::generate(&scenario(ONE_LEAF), None, OffsetDateTime::now_utc()).expect("generates");
    let err = pki.write(dir.path()).expect_err("refused while served");
    assert!(matches!(err, PkiError::InUse { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("another misdirect"), "{text}");
    #[cfg(target_os = "linux")]
    assert!(
        text.contains(&format!("(pid {}?)", std::process::id())),
        "{text}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("ca.pem")).expect("ca"),
        ca_before
    );
    drop(lease);
    pki.write(dir.path()).expect("free once the server is gone");
}

#[test]
fn a_reload_is_signed_by_the_same_ca_and_written_where_the_server_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_owner, _, _) = take(&scenario(ONE_LEAF), dir.path(), false);
    let (lease, pki, manifest) = take(&one_leaf_with_ca("own CA"), dir.path(), false);
    let reloaded = lease
        .generate(&scenario(MIXED), OffsetDateTime::now_utc())
        .expect("generates");
    assert_eq!(reloaded.ca.cert_der, pki.ca.cert_der);
    let written = lease.write(&reloaded).expect("writes");
    assert_eq!(written.ca.cert, manifest.ca.cert);
    assert!(
        written.certificates["multi"]
            .cert
            .starts_with(lease.files_dir())
    );
    verify_files(&written, "multi", "a.test").expect("reloaded leaf file verifies");
    // The subfolder is still this server's: a new server does not take or remove it.
    let (next, _, _) = take(&scenario(ONE_LEAF), dir.path(), false);
    assert_ne!(next.files_dir(), lease.files_dir());
    assert!(lease.files_dir().join("multi.pem").is_file());
}

#[test]
fn a_file_written_as_owned_is_refused_to_a_second_writer_until_released() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ready.json");
    let what = "is serving with this ready file";
    let first = misdirect::pki::write_atomic_owned(&path, b"one\n", 0o644, what).expect("first");
    let err = misdirect::pki::write_atomic_owned(&path, b"two\n", 0o644, what)
        .expect_err("second refused");
    assert!(err.to_string().contains("another misdirect"), "{err}");
    assert!(err.to_string().contains(what), "{err}");
    assert_eq!(std::fs::read(&path).expect("file"), b"one\n");
    drop(first);
    let _second =
        misdirect::pki::write_atomic_owned(&path, b"two\n", 0o644, what).expect("free again");
    assert_eq!(std::fs::read(&path).expect("file"), b"two\n");
}
