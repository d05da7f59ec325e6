//! The scenario's PKI: a CA (generated, or reused from the certificate folder) and every
//! named leaf certificate, generated with rcgen and written as PEM files a client can trust.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer as RcgenIssuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::Serialize;
use time::OffsetDateTime;

use crate::scenario::{CertificateSpec, Issuer, KeyType, Scenario};

/// File names inside the certificate folder.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA's private key file.
pub const CA_KEY_FILE: &str = "ca.key";
/// The manifest listing every file, SAN and SPKI hash.
pub const MANIFEST_FILE: &str = "manifest.json";

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
            Some(dir) => load_ca(dir)?,
            None => None,
        };
        let ca = match reused {
            Some(ca) => ca,
            None => generate_ca(&scenario.ca.common_name, scenario.ca.key, now)?,
        };
        let leaves = scenario
            .certificates
            .iter()
            .map(|spec| Ok((spec.name.clone(), generate_leaf(spec, &ca, now)?)))
            .collect::<Result<_, PkiError>>()?;
        Ok(Pki { ca, leaves })
    }

    /// Writes every PEM file into `dir` (created if needed): keys with mode 0600, each file
    /// replaced atomically so that a client never reads half a file.
    pub fn write(&self, dir: &Path) -> Result<Manifest, PkiError> {
        fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.to_owned(),
            source: std::io::Error::new(
                source.kind(),
                format!("cannot create the certificate folder (--certs-dir / --out): {source}"),
            ),
        })?;
        let ca_cert = dir.join(CA_CERT_FILE);
        let ca_key = dir.join(CA_KEY_FILE);
        write_atomic(&ca_cert, self.ca.cert_pem.as_bytes(), 0o644)?;
        if !self.ca.reused {
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
    let key_pair = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::Reuse {
        path: key_path.clone(),
        why: format!("not a PKCS#8 private key: {e}"),
    })?;
    let issuer =
        RcgenIssuer::from_ca_cert_pem(&cert_pem, key_pair).map_err(|e| PkiError::Reuse {
            path: cert_path.clone(),
            why: format!("not a CA certificate: {e}"),
        })?;
    let parsed = pem_to_der(&cert_pem).ok_or_else(|| PkiError::Reuse {
        path: cert_path.clone(),
        why: "no CERTIFICATE block".into(),
    })?;
    Ok(Some(Ca {
        spki_sha256: spki_sha256(issuer.key()),
        cert_pem,
        cert_der: parsed,
        reused: true,
        key_pem,
        issuer,
    }))
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
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
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
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io)
}
