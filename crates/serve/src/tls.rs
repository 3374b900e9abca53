//! TLS on a node's HTTP ports, with rustls and the aws-lc-rs provider.
//!
//! The operator names a certificate chain and its private key as PEM files
//! (`[http.tls]`). [`ServerTls::load`] reads and checks them before the node starts, so a
//! missing file, a file that holds no certificate or no key, or a key that does not belong
//! to the certificate stops the start with a message naming the file. While the node runs,
//! [`ServerTls::reload_if_changed`] picks up renewed files (a certificate renewed by an ACME
//! client, say); a bad renewal is logged and the previous certificate stays in use.
//!
//! Every connection on a TLS port must start with a TLS handshake within the header
//! timeout: [`ServerTls::accept`] peeks at the first byte, answers a plain HTTP request
//! with `400 tls_required` (unless the operator allows plain HTTP on the port too) and
//! drops a client that opens TCP and never finishes the handshake, so it cannot hold a
//! connection slot longer than a slow request's headers could.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// The first byte of every TLS connection: the record type of a handshake message.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Where a port's certificate and key are (`[http.tls]` in the node's configuration).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file with the certificate chain, the node's own certificate first.
    pub certificate_chain: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
    /// Also serve plain HTTP on the same ports (told apart by the first byte). Off by
    /// default: with TLS configured, a plain request gets `400 tls_required`.
    #[serde(default)]
    pub allow_plain_http: bool,
    /// How often the files are checked for changes (a renewed certificate is used for new
    /// connections from then on).
    #[serde(
        default = "default_reload_interval",
        with = "xnode_types::duration_text"
    )]
    pub reload_interval: Duration,
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(60)
}

/// Why a certificate or key cannot be used. Each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("http.tls: cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("http.tls: {path} is not a PEM certificate chain: {source}")]
    BadCertificatePem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("http.tls: {path} holds no certificate (expected \"-----BEGIN CERTIFICATE-----\")")]
    NoCertificate { path: PathBuf },
    #[error("http.tls: {path} holds no usable private key: {source}")]
    BadKeyPem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error(
        "http.tls: the private key in {key} does not belong to the certificate in {chain}, or cannot be used: {source}"
    )]
    KeyRejected {
        chain: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("http.tls: cannot build the TLS configuration: {0}")]
    Config(#[source] rustls::Error),
    #[error("http.tls.reload_interval must be between 1s and 1d, not {0:?}")]
    ReloadInterval(Duration),
}

/// A port's TLS: the rustls configuration and the certificate it currently presents.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: tokio_rustls::TlsAcceptor,
    resolver: Arc<CurrentCertificate>,
    settings: TlsSettings,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What became of a connection on a TLS port.
pub enum Accepted {
    /// The handshake finished.
    Tls(Box<TlsStream<TcpStream>>),
    /// A plain HTTP client on a port that allows it.
    Plain(TcpStream),
    /// Closed: the client sent plain HTTP (and was told to use TLS), did not finish the
    /// handshake in time, or failed it.
    Closed,
}

