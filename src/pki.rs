//! The scenario's PKI: a CA (generated, or reused from the certificate folder) and every
//! named leaf certificate, generated with rcgen and written as PEM files a client can trust.
//!
//! # One folder, many servers
//!
//! Servers started together in one certificate folder never overwrite each other's files
//! ([`Lease::take`]). Decisions are made one process at a time under a lock on the folder
//! (flock), and every file is written atomically:
//!
//! - The first server to find the folder unused **owns** it: it writes its CA (fresh, or the
//!   one already there when reuse is asked), its leaves and `manifest.json` at the top of the
//!   folder, as a lone server always has, and keeps `ca.pem` locked while it runs.
//! - A server that finds `ca.pem` locked by a live owner writes into a subfolder of its own,
//!   `pid-<pid>` (`pid-<pid>-2`, … when that is taken). It uses the owner's CA — copied into
//!   its subfolder, so that clients trusting the top-level `ca.pem` trust it too — when reuse
//!   is asked or that CA has the common name and key type its scenario asks for; otherwise a
//!   fresh CA of its own. Subfolders of servers that are gone are removed by the next server.
//!
//! Either way the files a server's readiness names are its own and stay as they are while it
//! runs. `misdirect certs` ([`Pki::write`]) refuses a folder a live server owns.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer as RcgenIssuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::Serialize;
use time::OffsetDateTime;

use crate::scenario::{CaSpec, CertificateSpec, Issuer, KeyType, Scenario};

/// File names inside the certificate folder.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA's private key file.
pub const CA_KEY_FILE: &str = "ca.key";
/// The manifest listing every file, SAN and SPKI hash.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Prefix of the subfolder a server writes into when another live server owns the folder:
/// `pid-<pid>`, or `pid-<pid>-<n>` when that one is taken.
pub const SUBFOLDER_PREFIX: &str = "pid-";

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters or key.
    #[error("certificate {name:?}: {source}")]
    Generate {
        /// Which certificate (`ca` for the CA).
        name: String,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// The key type is not available in this build.
    #[error("certificate {name:?}: key type {key:?} needs misdirect built with `--features rsa`")]
    KeyTypeUnavailable {
        /// Which certificate.
        name: String,
        /// The key type asked for.
        key: KeyType,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An existing CA in the folder could not be used.
    #[error("{path}: cannot reuse the CA there: {why}")]
    Reuse {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        why: String,
    },
    /// Another live process holds the lock on a file this one would write.
    #[error("{path}: another misdirect{} {what}", holder_note(*.holder))]
    InUse {
        /// The file or folder.
        path: PathBuf,
        /// The process holding it, when it can be told (`/proc/locks`).
        holder: Option<u32>,
        /// What that process does with it, and what to do.
        what: String,
    },
}

fn holder_note(holder: Option<u32>) -> String {
    holder.map_or_else(String::new, |pid| format!(" (pid {pid}?)"))
}

/// The CA that signs the scenario's certificates.
pub struct Ca {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA certificate, DER.
    pub cert_der: CertificateDer<'static>,
    /// SHA-256 of the CA's SubjectPublicKeyInfo, base64.
    pub spki_sha256: String,
    /// Whether it was loaded from the folder rather than generated now.
    pub reused: bool,
    key_pem: String,
    issuer: RcgenIssuer<'static, KeyPair>,
}

/// A generated leaf certificate and its key.
pub struct Leaf {
    /// The certificate's name in the scenario.
    pub name: String,
    /// Its SANs as asked.
    pub sans: Vec<String>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The chain a server sends: the leaf, then the CA when the CA issued it.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key, PKCS#8 DER.
    pub key_der: PrivatePkcs8KeyDer<'static>,
    /// The private key, PEM.
    pub key_pem: String,
    /// SHA-256 of the leaf's SubjectPublicKeyInfo, base64: what Chromium's
    /// `--ignore-certificate-errors-spki-list` takes.
    pub spki_sha256: String,
    /// Start of validity, as generated.
    pub not_before: OffsetDateTime,
    /// End of validity, as generated.
    pub not_after: OffsetDateTime,
    /// Who signed it.
    pub issuer: Issuer,
}

impl Leaf {
    /// The private key in the form rustls takes.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone_key())
    }

    /// The chain as PEM: the leaf, then the CA when the CA issued it (a self-signed leaf is
    /// its own chain).
    pub fn chain_pem(&self, ca: &Ca) -> String {
        match self.issuer {
            Issuer::Ca => format!("{}{}", self.cert_pem, ca.cert_pem),
            Issuer::SelfSigned => self.cert_pem.clone(),
        }
    }
}

