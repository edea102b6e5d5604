//! TLS for the fast path: one rustls client configuration per run (ring, the provider reqwest
//! uses), shared by every user's connection, so its in-memory session cache lets a reconnecting
//! user resume its TLS session (a ticket or session id from an earlier handshake with the same
//! server) instead of a full handshake.
//!
//! Trust: the web's roots (Mozilla's list, `webpki-roots`) plus the PEM bundle of `--cacert`;
//! or nothing verified with `--insecure`. A failed handshake is reported by its cause
//! ([`TlsFailure`]) with what to do about it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
    SignatureScheme, SupportedProtocolVersion,
};
use tokio_rustls::TlsConnector;

/// The oldest TLS version loadgen may negotiate (`--tls-min`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsMin {
    /// TLS 1.2 or 1.3 (the default).
    #[default]
    V1_2,
    /// TLS 1.3 only.
    V1_3,
}

/// How `https://` connections are made (the TLS options of the command line).
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsOptions {
    /// Don't verify the server's certificate (`--insecure`).
    pub(crate) insecure: bool,
    /// PEM file of CA certificates trusted besides the web's roots (`--cacert`).
    pub(crate) cacert: Option<PathBuf>,
    /// Client certificate chain (PEM) and its private key (PEM), sent when the server asks.
    pub(crate) client_cert: Option<(PathBuf, PathBuf)>,
    /// The oldest TLS version accepted.
    pub(crate) min: TlsMin,
    /// Server name sent in SNI and checked against the certificate; default: the URL's host.
    pub(crate) sni: Option<String>,
}

/// What an `https://` connection needs: the handshake's settings, offering HTTP/1.1 or HTTP/2
/// by ALPN, and the name the server is checked against.
#[derive(Clone)]
pub(super) struct TlsClient {
    /// Offers `http/1.1` by ALPN.
    pub(super) h1: TlsConnector,
    /// Offers `h2` by ALPN.
    pub(super) h2: TlsConnector,
    /// Sent in SNI (unless an IP address) and checked against the certificate.
    pub(super) name: ServerName<'static>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// The TLS settings for a server reached as `host`. Errors name the option to fix: an
    /// unreadable or empty `--cacert`, a `--cert`/`--key` pair that does not load, a bad
    /// `--sni`.
    pub(super) fn new(opts: &TlsOptions, host: &str) -> anyhow::Result<Self> {
        let provider = Arc::new(crypto::ring::default_provider());
        let versions: &[&SupportedProtocolVersion] = match opts.min {
            TlsMin::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsMin::V1_3 => &[&rustls::version::TLS13],
        };
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions)
            .context("the TLS provider does not support the --tls-min version")?;
        let builder = if opts.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        } else {
            let mut roots = RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            if let Some(path) = &opts.cacert {
                add_cacert(&mut roots, path)?;
            }
            builder.with_root_certificates(roots)
        };
        let mut config = match &opts.client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = read_certs(cert, "--cert")?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    anyhow::anyhow!(
                        "--key {}: cannot read a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
                        key.display()
                    )
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    anyhow::anyhow!("--cert/--key: the key does not fit the certificate: {e}")
                })?
            }
        };
        let name = opts.sni.as_deref().unwrap_or(host);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(name.to_string())
            .map_err(|_| anyhow::anyhow!("--sni {name:?} is not a valid DNS name or IP address"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let h1 = TlsConnector::from(Arc::new(config.clone()));
        config.alpn_protocols = vec![b"h2".to_vec()];
        // One session cache for both, so a connection resumes whichever protocol it offers.
        let h2 = TlsConnector::from(Arc::new(config));
        Ok(Self { h1, h2, name })
    }
}

/// Adds the certificates of the PEM bundle at `path` to `roots`.
fn add_cacert(roots: &mut RootCertStore, path: &Path) -> anyhow::Result<()> {
    for (i, cert) in read_certs(path, "--cacert")?.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            anyhow::anyhow!(
                "--cacert {}: certificate {} is not a usable CA certificate: {e}",
                path.display(),
                i + 1
            )
        })?;
    }
    Ok(())
}

/// The PEM certificates in `path` (at least one), for the option `option`.
fn read_certs(path: &Path, option: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            anyhow::anyhow!(
                "{option} {}: cannot read PEM certificates: {e}",
                path.display()
            )
        })?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{option} {}: no PEM certificate in the file (expected -----BEGIN CERTIFICATE-----)",
        path.display()
    );
    Ok(certs)
}

/// `--insecure`: any certificate is accepted; the handshake's signatures are still checked
/// (they prove the server holds the key of the certificate it sent, which costs nothing extra).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why a TLS connection failed, in words that say what to do (they are the error's name in the
/// stats, so each cause is counted apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TlsFailure {
    /// The certificate's issuer is not trusted.
    #[error("TLS: certificate not trusted (unknown issuer); trust its CA with --cacert FILE, or skip verification with --insecure")]
    Untrusted,
    /// The certificate is not valid for the name the connection was made to.
    #[error("TLS: certificate name mismatch (not valid for the host name); connect by a name it holds or set one with --sni NAME, or use --insecure")]
    NameMismatch,
    /// The certificate has expired.
    #[error("TLS: certificate expired; renew the server's certificate, or use --insecure")]
    Expired,
    /// The certificate is not valid yet.
    #[error("TLS: certificate not yet valid (check the clocks); or use --insecure")]
    NotYetValid,
    /// The certificate was rejected for another reason (bad encoding, wrong usage, revoked).
    #[error("TLS: invalid server certificate; use --insecure to skip verification")]
    BadCertificate,
    /// The server asked for a client certificate and none was given.
    #[error("TLS: the server requires a client certificate; pass --cert FILE --key FILE")]
    ClientCertRequired,
    /// The server rejected the client certificate.
    #[error("TLS: the server rejected the client certificate (--cert); check it is signed by a CA the server trusts")]
    ClientCertRejected,
    /// No TLS version both sides accept.
    #[error("TLS: no TLS version both sides accept (see --tls-min)")]
    Version,
    /// No application protocol both sides speak (ALPN).
    #[error("TLS: the server speaks neither of the offered protocols (ALPN http/1.1 or h2)")]
    NoProtocol,
    /// Any other handshake or record-layer failure.
    #[error("TLS: handshake failed")]
    Other,
}

impl TlsFailure {
    /// The cause of a rustls error.
    pub(super) fn of(e: &rustls::Error) -> Self {
        use rustls::Error as E;
        match e {
            E::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => Self::Untrusted,
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => Self::NameMismatch,
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    Self::Expired
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    Self::NotYetValid
                }
                _ => Self::BadCertificate,
            },
            E::AlertReceived(a) => match *a {
                AlertDescription::CertificateRequired => Self::ClientCertRequired,
                AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateRevoked
                | AlertDescription::UnsupportedCertificate => Self::ClientCertRejected,
                AlertDescription::ProtocolVersion => Self::Version,
                AlertDescription::NoApplicationProtocol => Self::NoProtocol,
                _ => Self::Other,
            },
            E::PeerIncompatible(rustls::PeerIncompatible::ServerDoesNotSupportTls12Or13)
            | E::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered)
            | E::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOfferedOrEnabled) => {
                Self::Version
            }
            E::NoApplicationProtocol => Self::NoProtocol,
            _ => Self::Other,
        }
    }

    /// The cause of an I/O error on a TLS stream, when it is a TLS error.
    pub(super) fn of_io(e: &std::io::Error) -> Option<Self> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map(Self::of)
    }
}
