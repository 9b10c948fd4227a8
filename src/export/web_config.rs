//! `--web.config.file`: the web configuration file of Prometheus exporters (the exporter-toolkit
//! format, YAML): a TLS server certificate and key, optional client-certificate checking, and
//! basic-auth users with bcrypt password hashes. Read and checked in full at start (one error
//! line naming the file and the field), re-read when the file or the certificates it names
//! change (certificates rotated by a Kubernetes Secret are picked up; a broken new version is
//! reported once and the last good one kept).
//!
//! Settings of the format this agent does not implement (`client_allowed_sans`, `cipher_suites`,
//! `curve_preferences`, `rate_limit`, client-auth policies that check nothing) are refused
//! rather than ignored: a security setting silently dropped is worse than an error.
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context, Result};
use parking_lot::Mutex;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;

/// The file as written (unknown fields are errors, as in exporter-toolkit).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<HttpFile>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
    rate_limit: Option<serde_norway::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    prefer_server_cipher_suites: Option<bool>,
    client_allowed_sans: Option<serde_norway::Value>,
    cipher_suites: Option<serde_norway::Value>,
    curve_preferences: Option<serde_norway::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    /// HTTP/2 is never offered (the agent speaks HTTP/1.1); accepted for compatibility.
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// What the server needs from the file.
#[derive(Clone)]
pub struct WebConfig {
    /// TLS, when the file configures a certificate.
    pub tls: Option<Arc<ServerConfig>>,
    /// Basic authentication, when the file lists users.
    pub auth: Option<Arc<BasicAuth>>,
    /// Extra response headers (`http_server_config.headers`).
    pub headers: Vec<(String, String)>,
}

impl WebConfig {
    /// No file: plain HTTP, no authentication.
    pub fn none() -> Self {
        WebConfig {
            tls: None,
            auth: None,
            headers: Vec::new(),
        }
    }

    /// Reads and checks `path`; errors name the file.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_inner(path).with_context(|| format!("web config {}", path.display()))
    }

    fn load_inner(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow!("cannot read it: {e}"))?;
        let file: FileConfig = if text.trim().is_empty() {
            FileConfig::default()
        } else {
            serde_norway::from_str(&text).map_err(|e| anyhow!("{e}"))?
        };
        if file.rate_limit.is_some() {
            bail!("rate_limit is not supported by ebpf-map-trace");
        }
        // Relative file names are relative to the config file, as in exporter-toolkit.
        let dir = path.parent().unwrap_or(Path::new("."));
        let tls = match file.tls_server_config {
            Some(t) => tls_config(t, dir)?,
            None => None,
        };
        let auth = if file.basic_auth_users.is_empty() {
            None
        } else {
            Some(Arc::new(BasicAuth::new(file.basic_auth_users)?))
        };
        let headers = file.http_server_config.unwrap_or_default().headers;
        Ok(WebConfig {
            tls,
            auth,
            headers: headers.into_iter().collect(),
        })
    }

    /// `https` or `http`, for messages.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// The client-certificate policies of Go's `crypto/tls` that this agent implements.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    None,
    VerifyIfGiven,
    RequireAndVerify,
}

fn client_auth(name: Option<&str>) -> Result<ClientAuth> {
    Ok(match name.unwrap_or("NoClientCert") {
        "NoClientCert" => ClientAuth::None,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
        p @ ("RequestClientCert" | "RequireAnyClientCert") => bail!(
            "client_auth_type {p} is not supported: it accepts certificates nobody checks; \
             use RequireAndVerifyClientCert (or VerifyClientCertIfGiven) with client_ca_file"
        ),
        other => bail!(
            "client_auth_type {other:?} is not one of NoClientCert, VerifyClientCertIfGiven, \
             RequireAndVerifyClientCert"
        ),
    })
}

/// The versions rustls speaks, oldest first.
const VERSIONS: [&rustls::SupportedProtocolVersion; 2] =
    [&rustls::version::TLS12, &rustls::version::TLS13];

/// The index in `VERSIONS` of a version named as in exporter-toolkit.
fn tls_version(name: &str) -> Result<usize> {
    match name {
        "TLS12" => Ok(0),
        "TLS13" => Ok(1),
        "TLS10" | "TLS11" => bail!("{name} is not supported (TLS12 and TLS13 are)"),
        other => bail!("unknown TLS version {other:?} (TLS12 or TLS13)"),
    }
}

/// PEM text given inline or in a file (relative to `dir`); None when neither is given.
fn pem(
    inline: Option<String>,
    file: Option<PathBuf>,
    field: &str,
    dir: &Path,
) -> Result<Option<Vec<u8>>> {
    match (inline, file) {
        (Some(_), Some(_)) => bail!("give {field} or {field}_file, not both"),
        (Some(text), None) => Ok(Some(text.into_bytes())),
        (None, Some(f)) => {
            let f = dir.join(f);
            let bytes =
                std::fs::read(&f).map_err(|e| anyhow!("{field}_file {}: {e}", f.display()))?;
            Ok(Some(bytes))
        }
        (None, None) => Ok(None),
    }
}