/// A CA and the scenario's leaves.
pub struct Pki {
    /// The CA.
    pub ca: Ca,
    /// Leaves by name.
    pub leaves: BTreeMap<String, Leaf>,
}

/// Where each file went, for the readiness line and `misdirect certs`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Manifest {
    /// The CA.
    pub ca: ManifestEntry,
    /// Every leaf by name.
    pub certificates: BTreeMap<String, ManifestEntry>,
}

/// Files and facts of one certificate.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Certificate PEM file.
    pub cert: PathBuf,
    /// Private key PEM file (mode 0600).
    pub key: PathBuf,
    /// Leaf + issuing CA PEM file (leaves only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<PathBuf>,
    /// SANs (leaves only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sans: Vec<String>,
    /// SHA-256 of the SubjectPublicKeyInfo, base64.
    pub spki_sha256: String,
    /// Whether the CA was reused from the folder (CA only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reused: Option<bool>,
}

impl Pki {
    /// Generates the CA (or reuses the one in `reuse_dir`, when given and present) and every
    /// certificate of the scenario, with validity windows resolved against `now`.
    pub fn generate(
        scenario: &Scenario,
        reuse_dir: Option<&Path>,
        now: OffsetDateTime,
    ) -> Result<Pki, PkiError> {
        let reused = match reuse_dir {
            Some(dir) => {
                // Not while a server is writing its CA there.
                let _folder = dir.is_dir().then(|| lock_folder(dir)).transpose()?;
                load_ca(dir)?
            }
            None => None,
        };
        let ca = match reused {
            Some(ca) => ca,
            None => generate_ca(&scenario.ca.common_name, scenario.ca.key, now)?,
        };
        Pki::with_ca(scenario, ca, now)
    }

    /// Every certificate of the scenario, signed by `ca`.
    fn with_ca(scenario: &Scenario, ca: Ca, now: OffsetDateTime) -> Result<Pki, PkiError> {
        let leaves = scenario
            .certificates
            .iter()
            .map(|spec| Ok((spec.name.clone(), generate_leaf(spec, &ca, now)?)))
            .collect::<Result<_, PkiError>>()?;
        Ok(Pki { ca, leaves })
    }

    /// Writes every PEM file into `dir` (created if needed): keys with mode 0600, each file
    /// replaced atomically so that a client never reads half a file. The CA's key is written
    /// unless the CA was reused from there.
    ///
    /// Refused while a live server owns the folder (see [`Lease`]): its files stay as its
    /// readiness named them.
    pub fn write(&self, dir: &Path) -> Result<Manifest, PkiError> {
        create_folder(dir)?;
        let _folder = lock_folder(dir)?;
        let ca_cert = dir.join(CA_CERT_FILE);
        if let Probe::Held(holder) = probe(&ca_cert)? {
            return Err(PkiError::InUse {
                path: dir.to_owned(),
                holder,
                what: "is serving the certificates in this folder; write them elsewhere (--out DIR) or stop it first".to_owned(),
            });
        }
        let ca = if self.ca.reused {
            CaFiles::Cert
        } else {
            CaFiles::CertAndKey
        };
        self.write_files(dir, ca)
    }