impl ServerTls {
    /// Reads and checks the certificate chain and key named in `settings`.
    pub fn load(settings: &TlsSettings) -> Result<Self, TlsError> {
        let sane = Duration::from_secs(1)..=Duration::from_secs(86_400);
        if !sane.contains(&settings.reload_interval) {
            return Err(TlsError::ReloadInterval(settings.reload_interval));
        }
        let certified = load_certified_key(settings)?;
        let resolver = Arc::new(CurrentCertificate {
            current: RwLock::new(Current {
                key: Arc::new(certified),
                stamps: file_stamps(settings),
            }),
        });
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        // hyper's automatic builder tells HTTP/2 from HTTP/1.1 by the preface, but clients
        // only send HTTP/2 over TLS when the server offers it in ALPN.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            resolver,
            settings: settings.clone(),
        })
    }

    /// The settings this was loaded from.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// Loads the files again if their size or modification time changed since the last
    /// load. Returns whether a new certificate is now in use. On an error the previous
    /// certificate stays in use.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let stamps = file_stamps(&self.settings);
        if self.resolver.stamps() == stamps {
            return Ok(false);
        }
        // Read the stamps before the files: a change during the read then shows as a
        // change again at the next check rather than being missed.
        let certified = load_certified_key(&self.settings)?;
        self.resolver.replace(Arc::new(certified), stamps);
        Ok(true)
    }

    /// Checks the files every `reload_interval` until dropped (the returned task is
    /// aborted by the server when it stops).
    pub(crate) fn spawn_reloader(&self, name: &'static str) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(tls.settings.reload_interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let checked = {
                    let tls = tls.clone();
                    tokio::task::spawn_blocking(move || tls.reload_if_changed()).await
                };
                match checked {
                    Ok(Ok(true)) => {
                        tracing::info!(server = name, "TLS certificate reloaded");
                    }
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(server = name, error = %e, "TLS certificate not reloaded; the previous one stays in use");
                    }
                    Err(e) => {
                        tracing::warn!(server = name, error = %e, "TLS reload task failed");
                    }
                }
            }
        })
    }

    /// Starts TLS on a new connection within `within` (from the connection's start to
    /// the end of the handshake).
    pub async fn accept(&self, stream: TcpStream, within: Duration) -> Accepted {
        match tokio::time::timeout(within, self.accept_inner(stream)).await {
            Ok(accepted) => accepted,
            Err(_) => {
                tracing::debug!("TLS handshake not finished in time; connection dropped");
                Accepted::Closed
            }
        }
    }

    async fn accept_inner(&self, stream: TcpStream) -> Accepted {
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(1..) => {}
            // Closed before sending anything, or an error: nothing to answer.
            _ => return Accepted::Closed,
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            if self.settings.allow_plain_http {
                return Accepted::Plain(stream);
            }
            refuse_plain_http(stream).await;
            return Accepted::Closed;
        }
        match self.acceptor.accept(stream).await {
            Ok(tls) => Accepted::Tls(Box::new(tls)),
            Err(e) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                Accepted::Closed
            }
        }
    }
}

/// The answer to a plain HTTP request on a TLS port, as nginx gives one: a client (or a
/// person with curl) learns what is wrong rather than seeing a bare reset.
const TLS_REQUIRED_RESPONSE: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 90\r\n\r\n{\"error\":{\"code\":\"tls_required\",\"message\":\"this port speaks HTTPS; use an https:// URL\"}}\n";

/// Answers a plain HTTP client with [`TLS_REQUIRED_RESPONSE`] and closes. What the client
/// sent is read (a bounded amount) first: closing a socket with unread data sends a reset,
/// which can reach the client before the answer and hide it.
async fn refuse_plain_http(mut stream: TcpStream) {
    let mut scratch = [0u8; 8192];
    let _ = stream.try_read(&mut scratch);
    let _ = stream.write_all(TLS_REQUIRED_RESPONSE).await;
    let _ = stream.shutdown().await;
}

/// The certificate a port presents now; replaced when the files change.
#[derive(Debug)]
struct CurrentCertificate {
    current: RwLock<Current>,
}

#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    stamps: FileStamps,
}

impl CurrentCertificate {
    fn stamps(&self) -> FileStamps {
        match self.current.read() {
            Ok(current) => current.stamps,
            Err(poisoned) => poisoned.into_inner().stamps,
        }
    }

    fn replace(&self, key: Arc<CertifiedKey>, stamps: FileStamps) {
        let mut current = match self.current.write() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        *current = Current { key, stamps };
    }
}

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let key = match self.current.read() {
            Ok(current) => Arc::clone(&current.key),
            Err(poisoned) => Arc::clone(&poisoned.into_inner().key),
        };
        Some(key)
    }
}

/// Size and modification time of the chain and key files (`None` where unreadable).
type FileStamps = [Option<(u64, SystemTime)>; 2];

fn file_stamps(settings: &TlsSettings) -> FileStamps {
    let stamp = |path: &Path| {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.len(), meta.modified().ok()?))
    };
    [
        stamp(&settings.certificate_chain),
        stamp(&settings.private_key),
    ]
}