fn certificates(pem_bytes: &[u8], field: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem_bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("{field}: not PEM certificates: {e}"))?;
    if certs.is_empty() {
        bail!("{field}: no PEM certificate in it");
    }
    Ok(certs)
}

fn tls_config(t: TlsFile, dir: &Path) -> Result<Option<Arc<ServerConfig>>> {
    for (set, name) in [
        (t.client_allowed_sans.is_some(), "client_allowed_sans"),
        (t.cipher_suites.is_some(), "cipher_suites"),
        (t.curve_preferences.is_some(), "curve_preferences"),
    ] {
        if set {
            bail!("tls_server_config.{name} is not supported by ebpf-map-trace");
        }
    }
    let cert = pem(t.cert, t.cert_file, "cert", dir)?;
    let key = pem(t.key, t.key_file, "key", dir)?;
    let client_ca = pem(t.client_ca, t.client_ca_file, "client_ca", dir)?;
    let auth = client_auth(t.client_auth_type.as_deref())?;
    let min = tls_version(t.min_version.as_deref().unwrap_or("TLS12"))?;
    let max = tls_version(t.max_version.as_deref().unwrap_or("TLS13"))?;
    if min > max {
        bail!("min_version is above max_version");
    }
    let (cert, key) = match (cert, key) {
        // exporter-toolkit: an empty tls_server_config means plain HTTP.
        (None, None) if client_ca.is_none() && auth == ClientAuth::None => return Ok(None),
        (None, _) => bail!("tls_server_config needs cert_file (or cert)"),
        (_, None) => bail!("tls_server_config needs key_file (or key)"),
        (Some(c), Some(k)) => (c, k),
    };
    let certs = certificates(&cert, "cert")?;
    let key =
        PrivateKeyDer::from_pem_slice(&key).map_err(|e| anyhow!("key: no PEM private key: {e}"))?;
    let versions = &VERSIONS[min..=max];
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| anyhow!("{e}"))?;
    let builder = match (auth, client_ca) {
        (ClientAuth::None, None) => builder.with_no_client_auth(),
        (ClientAuth::None, Some(_)) => bail!(
            "client_ca_file is set but client_auth_type is NoClientCert: set \
             client_auth_type: RequireAndVerifyClientCert"
        ),
        (_, None) => bail!("client_auth_type needs client_ca_file (or client_ca)"),
        (auth, Some(client_ca)) => {
            let mut roots = RootCertStore::empty();
            for c in certificates(&client_ca, "client_ca")? {
                roots
                    .add(c)
                    .map_err(|e| anyhow!("client_ca: unusable certificate: {e}"))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if auth == ClientAuth::VerifyIfGiven {
                v.allow_unauthenticated()
            } else {
                v
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| anyhow!("client_ca: {e}"))?)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| anyhow!("cert and key: {e}"))?;
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// Basic-auth users and their bcrypt hashes. A bcrypt check costs tens of milliseconds by
/// design, so credentials that passed once are remembered (by a SHA-256 of user, hash and
/// password; at most `CACHE` of them), as exporter-toolkit does: a scrape every 15 s then costs
/// no bcrypt at all.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    passed: Mutex<HashSet<[u8; 32]>>,
}

const CACHE: usize = 100;

/// A valid hash no password matches, checked for unknown users so that a wrong user name takes
/// as long as a wrong password.
const DUMMY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

impl BasicAuth {
    fn new(users: BTreeMap<String, String>) -> Result<Self> {
        for (user, hash) in &users {
            // A malformed hash fails before any hashing: cheap to check them all up front.
            if let Err(e @ bcrypt::BcryptError::InvalidHash(_)) = bcrypt::verify("", hash) {
                bail!("basic_auth_users.{user}: not a bcrypt hash: {e}");
            }
        }
        Ok(BasicAuth {
            users,
            passed: Mutex::new(HashSet::new()),
        })
    }

