//! `loadgen::run` against real TLS servers started by the test: rustls (the server side of
//! the same library) with certificates made by `rcgen` — a private CA, a server certificate
//! for 127.0.0.1, an expired one, and client certificates — answering HTTP/1.1 by hand and
//! HTTP/2 with the `h2` crate, counting every request it answers and every resumed handshake.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use loadgen::{run, Args, RunOutcome};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{HandshakeKind, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// A CA and the certificates it signed, written as PEM files into a fresh directory.
struct Pki {
    dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "loadgen-tls-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "loadgen test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = params.self_signed(&ca_key).expect("CA certificate");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write CA");
        Self { dir, ca, ca_key }
    }

    fn ca_pem(&self) -> String {
        path(&self.dir.join("ca.pem"))
    }

    /// A leaf certificate signed by the CA for `names`; `expired` puts its validity in 2020.
    /// Returns its DER chain and key, and writes `NAME.pem` and `NAME.key`.
    fn leaf(
        &self,
        file: &str,
        names: &[&str],
        expired: bool,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, file);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("leaf certificate");
        std::fs::write(self.dir.join(format!("{file}.pem")), cert.pem()).expect("write cert");
        std::fs::write(self.dir.join(format!("{file}.key")), key.serialize_pem())
            .expect("write key");
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }

    fn file(&self, name: &str) -> String {
        path(&self.dir.join(name))
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path(p: &Path) -> String {
    p.to_str().expect("utf-8 temp path").to_string()
}

/// What the server counted.
#[derive(Default)]
struct Counts {
    http1: AtomicU64,
    http2: AtomicU64,
    handshakes: AtomicU64,
    resumed: AtomicU64,
}

/// A TLS server on 127.0.0.1 (port 0) with `config`; HTTP/1.1 connections are closed after
/// every `close_every`-th response on them (so clients reconnect), HTTP/2 ones are kept.
async fn start_server(config: ServerConfig, close_every: u64) -> (String, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let counts = Arc::new(Counts::default());
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let c = Arc::clone(&counts);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let c = Arc::clone(&c);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                c.handshakes.fetch_add(1, Ordering::Relaxed);
                let conn = tls.get_ref().1;
                if conn.handshake_kind() == Some(HandshakeKind::Resumed) {
                    c.resumed.fetch_add(1, Ordering::Relaxed);
                }
                if conn.alpn_protocol() == Some(b"h2") {
                    serve_h2(tls, &c).await;
                } else {
                    serve_h1(tls, &c, close_every).await;
                }
            });
        }
    });
    (format!("https://{addr}"), counts)
}

async fn serve_h1(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    c: &Counts,
    close_every: u64,
) {
    let mut buf = Vec::new();
    let mut served = 0u64;
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            served += 1;
            c.http1.fetch_add(1, Ordering::Relaxed);
            let close = served % close_every == 0;
            let resp: &[u8] = if close {
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello"
            } else {
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
            };
            if tls.write_all(resp).await.is_err() || tls.flush().await.is_err() {
                return;
            }
            if close {
                let _ = tls.shutdown().await;
                return;
            }
        }
        let mut chunk = [0u8; 4096];
        match tls.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn serve_h2(tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>, c: &Counts) {
    let Ok(mut conn) = h2::server::handshake(tls).await else {
        return;
    };
    while let Some(Ok((_req, mut respond))) = conn.accept().await {
        c.http2.fetch_add(1, Ordering::Relaxed);
        let Ok(resp) = http::Response::builder().status(200).body(()) else {
            return;
        };
        if let Ok(mut body) = respond.send_response(resp, false) {
            let _ = body.send_data(Bytes::from_static(b"hello"), true);
        }
    }
}