    /// Writes the CA files `ca` says, every leaf and the manifest into `dir`, which exists.
    fn write_files(&self, dir: &Path, ca: CaFiles) -> Result<Manifest, PkiError> {
        let ca_cert = dir.join(CA_CERT_FILE);
        let ca_key = dir.join(CA_KEY_FILE);
        if matches!(ca, CaFiles::Cert | CaFiles::CertAndKey) {
            write_atomic(&ca_cert, self.ca.cert_pem.as_bytes(), 0o644)?;
        }
        if matches!(ca, CaFiles::CertAndKey) {
            write_atomic(&ca_key, self.ca.key_pem.as_bytes(), 0o600)?;
        }
        let mut certificates = BTreeMap::new();
        for leaf in self.leaves.values() {
            let cert = dir.join(format!("{}.pem", leaf.name));
            let key = dir.join(format!("{}.key", leaf.name));
            let chain = dir.join(format!("{}.chain.pem", leaf.name));
            write_atomic(&cert, leaf.cert_pem.as_bytes(), 0o644)?;
            write_atomic(&key, leaf.key_pem.as_bytes(), 0o600)?;
            write_atomic(&chain, leaf.chain_pem(&self.ca).as_bytes(), 0o644)?;
            write_atomic(
                &dir.join(format!("{}.spki", leaf.name)),
                format!("{}\n", leaf.spki_sha256).as_bytes(),
                0o644,
            )?;
            certificates.insert(
                leaf.name.clone(),
                ManifestEntry {
                    cert,
                    key,
                    chain: Some(chain),
                    sans: leaf.sans.clone(),
                    spki_sha256: leaf.spki_sha256.clone(),
                    reused: None,
                },
            );
        }
        let manifest = Manifest {
            ca: ManifestEntry {
                cert: ca_cert,
                key: ca_key,
                chain: None,
                sans: Vec::new(),
                spki_sha256: self.ca.spki_sha256.clone(),
                reused: Some(self.ca.reused),
            },
            certificates,
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| PkiError::Io {
            path: dir.join(MANIFEST_FILE),
            source: e.into(),
        })?;
        write_atomic(&dir.join(MANIFEST_FILE), &json, 0o644)?;
        Ok(manifest)
    }
}

/// Which CA files [`Pki::write_files`] writes.
#[derive(Debug, Clone, Copy)]
enum CaFiles {
    /// None: they are there already (a reload).
    None,
    /// The certificate (the key is there already).
    Cert,
    /// Both.
    CertAndKey,
}