    fn digest(user: &str, hash: &str, password: &str) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [user, hash, password] {
            ctx.update(&(part.len() as u64).to_le_bytes());
            ctx.update(part.as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    /// Whether these credentials passed before (no bcrypt needed).
    pub fn cached(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        let d = Self::digest(user, hash, password);
        self.passed.lock().contains(&d)
    }

    /// Checks the credentials with bcrypt (slow: call it off the serving thread).
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let (hash, known) = match self.users.get(user) {
            Some(h) => (h.as_str(), true),
            None => (DUMMY_HASH, false),
        };
        let ok = bcrypt::verify(password, hash).unwrap_or(false) && known;
        if ok {
            let mut passed = self.passed.lock();
            if passed.len() >= CACHE {
                passed.clear();
            }
            passed.insert(Self::digest(user, hash, password));
        }
        ok
    }
}

/// The user and password of an `Authorization: Basic …` header value.
pub fn basic_credentials(header: &str) -> Option<(String, String)> {
    use base64::Engine;
    let (scheme, b64) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Notices when the web config file, or a file it names, changed since it was loaded.
pub struct Watch {
    path: PathBuf,
    stamps: Vec<(PathBuf, Option<SystemTime>)>,
}

impl Watch {
    pub fn new(path: &Path) -> Self {
        let mut w = Watch {
            path: path.to_path_buf(),
            stamps: Vec::new(),
        };
        w.stamps = w.current();
        w
    }

    /// The config file and the certificate files it names (best effort: a file that cannot be
    /// parsed now is still watched by its own stamp).
    fn current(&self) -> Vec<(PathBuf, Option<SystemTime>)> {
        let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut out = vec![(self.path.clone(), stamp(&self.path))];
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let named = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| serde_norway::from_str::<FileConfig>(&t).ok())
            .and_then(|f| f.tls_server_config);
        if let Some(t) = named {
            for f in [t.cert_file, t.key_file, t.client_ca_file]
                .into_iter()
                .flatten()
            {
                let f = dir.join(f);
                out.push((f.clone(), stamp(&f)));
            }
        }
        out
    }

    /// A new configuration if anything changed since the last call (`Err`: it changed but the
    /// new version is broken; the caller keeps the old one).
    pub fn changed(&mut self) -> Option<Result<WebConfig>> {
        let now = self.current();
        if now == self.stamps {
            return None;
        }
        self.stamps = now;
        Some(WebConfig::load(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("emt-webcfg-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn err(text: &str) -> String {
        let d = tmp("err");
        let p = write(&d, "web.yml", text);
        let e = WebConfig::load(&p).err().expect("an error");
        format!("{e:#}")
    }

    #[test]
    fn empty_file_is_plain_http_without_auth() {
        let d = tmp("empty");
        let c = WebConfig::load(&write(&d, "web.yml", "")).unwrap();
        assert!(c.tls.is_none() && c.auth.is_none());
        let c = WebConfig::load(&write(&d, "web2.yml", "tls_server_config: {}\n")).unwrap();
        assert!(c.tls.is_none());
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        assert!(
            err("tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: k\n")
                .contains("cert_file /nonexistent.crt")
        );
        assert!(err("tls_server_config:\n  cert: x\n").contains("needs key_file"));
        assert!(
            err("tls_server_config:\n  cert_file: /dev/null\n  key: x\n")
                .contains("no PEM certificate")
        );
        assert!(err("tls_srever_config: {}\n").contains("unknown field `tls_srever_config`"));
        assert!(err("basic_auth_users:\n  alice: plaintext\n").contains("alice: not a bcrypt hash"));
        assert!(err("rate_limit: {burst: 2}\n").contains("rate_limit is not supported"));
        let e = err("tls_server_config:\n  client_auth_type: RequireAnyClientCert\n");
        assert!(e.contains("RequireAnyClientCert is not supported"), "{e}");
        assert!(err("tls_server_config:\n  min_version: TLS10\n").contains("TLS10"));
        assert!(err("tls_server_config: [1, 2\n").starts_with("web config "));
    }

    #[test]
    fn basic_auth_checks_bcrypt_and_remembers_successes() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let auth = BasicAuth::new([("alice".to_string(), hash)].into()).unwrap();
        assert!(!auth.cached("alice", "s3cret"));
        assert!(!auth.verify("alice", "wrong"));
        assert!(!auth.verify("bob", "s3cret"));
        assert!(auth.verify("alice", "s3cret"));
        assert!(auth.cached("alice", "s3cret"));
        assert!(!auth.cached("alice", "wrong"));
    }

    #[test]
    fn basic_credentials_parse_the_header() {
        // "alice:pa:ss" — a password may hold colons.
        assert_eq!(
            basic_credentials("Basic YWxpY2U6cGE6c3M="),
            Some(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(basic_credentials("Bearer abc"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }

    #[test]
    fn watch_reloads_a_changed_file_and_reports_a_broken_one() {
        let d = tmp("watch");
        let p = write(&d, "web.yml", "");
        let mut w = Watch::new(&p);
        assert!(w.changed().is_none(), "nothing changed yet");
        // A new version (its time set forward: file times can be coarser than a test is fast).
        let touch = |text: &str, secs: u64| {
            std::fs::write(&p, text).unwrap();
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(SystemTime::now() + std::time::Duration::from_secs(secs))
                .unwrap();
        };
        let hash = bcrypt::hash("pw", 4).unwrap();
        touch(&format!("basic_auth_users:\n  alice: {hash}\n"), 10);
        let c = w.changed().expect("a change").unwrap();
        assert!(c.auth.is_some_and(|a| a.verify("alice", "pw")));
        assert!(w.changed().is_none(), "one change is reported once");
        touch("basic_auth_users:\n  alice: nohash\n", 20);
        let e = w.changed().expect("a change").err().expect("broken");
        assert!(format!("{e:#}").contains("not a bcrypt hash"), "{e:#}");
    }

    #[test]
    fn dummy_hash_is_a_valid_hash() {
        assert_eq!(bcrypt::verify("x", DUMMY_HASH).ok(), Some(false));
    }
}