/// The server's settings: its certificate chain and key, the ALPN protocols it offers, and
/// the CA client certificates must be signed by (client certificates required) if any.
fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
    client_ca: Option<&Pki>,
) -> ServerConfig {
    let provider = Arc::new(default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(pki) => {
            let mut roots = RootCertStore::empty();
            roots.add(pki.ca.der().clone()).expect("client CA");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).expect("server cert");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

async fn loadgen(list: &[&str]) -> RunOutcome {
    let mut argv = vec!["loadgen"];
    argv.extend_from_slice(list);
    let args = Args::try_parse_from_iter(argv).expect("valid arguments");
    run(args, CancellationToken::new()).await.expect("run ends")
}

fn errors(o: &RunOutcome) -> Vec<(String, u64)> {
    o.stats
        .errors
        .iter()
        .map(|e| (e.error.clone(), e.occurrences))
        .collect()
}

const H1_AND_H2: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Trusted through `--cacert`: exact counts over HTTP/1.1, and the reconnects after each
/// server-side close resume their TLS sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_is_trusted_with_cacert_and_sessions_resume() {
    let pki = Pki::new("cacert");
    let (chain, key) = pki.leaf("server", &["127.0.0.1", "localhost"], false);
    let (host, counts) = start_server(server_config(chain, key, H1_AND_H2, None), 10).await;
    let ca = pki.ca_pem();
    let o = loadgen(&[
        "--host", &host, "-u", "4", "-r", "100", "-n", "300", "--cacert", &ca, "-q",
    ])
    .await;
    assert_eq!(errors(&o), vec![], "{}", o.summary);
    assert_eq!(o.total_requests, 300);
    assert_eq!(
        counts.http1.load(Ordering::Relaxed),
        300,
        "the server answered 300"
    );
    assert_eq!(o.http1_requests, 300);
    assert!(
        o.summary.contains("Protocols: HTTP/1.1 300 requests"),
        "{}",
        o.summary
    );
    let (handshakes, resumed) = (
        counts.handshakes.load(Ordering::Relaxed),
        counts.resumed.load(Ordering::Relaxed),
    );
    // 4 users, a close after every 10th response: about 30 connections, all but the first
    // few resumed.
    assert!(handshakes >= 30, "handshakes: {handshakes}");
    assert!(
        resumed >= handshakes - 8,
        "resumed {resumed} of {handshakes}"
    );
}

/// Without `--cacert` the private CA is not trusted: every request fails, with the cause and
/// the fix in the error; `--insecure` accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_rejected_clearly_and_accepted_with_insecure() {
    let pki = Pki::new("untrusted");
    let (chain, key) = pki.leaf("server", &["127.0.0.1"], false);
    let (host, counts) = start_server(server_config(chain, key, H1_AND_H2, None), 1000).await;
    let o = loadgen(&["--host", &host, "-u", "2", "-r", "100", "-n", "20", "-q"]).await;
    assert_eq!(o.failures, 20);
    let errs = errors(&o);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].0.contains("certificate not trusted"), "{errs:?}");
    assert!(errs[0].0.contains("--cacert"), "{errs:?}");
    assert_eq!(counts.http1.load(Ordering::Relaxed), 0);
    assert!(
        o.summary.contains("no response 20 requests"),
        "{}",
        o.summary
    );

    let o = loadgen(&[
        "--host",
        &host,
        "-u",
        "2",
        "-r",
        "100",
        "-n",
        "20",
        "--insecure",
        "-q",
    ])
    .await;
    assert_eq!(errors(&o), vec![]);
    assert_eq!(counts.http1.load(Ordering::Relaxed), 20);
}

/// A name the certificate does not hold (`--sni`) and an expired certificate are named as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_mismatch_and_expiry_are_named() {
    let pki = Pki::new("names");
    let ca = pki.ca_pem();
    let (chain, key) = pki.leaf("server", &["127.0.0.1"], false);
    let (host, _) = start_server(server_config(chain, key, H1_AND_H2, None), 1000).await;
    let o = loadgen(&[
        "--host",
        &host,
        "-n",
        "3",
        "--cacert",
        &ca,
        "--sni",
        "other.example",
        "-q",
    ])
    .await;
    let errs = errors(&o);
    assert_eq!(o.failures, 3);
    assert!(errs[0].0.contains("name mismatch"), "{errs:?}");

    let (chain, key) = pki.leaf("expired", &["127.0.0.1"], true);
    let (host, _) = start_server(server_config(chain, key, H1_AND_H2, None), 1000).await;
    let o = loadgen(&["--host", &host, "-n", "3", "--cacert", &ca, "-q"]).await;
    let errs = errors(&o);
    assert_eq!(o.failures, 3);
    assert!(errs[0].0.contains("certificate expired"), "{errs:?}");
}

/// A server that requires a client certificate: without `--cert` the error says to pass one;
/// with it every request is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_client_certificate_is_supplied() {
    let pki = Pki::new("mtls");
    let ca = pki.ca_pem();
    let (chain, key) = pki.leaf("server", &["127.0.0.1"], false);
    let _ = pki.leaf("client", &["client.example"], false);
    let config = server_config(chain, key, H1_AND_H2, Some(&pki));
    let (host, counts) = start_server(config, 1000).await;
    let o = loadgen(&["--host", &host, "-n", "4", "--cacert", &ca, "-q"]).await;
    let errs = errors(&o);
    assert_eq!(o.failures, 4, "{errs:?}");
    assert!(
        errs[0].0.contains("requires a client certificate"),
        "{errs:?}"
    );
    assert!(errs[0].0.contains("--cert"), "{errs:?}");

    let (cert, key) = (pki.file("client.pem"), pki.file("client.key"));
    let o = loadgen(&[
        "--host", &host, "-u", "3", "-r", "100", "-n", "60", "--cacert", &ca, "--cert", &cert,
        "--key", &key, "-q",
    ])
    .await;
    assert_eq!(errors(&o), vec![]);
    assert_eq!(counts.http1.load(Ordering::Relaxed), 60);
}