/// One server's share of a certificate folder, held for as long as the server runs (keep it
/// with the server; dropping it releases the folder): where its files are, and its CA, with
/// which a reloaded scenario's certificates are signed.
///
/// See the module documentation for who writes where.
pub struct Lease {
    files: PathBuf,
    owner: bool,
    ca_cert_pem: String,
    ca_key_pem: String,
    ca_reused: bool,
    /// The lock on `files/ca.pem`: while it is held, the folder (owner) or subfolder (not)
    /// is this server's.
    _lock: Option<File>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("files", &self.files)
            .field("owner", &self.owner)
            .field("ca_reused", &self.ca_reused)
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// Generates the scenario's certificates for a server using the folder `dir` and writes
    /// them where they belong (see the module documentation): at the top of `dir` when no
    /// live server owns it, else in a subfolder of this server's own. `reuse` (`--reuse-ca`
    /// or the scenario's `"ca": {"reuse": true}`) takes the CA already in `dir` when there is
    /// one, whatever its name and key; otherwise the owner makes a fresh CA.
    ///
    /// Returns the lease, the PKI and the manifest of the files written; the readiness
    /// names those files.
    pub fn take(
        scenario: &Scenario,
        dir: &Path,
        reuse: bool,
        now: OffsetDateTime,
    ) -> Result<(Lease, Pki, Manifest), PkiError> {
        create_folder(dir)?;
        let _folder = lock_folder(dir)?;
        let owned_by_another = matches!(probe(&dir.join(CA_CERT_FILE))?, Probe::Held(_));
        remove_stale_subfolders(dir);
        let (files, pki, manifest) = if owned_by_another {
            let files = claim_subfolder(dir)?;
            let shared = match load_ca(dir) {
                Ok(Some(ca)) if reuse || ca_matches(&ca, &scenario.ca) => Some(ca),
                Ok(_) => None,
                Err(err) if reuse => return Err(err),
                Err(_) => None,
            };
            let ca = match shared {
                Some(ca) => ca,
                None => generate_ca(&scenario.ca.common_name, scenario.ca.key, now)?,
            };
            let pki = Pki::with_ca(scenario, ca, now)?;
            let manifest = pki.write_files(&files, CaFiles::CertAndKey)?;
            (files, pki, manifest)
        } else {
            let reused = if reuse { load_ca(dir)? } else { None };
            let ca = match reused {
                Some(ca) => ca,
                None => generate_ca(&scenario.ca.common_name, scenario.ca.key, now)?,
            };
            let pki = Pki::with_ca(scenario, ca, now)?;
            let ca_files = if pki.ca.reused {
                CaFiles::Cert
            } else {
                CaFiles::CertAndKey
            };
            let manifest = pki.write_files(dir, ca_files)?;
            (dir.to_owned(), pki, manifest)
        };
        let lock = lock_file(&files.join(CA_CERT_FILE))?;
        let lease = Lease {
            files,
            owner: !owned_by_another,
            ca_cert_pem: pki.ca.cert_pem.clone(),
            ca_key_pem: pki.ca.key_pem.clone(),
            ca_reused: pki.ca.reused,
            _lock: lock,
        };
        Ok((lease, pki, manifest))
    }

    /// The folder holding this server's files: the certificate folder itself when this
    /// server owns it, else its subfolder there.
    pub fn files_dir(&self) -> &Path {
        &self.files
    }

    /// Whether this server owns the certificate folder (its files are at the top of it).
    pub fn owns_folder(&self) -> bool {
        self.owner
    }

    /// The certificates of `scenario` (a reload) signed by this server's CA, which clients
    /// already trust.
    pub fn generate(&self, scenario: &Scenario, now: OffsetDateTime) -> Result<Pki, PkiError> {
        let ca = ca_from_pem(
            self.ca_cert_pem.clone(),
            self.ca_key_pem.clone(),
            self.ca_reused,
            &self.files.join(CA_CERT_FILE),
            &self.files.join(CA_KEY_FILE),
        )?;
        Pki::with_ca(scenario, ca, now)
    }

    /// Writes the leaves of `pki` (from [`Lease::generate`]) and the manifest where this
    /// server's files are; the CA files stay as they are.
    pub fn write(&self, pki: &Pki) -> Result<Manifest, PkiError> {
        pki.write_files(&self.files, CaFiles::None)
    }
}

fn create_folder(dir: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.to_owned(),
        source: std::io::Error::new(
            source.kind(),
            format!("cannot create the certificate folder (--certs-dir / --out): {source}"),
        ),
    })
}

