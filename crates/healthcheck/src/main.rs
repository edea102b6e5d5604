//! `loadtest-healthcheck`: the images' `HEALTHCHECK`, so the slim runtime images need no curl
//! and no shell. Standard library only.
//!
//! ```text
//! loadtest-healthcheck http://127.0.0.1:8080/healthz
//! loadtest-healthcheck LOADTEST__HTTP__LISTEN /healthz    # address from that variable
//! ```
//!
//! The first argument is a URL (`http://host:port/path`), or the name of an environment variable
//! holding a listen address (`0.0.0.0:8080`) followed by a path, so the check follows a port the
//! user changed with that variable. An unspecified host (`0.0.0.0`, `[::]`) means this host's
//! loopback. Exit code 0 when the answer is 2xx within 3 s, 1 otherwise (reason on stderr).

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = target(&args, |name| std::env::var(name).ok()).and_then(|(addr, path)| {
        let status = get(&addr, &path)?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("GET http://{addr}{path} answered {status}"))
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadtest-healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The `host:port` and path to check, from the arguments (and `env` for a variable's value).
fn target(
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<(String, String), String> {
    const USAGE: &str = "usage: loadtest-healthcheck http://HOST:PORT/PATH | ENV_VAR /PATH";
    match args {
        [url] => {
            let rest = url.strip_prefix("http://").ok_or(USAGE)?;
            let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let path = if path.is_empty() { "/" } else { path };
            Ok((loopback(addr), path.to_string()))
        }
        [var, path] if path.starts_with('/') => {
            let addr = env(var)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| format!("{var} is not set"))?;
            Ok((loopback(&addr), path.clone()))
        }
        _ => Err(USAGE.to_string()),
    }
}

/// `addr` with an unspecified host replaced by loopback (`0.0.0.0:80` → `127.0.0.1:80`).
fn loopback(addr: &str) -> String {
    if let Some(port) = addr.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = addr.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        addr.to_string()
    }
}

/// Sends `GET path` to `addr` and returns the status code.
fn get(addr: &str, path: &str) -> Result<u16, String> {
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| format!("bad address {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to nothing"))?;
    let mut stream =
        TcpStream::connect_timeout(&sock, TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
    let io = |e: std::io::Error| format!("GET http://{addr}{path}: {e}");
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: loadtest-healthcheck\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut head = Vec::new();
    let mut buf = [0_u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = stream.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    status_code(&head).ok_or_else(|| format!("GET http://{addr}{path}: no HTTP status line"))
}

/// The status code of an HTTP/1.x status line at the start of `head`.
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    words.next().filter(|v| v.starts_with("HTTP/1."))?;
    words.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn url_or_variable() {
        let env = |name: &str| (name == "LISTEN").then(|| "0.0.0.0:9464".to_string());
        assert_eq!(
            target(&args(&["http://127.0.0.1:8080/healthz"]), env),
            Ok(("127.0.0.1:8080".into(), "/healthz".into()))
        );
        assert_eq!(
            target(&args(&["http://localhost:8000"]), env),
            Ok(("localhost:8000".into(), "/".into()))
        );
        assert_eq!(
            target(&args(&["LISTEN", "/healthz"]), env),
            Ok(("127.0.0.1:9464".into(), "/healthz".into()))
        );
        assert!(target(&args(&["UNSET", "/healthz"]), env).is_err());
        assert!(target(&args(&["https://x/"]), env).is_err());
        assert!(target(&args(&[]), env).is_err());
        assert_eq!(loopback("[::]:80"), "[::1]:80");
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            status_code(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b""), None);
    }

    #[test]
    fn checks_a_real_server() -> Result<(), String> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener
            .local_addr()
            .map_err(|e| e.to_string())?
            .to_string();
        let server = std::thread::spawn(move || {
            for answer in ["HTTP/1.1 200 OK\r\n\r\nok", "HTTP/1.1 503 Busy\r\n\r\n"] {
                if let Ok((mut s, _)) = listener.accept() {
                    let mut buf = [0_u8; 1024];
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(answer.as_bytes());
                }
            }
        });
        assert_eq!(get(&addr, "/healthz")?, 200);
        assert_eq!(get(&addr, "/healthz")?, 503);
        server
            .join()
            .map_err(|_| "server thread panicked".to_string())?;
        Ok(())
    }
}