/// `--http2` with several streams per user: the server counts exactly the requests sent, and
/// the summary says they went over HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_counts_are_exact() {
    let pki = Pki::new("h2");
    let ca = pki.ca_pem();
    let (chain, key) = pki.leaf("server", &["127.0.0.1"], false);
    let (host, counts) = start_server(server_config(chain, key, H1_AND_H2, None), 1000).await;
    let o = loadgen(&[
        "--host",
        &host,
        "-u",
        "3",
        "-r",
        "100",
        "-n",
        "1001",
        "--cacert",
        &ca,
        "--http2",
        "--h2-streams",
        "8",
        "-q",
    ])
    .await;
    assert_eq!(errors(&o), vec![]);
    assert_eq!(o.total_requests, 1001);
    assert_eq!(counts.http2.load(Ordering::Relaxed), 1001);
    assert_eq!(counts.http1.load(Ordering::Relaxed), 0);
    assert_eq!(
        counts.handshakes.load(Ordering::Relaxed),
        3,
        "one connection per user"
    );
    assert_eq!((o.http1_requests, o.http2_requests), (0, 1001));
    assert!(
        o.summary.contains("Protocols: HTTP/2 1001 requests"),
        "{}",
        o.summary
    );
}

/// A server whose ALPN offers only h2 gets HTTP/2 without `--http2`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_only_server_gets_http2_by_alpn() {
    let pki = Pki::new("h2only");
    let ca = pki.ca_pem();
    let (chain, key) = pki.leaf("server", &["127.0.0.1"], false);
    let (host, counts) = start_server(server_config(chain, key, &[b"h2"], None), 1000).await;
    let o = loadgen(&[
        "--host", &host, "-u", "2", "-r", "100", "-n", "50", "--cacert", &ca, "-q",
    ])
    .await;
    assert_eq!(errors(&o), vec![]);
    assert_eq!(counts.http2.load(Ordering::Relaxed), 50);
    assert_eq!(o.http2_requests, 50);
}

/// Bad TLS options stop the run before any load, naming the option.
#[tokio::test]
async fn bad_tls_options_are_named() {
    let pki = Pki::new("badopts");
    let missing = pki.file("missing.pem");
    let argv = [
        "loadgen",
        "--host",
        "https://127.0.0.1:9",
        "-n",
        "1",
        "--cacert",
        &missing,
    ];
    let args = Args::try_parse_from_iter(argv).expect("valid arguments");
    let e = run(args, CancellationToken::new())
        .await
        .expect_err("a missing --cacert file is an error");
    assert!(e.to_string().contains("--cacert"), "{e}");

    let not_pem = pki.file("ca.pem.txt");
    std::fs::write(&not_pem, "not a certificate").expect("write");
    let argv = [
        "loadgen",
        "--host",
        "https://127.0.0.1:9",
        "-n",
        "1",
        "--cacert",
        &not_pem,
    ];
    let args = Args::try_parse_from_iter(argv).expect("valid arguments");
    let e = run(args, CancellationToken::new())
        .await
        .expect_err("a file without certificates is an error");
    assert!(e.to_string().contains("no PEM certificate"), "{e}");

    let e = Args::try_parse_from_iter(["loadgen", "--host", "https://x", "--tls-min", "1.1"])
        .expect_err("TLS 1.1 is refused");
    assert!(e.to_string().contains("use 1.2 or 1.3"), "{e}");
}

/// `--insecure` is warned about once per run, however many connections skip verification
/// (the binary's stderr).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_is_warned_once() {
    let pki = Pki::new("warn");
    let (chain, key) = pki.leaf("server", &["127.0.0.1"], false);
    let (host, counts) = start_server(server_config(chain, key, H1_AND_H2, None), 5).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--host",
            &host,
            "-u",
            "4",
            "-r",
            "100",
            "-n",
            "40",
            "--insecure",
        ])
        .args(["--only-summary"])
        .output()
        .await
        .expect("run loadgen");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("warning: --insecure").count(), 1, "{stderr}");
    assert_eq!(counts.http1.load(Ordering::Relaxed), 40);
    // A close after every 5th response: the reconnects were made and resumed.
    assert!(counts.handshakes.load(Ordering::Relaxed) >= 8);
}

/// `--tls-min 1.3` against a server that speaks only TLS 1.2: the error names the versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_min_is_enforced() {
    let pki = Pki::new("tlsmin");
    let ca = pki.ca_pem();
    let (chain, key) = pki.leaf("server", &["127.0.0.1"], false);
    let config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_protocol_versions(&[&tokio_rustls::rustls::version::TLS12])
        .expect("TLS 1.2")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server cert");
    let (host, counts) = start_server(config, 1000).await;
    let o = loadgen(&[
        "--host",
        &host,
        "-n",
        "3",
        "--cacert",
        &ca,
        "--tls-min",
        "1.3",
        "-q",
    ])
    .await;
    let errs = errors(&o);
    assert_eq!(o.failures, 3, "{errs:?}");
    assert!(errs[0].0.contains("no TLS version"), "{errs:?}");
    // TLS 1.2 is accepted by default.
    let o = loadgen(&["--host", &host, "-n", "3", "--cacert", &ca, "-q"]).await;
    assert_eq!(errors(&o), vec![]);
    assert_eq!(counts.http1.load(Ordering::Relaxed), 3);
}