/// An exclusive lock on the folder itself, held while one process decides and writes; other
/// processes wait for it (briefly: generating a few keys). `None` where folders cannot be
/// locked (there, launches must not share a folder).
fn lock_folder(dir: &Path) -> Result<Option<File>, PkiError> {
    #[cfg(unix)]
    {
        let folder = File::open(dir).map_err(|source| PkiError::Io {
            path: dir.to_owned(),
            source,
        })?;
        match folder.lock() {
            Ok(()) => Ok(Some(folder)),
            // A file system without locks: go on without one.
            Err(err) if err.kind() == std::io::ErrorKind::Unsupported => Ok(None),
            Err(source) => Err(PkiError::Io {
                path: dir.to_owned(),
                source,
            }),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(None)
    }
}

/// Whether a file is there and a live process holds its lock.
enum Probe {
    Absent,
    Free,
    Held(Option<u32>),
}

fn probe(path: &Path) -> Result<Probe, PkiError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Probe::Absent),
        Err(source) => {
            return Err(PkiError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    match file.try_lock() {
        Err(fs::TryLockError::WouldBlock) => Ok(Probe::Held(crate::locks::holder(&file))),
        // Unlocked when `file` closes; a file system without locks counts as free.
        Ok(()) | Err(fs::TryLockError::Error(_)) => Ok(Probe::Free),
    }
}

/// Takes the lock on `path` (just written, under the folder's lock) for as long as the
/// returned file is open.
fn lock_file(path: &Path) -> Result<Option<File>, PkiError> {
    let file = File::open(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Err(PkiError::InUse {
            path: path.to_owned(),
            holder: crate::locks::holder(&file),
            what: "took this file while this one was writing it".to_owned(),
        }),
        Err(fs::TryLockError::Error(_)) => Ok(None),
    }
}

/// Whether `name` is a subfolder name [`claim_subfolder`] makes.
fn is_subfolder_name(name: &str) -> bool {
    name.strip_prefix(SUBFOLDER_PREFIX).is_some_and(|rest| {
        let mut parts = rest.split('-');
        let pid = parts.next().unwrap_or_default();
        let n = parts.next();
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        digits(pid) && n.is_none_or(digits) && parts.next().is_none()
    })
}

/// Removes the subfolders of servers that are gone (their `ca.pem` is not locked). Best
/// effort: what cannot be removed stays.
fn remove_stale_subfolders(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry.file_name().to_str().is_some_and(is_subfolder_name);
        if ours
            && path.is_dir()
            && matches!(
                probe(&path.join(CA_CERT_FILE)),
                Ok(Probe::Free | Probe::Absent)
            )
        {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// Creates this server's subfolder: `pid-<pid>`, or the first `pid-<pid>-<n>` no live server
/// holds (another server in this process, or one in another PID namespace).
fn claim_subfolder(dir: &Path) -> Result<PathBuf, PkiError> {
    let pid = std::process::id();
    for n in 1..=10_000u32 {
        let name = if n == 1 {
            format!("{SUBFOLDER_PREFIX}{pid}")
        } else {
            format!("{SUBFOLDER_PREFIX}{pid}-{n}")
        };
        let path = dir.join(name);
        if path.exists() {
            match probe(&path.join(CA_CERT_FILE))? {
                Probe::Held(_) => continue,
                Probe::Free | Probe::Absent => {
                    let _ = fs::remove_dir_all(&path);
                }
            }
        }
        create_folder(&path)?;
        return Ok(path);
    }
    Err(PkiError::Io {
        path: dir.to_owned(),
        source: std::io::Error::other("no free subfolder name for this server"),
    })
}

/// Whether `ca` is what `spec` asks for: its common name and key type.
fn ca_matches(ca: &Ca, spec: &CaSpec) -> bool {
    let Ok(key) = KeyPair::from_pem(&ca.key_pem) else {
        return false;
    };
    let algorithm = match spec.key {
        KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyType::Ed25519 => &rcgen::PKCS_ED25519,
        KeyType::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
    };
    key.algorithm() == algorithm && der_has_common_name(&ca.cert_der, &spec.common_name)
}

/// Whether the DER certificate holds the attribute commonName = `name` as a UTF8String, as
/// [`generate_ca`] writes it (a self-signed CA's subject; the issuer is the same name).
fn der_has_common_name(der: &[u8], name: &str) -> bool {
    // OID 2.5.4.3, then UTF8String (tag 12) with a DER length.
    let mut wanted = vec![0x06, 0x03, 0x55, 0x04, 0x03, 0x0c];
    let len = name.len();
    if len < 0x80 {
        wanted.push(len as u8);
    } else if len <= 0xff {
        wanted.extend([0x81, len as u8]);
    } else if len <= 0xffff {
        wanted.extend([0x82, (len >> 8) as u8, len as u8]);
    } else {
        return false;
    }
    wanted.extend_from_slice(name.as_bytes());
    der.windows(wanted.len()).any(|w| w == wanted)
}

fn generate_key(key: KeyType, name: &str) -> Result<KeyPair, PkiError> {
    let generated = match key {
        KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyType::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
        KeyType::Rsa2048 => return generate_rsa_key(name),
    };
    generated.map_err(|source| PkiError::Generate {
        name: name.to_owned(),
        source,
    })
}

#[cfg(feature = "rsa")]
fn generate_rsa_key(name: &str) -> Result<KeyPair, PkiError> {
    use rsa::pkcs8::EncodePrivateKey;
    // ring signs with RSA keys but cannot generate them; the rsa crate can.
    let fail = |why: String| PkiError::Generate {
        name: name.to_owned(),
        source: rcgen::Error::RingKeyRejected(why),
    };
    let mut rng = rsa::rand_core::UnwrapErr(getrandom::SysRng);
    let key = rsa::PrivateKey::new(&mut rng, 2048).map_err(|e| fail(e.to_string()))?;
    let der = key.to_pkcs8_der().map_err(|e| fail(e.to_string()))?;
    KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(der.as_bytes()),
        &rcgen::PKCS_RSA_SHA256,
    )
    .map_err(|source| PkiError::Generate {
        name: name.to_owned(),
        source,
    })
}

#[cfg(not(feature = "rsa"))]
fn generate_rsa_key(name: &str) -> Result<KeyPair, PkiError> {
    Err(PkiError::KeyTypeUnavailable {
        name: name.to_owned(),
        key: KeyType::Rsa2048,
    })
}

fn spki_sha256(key: &impl PublicKeyData) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, &key.subject_public_key_info());
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

fn generate_ca(common_name: &str, key: KeyType, now: OffsetDateTime) -> Result<Ca, PkiError> {
    let fail = |source| PkiError::Generate {
        name: "ca".to_owned(),
        source,
    };
    let key_pair = generate_key(key, "ca")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "misdirect");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // Wide enough that leaves with past windows (expired on purpose) still chain to a CA
    // that was valid then: only the leaf should be what is wrong.
    params.not_before = now - time::Duration::days(3650);
    params.not_after = now + time::Duration::days(3650);
    let cert = params.self_signed(&key_pair).map_err(fail)?;
    Ok(Ca {
        cert_pem: cert.pem(),
        cert_der: cert.der().clone(),
        spki_sha256: spki_sha256(&key_pair),
        reused: false,
        key_pem: key_pair.serialize_pem(),
        issuer: RcgenIssuer::new(params, key_pair),
    })
}