/// Reads the chain and the key and checks that the key belongs to the first certificate.
fn load_certified_key(settings: &TlsSettings) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let chain_pem = read(&settings.certificate_chain)?;
    let key_pem = read(&settings.private_key)?;
    let chain = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::BadCertificatePem {
            path: settings.certificate_chain.clone(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: settings.certificate_chain.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| TlsError::BadKeyPem {
        path: settings.private_key.clone(),
        source,
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, key, &provider).map_err(|source| TlsError::KeyRejected {
        chain: settings.certificate_chain.clone(),
        key: settings.private_key.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Writes a fresh self-signed certificate and its key into `dir`.
    fn write_pair(dir: &Path, name: &str) -> TlsSettings {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let chain = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&chain, made.cert.pem()).unwrap();
        std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
        TlsSettings {
            certificate_chain: chain,
            private_key: key,
            allow_plain_http: false,
            reload_interval: default_reload_interval(),
        }
    }

    fn presented(tls: &ServerTls) -> Vec<u8> {
        tls.resolver.current.read().unwrap().key.cert[0].to_vec()
    }

    #[test]
    fn the_tls_required_response_declares_its_exact_length() {
        crate::tests::assert_declares_its_exact_length(TLS_REQUIRED_RESPONSE);
    }

    #[test]
    fn a_matching_pair_loads() {
        let dir = tempfile::tempdir().unwrap();
        let settings = write_pair(dir.path(), "a");
        assert!(ServerTls::load(&settings).is_ok());
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = write_pair(dir.path(), "a");
        settings.private_key = dir.path().join("nowhere.key");
        let err = ServerTls::load(&settings).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err}");
        assert!(err.to_string().contains("nowhere.key"), "{err}");
    }

    #[test]
    fn a_file_without_a_certificate_or_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let settings = write_pair(dir.path(), "a");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem at all\n").unwrap();
        let no_chain = TlsSettings {
            certificate_chain: empty.clone(),
            ..settings.clone()
        };
        let err = ServerTls::load(&no_chain).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        let no_key = TlsSettings {
            private_key: empty,
            ..settings.clone()
        };
        let err = ServerTls::load(&no_key).unwrap_err();
        assert!(matches!(err, TlsError::BadKeyPem { .. }), "{err}");
        // The certificate file given as the key: it holds no key.
        let swapped = TlsSettings {
            private_key: settings.certificate_chain.clone(),
            ..settings
        };
        assert!(matches!(
            ServerTls::load(&swapped),
            Err(TlsError::BadKeyPem { .. })
        ));
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_pair(dir.path(), "a");
        let b = write_pair(dir.path(), "b");
        let crossed = TlsSettings {
            private_key: b.private_key,
            ..a
        };
        let err = ServerTls::load(&crossed).unwrap_err();
        assert!(matches!(err, TlsError::KeyRejected { .. }), "{err}");
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn a_nonsense_reload_interval_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let settings = TlsSettings {
            reload_interval: Duration::ZERO,
            ..write_pair(dir.path(), "a")
        };
        assert!(matches!(
            ServerTls::load(&settings),
            Err(TlsError::ReloadInterval(_))
        ));
    }

    #[test]
    fn renewed_files_are_picked_up_and_a_bad_renewal_keeps_the_old_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let settings = write_pair(dir.path(), "live");
        let tls = ServerTls::load(&settings).unwrap();
        let first = presented(&tls);
        assert!(!tls.reload_if_changed().unwrap(), "nothing changed yet");

        // A renewal: new files in place of the old.
        let renewed = write_pair(dir.path(), "renewed");
        std::fs::copy(&renewed.certificate_chain, &settings.certificate_chain).unwrap();
        std::fs::copy(&renewed.private_key, &settings.private_key).unwrap();
        // Make sure the stamps differ even on a file system with coarse timestamps.
        let bumped = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&settings.certificate_chain)
            .unwrap()
            .set_modified(bumped)
            .unwrap();
        assert!(tls.reload_if_changed().unwrap());
        let second = presented(&tls);
        assert_ne!(first, second);

        // A half-written renewal (a key that does not match) is refused; the last good
        // certificate stays.
        let other = write_pair(dir.path(), "other");
        std::fs::copy(&other.private_key, &settings.private_key).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&settings.private_key)
            .unwrap()
            .set_modified(bumped + Duration::from_secs(5))
            .unwrap();
        assert!(matches!(
            tls.reload_if_changed(),
            Err(TlsError::KeyRejected { .. })
        ));
        assert_eq!(presented(&tls), second);
    }
}