/// Loads `ca.pem` + `ca.key` from `dir` when both exist; `None` when neither does.
fn load_ca(dir: &Path) -> Result<Option<Ca>, PkiError> {
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    match (cert_path.exists(), key_path.exists()) {
        (false, false) => return Ok(None),
        (true, false) => {
            return Err(PkiError::Reuse {
                path: key_path,
                why: "ca.pem is there but its key ca.key is missing; delete ca.pem or restore the key".into(),
            });
        }
        (false, true) => {
            return Err(PkiError::Reuse {
                path: cert_path,
                why: "ca.key is there but ca.pem is missing; delete ca.key or restore the certificate".into(),
            });
        }
        (true, true) => {}
    }
    let read = |path: &Path| {
        fs::read_to_string(path).map_err(|source| PkiError::Io {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(&cert_path)?;
    let key_pem = read(&key_path)?;
    ca_from_pem(cert_pem, key_pem, true, &cert_path, &key_path).map(Some)
}

/// A CA from its certificate and key PEM, read from (or written to) the paths named.
fn ca_from_pem(
    cert_pem: String,
    key_pem: String,
    reused: bool,
    cert_path: &Path,
    key_path: &Path,
) -> Result<Ca, PkiError> {
    let key_pair = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::Reuse {
        path: key_path.to_owned(),
        why: format!("not a PKCS#8 private key: {e}"),
    })?;
    let issuer =
        RcgenIssuer::from_ca_cert_pem(&cert_pem, key_pair).map_err(|e| PkiError::Reuse {
            path: cert_path.to_owned(),
            why: format!("not a CA certificate: {e}"),
        })?;
    let parsed = pem_to_der(&cert_pem).ok_or_else(|| PkiError::Reuse {
        path: cert_path.to_owned(),
        why: "no CERTIFICATE block".into(),
    })?;
    Ok(Ca {
        spki_sha256: spki_sha256(issuer.key()),
        cert_pem,
        cert_der: parsed,
        reused,
        key_pem,
        issuer,
    })
}

fn pem_to_der(pem: &str) -> Option<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).ok()
}

fn generate_leaf(spec: &CertificateSpec, ca: &Ca, now: OffsetDateTime) -> Result<Leaf, PkiError> {
    let fail = |source| PkiError::Generate {
        name: spec.name.clone(),
        source,
    };
    let key_pair = generate_key(spec.key, &spec.name)?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = spec
        .sans
        .iter()
        .map(|san| match san.parse() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => san.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()
        .map_err(fail)?;
    let common_name = spec
        .common_name
        .clone()
        .or_else(|| spec.sans.first().cloned())
        .unwrap_or_else(|| spec.name.clone());
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if spec.key == KeyType::Rsa2048 {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = spec.issuer == Issuer::Ca;
    params.not_before = spec.validity.not_before.resolve(now);
    params.not_after = spec.validity.not_after.resolve(now);
    let cert = match spec.issuer {
        Issuer::Ca => params.signed_by(&key_pair, &ca.issuer),
        Issuer::SelfSigned => params.self_signed(&key_pair),
    }
    .map_err(fail)?;
    let mut chain = vec![cert.der().clone()];
    if spec.issuer == Issuer::Ca {
        chain.push(ca.cert_der.clone());
    }
    Ok(Leaf {
        name: spec.name.clone(),
        sans: spec.sans.clone(),
        cert_pem: cert.pem(),
        chain,
        key_der: PrivatePkcs8KeyDer::from(key_pair.serialize_der()),
        key_pem: key_pair.serialize_pem(),
        spki_sha256: spki_sha256(&key_pair),
        not_before: params.not_before,
        not_after: params.not_after,
        issuer: spec.issuer,
    })
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, with
/// the given permission bits (Unix), so readers see the old file or the new one, never half.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    write_atomic_inner(path, bytes, mode, false).map(drop)
}

/// [`write_atomic`] for a file one process at a time may own, such as `--ready-file`: refused
/// while another live process holds the lock of the file now at `path` (an error naming it
/// and saying it `what`); otherwise written with the lock taken on the new file before it
/// replaces the old, and held for as long as the returned file stays open (`None` where
/// files cannot be locked). The check and the rename happen under a lock on the folder, so
/// that of two processes started together exactly one wins.
pub fn write_atomic_owned(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    what: &str,
) -> Result<Option<File>, PkiError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let _folder = lock_folder(dir)?;
    if let Probe::Held(holder) = probe(path)? {
        return Err(PkiError::InUse {
            path: path.to_owned(),
            holder,
            what: what.to_owned(),
        });
    }
    write_atomic_inner(path, bytes, mode, true)
}

fn write_atomic_inner(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    lock: bool,
) -> Result<Option<File>, PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per process and call: two writers of one path never share a temporary file.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{file_name}.{}.{n}.tmp", std::process::id()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut file = options.open(&tmp)?;
        #[cfg(unix)]
        {
            // The mode above is filtered by the umask and ignored for an existing file.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        // Locked before it is in place: nobody can find it there unlocked.
        let locked = lock && file.try_lock().is_ok();
        file.write_all(bytes)?;
        // No fsync: readers need a whole file (the rename gives that), not one that survives
        // a power cut — certificates are made again at every start, and forty fsyncs were
        // most of the time a start took.
        fs::rename(&tmp, path)?;
        Ok(locked.then_some(file))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io)
}
