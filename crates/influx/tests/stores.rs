//! The edge against the real stores on this machine: InfluxDB 1.x on 127.0.0.1:8086 (v1 writes,
//! InfluxQL queries) and VictoriaMetrics on 127.0.0.1:8428 (v2 writes, gzipped), plus a local
//! HTTP server that answers as a store does when it is busy or refuses the credential, to see
//! what goes on the wire (`Retry-After`, `Content-Length`, the credential's header). Each test
//! uses its own database or measurement and removes it at the end, failed or not.

use std::time::Duration;

use bytes::Bytes;
use influx::{Auth, Endpoint, Epoch, Error, QueryClient, WriteApi, Writer};
use loadtest_influx as influx;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const INFLUX: &str = "http://127.0.0.1:8086";
const VM: &str = "http://127.0.0.1:8428";

/// Fails with the start command when a store does not answer.
fn require(addr: &str, start: &str) {
    let reachable = std::net::TcpStream::connect_timeout(
        &addr.parse().expect("address"),
        Duration::from_secs(2),
    )
    .is_ok();
    assert!(
        reachable,
        "{addr} is not reachable; start it with `{start}` (or run `bash .ci/run`)"
    );
}

/// A database of its own on InfluxDB 1.x, dropped when the test ends.
struct Database {
    name: String,
}

impl Database {
    async fn create() -> Self {
        require(
            "127.0.0.1:8086",
            "influxd -config /etc/influxdb/influxdb.conf &",
        );
        let name = format!("influx_edge_{}", uuid::Uuid::new_v4().simple());
        admin(&format!("CREATE DATABASE {name}")).await;
        Self { name }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let q = format!("DROP DATABASE {}", self.name);
        // Runs on failure too; a blocking client, as Drop cannot await.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(admin(&q));
        })
        .join();
    }
}

/// An administrative statement (POST, as InfluxDB wants for them), done when this returns:
/// InfluxDB 1.x sends its 200 before it runs the statement, so the answer is read to the end.
async fn admin(q: &str) {
    let resp = reqwest::Client::new()
        .post(format!("{INFLUX}/query"))
        .form(&[("q", q)])
        .send()
        .await
        .expect("InfluxDB answers");
    let status = resp.status();
    let answer = resp.text().await.expect("answer");
    assert!(
        status.is_success() && !answer.contains("\"error\""),
        "{q}: HTTP {status} {answer}"
    );
}

fn v1_writer(db: &str) -> Writer {
    let endpoint = Endpoint::new(INFLUX, Auth::None).expect("url");
    Writer::new(
        endpoint,
        WriteApi::V1 {
            database: db.into(),
            retention_policy: None,
        },
    )
}

fn reader(db: &str) -> QueryClient {
    QueryClient::new(Endpoint::new(INFLUX, Auth::None).expect("url"), db).epoch(Epoch::Nanoseconds)
}

/// A chain of three buffers goes out as one body, and so does a gzipped one; InfluxQL reads
/// every point back, with tags, in order.
#[tokio::test]
async fn v1_writes_chains_plain_and_gzipped_and_queries_read_them_back() {
    let db = Database::create().await;
    let chain = [
        Bytes::from_static(b"m,host=a v=1i 1000000000\n"),
        Bytes::from_static(b"m,host=b v=2i 2000000000\n"),
        Bytes::from_static(b"m,host=a v=3i 3000000000\n"),
    ];
    v1_writer(&db.name)
        .write(&chain)
        .await
        .expect("plain write");
    let big: String = (0..200)
        .map(|i| format!("big,host=c v={i}i {}\n", 10_000_000_000i64 + i))
        .collect();
    assert!(big.len() >= influx::GZIP_FROM_BYTES);
    v1_writer(&db.name)
        .gzip(true)
        .write(&[Bytes::from(big)])
        .await
        .expect("gzipped write");

    let q = reader(&db.name);
    let series = q
        .query("SELECT v, host FROM m ORDER BY time")
        .await
        .expect("query");
    assert_eq!(series.len(), 1);
    let s = &series[0];
    assert_eq!(s.name, "m");
    assert_eq!(s.columns, ["time", "v", "host"]);
    let rows: Vec<(i64, i64, &str)> = s
        .values
        .iter()
        .map(|r| {
            (
                r[0].as_i64().expect("time"),
                r[1].as_i64().expect("v"),
                r[2].as_str().expect("host"),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (1_000_000_000, 1, "a"),
            (2_000_000_000, 2, "b"),
            (3_000_000_000, 3, "a")
        ]
    );
    let grouped = q
        .query("SELECT count(v) FROM big GROUP BY host; SELECT sum(v) FROM m")
        .await
        .expect("two statements");
    assert_eq!(grouped.len(), 2);
    assert_eq!(grouped[0].tags["host"], "c");
    assert_eq!(grouped[0].values[0][1], serde_json::json!(200));
    assert_eq!(grouped[1].values[0][1], serde_json::json!(6));
}

/// What a reader is told: a query that does not parse, a database that is not there, more rows
/// than its limit, a store that is down, a point the store refuses.
#[tokio::test]
async fn errors_are_typed() {
    let db = Database::create().await;
    let lines: String = (0..5).map(|i| format!("m v={i}i {}\n", i + 1)).collect();
    v1_writer(&db.name)
        .write(&[Bytes::from(lines)])
        .await
        .expect("write");
    let q = reader(&db.name);

    let bad = q.query("SELEC v FROM m").await.expect_err("does not parse");
    assert!(
        matches!(&bad, Error::BadQuery { message } if message.contains("error parsing query")),
        "{bad:?}"
    );
    let missing = reader("influx_edge_no_such_database")
        .query("SELECT v FROM m")
        .await
        .expect_err("no database");
    assert!(matches!(missing, Error::NotFound { .. }), "{missing:?}");
    let rows = q
        .clone()
        .row_limit(4)
        .query("SELECT v FROM m")
        .await
        .expect_err("5 rows");
    assert_eq!(rows, Error::TooManyRows { limit: 4 });
    assert_eq!(
        q.clone()
            .row_limit(5)
            .query("SELECT v FROM m")
            .await
            .expect("5 rows fit")[0]
            .values
            .len(),
        5
    );

    // A field written as an integer cannot take a string: 400, with InfluxDB's explanation.
    let conflict = v1_writer(&db.name)
        .write(&[Bytes::from_static(b"m v=\"text\" 9\n")])
        .await
        .expect_err("type conflict");
    assert!(
        matches!(&conflict, Error::Rejected { status: 400, message } if message.contains("field type conflict")),
        "{conflict:?}"
    );

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let down = QueryClient::new(
        Endpoint::new(&format!("http://127.0.0.1:{port}"), Auth::None).expect("url"),
        "db",
    )
    .query("SELECT 1")
    .await
    .expect_err("nothing listens");
    assert!(down.is_transient(), "{down:?}");
}

/// VictoriaMetrics takes the v2 write API with a gzipped body, as InfluxDB 2.x does; the points
/// are read back from its export API.
#[tokio::test]
async fn v2_writes_gzipped_bodies_to_victoriametrics() {
    require(
        "127.0.0.1:8428",
        "victoria-metrics -storageDataPath /tmp/vm -httpListenAddr 127.0.0.1:8428 &",
    );
    let measurement = format!("influx_edge_{}", uuid::Uuid::new_v4().simple());
    // An hour ago: within VictoriaMetrics' retention (a month by default).
    let base_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64
        - 3_600_000_000_000;
    let lines: String = (0..100)
        .map(|i| {
            format!(
                "{measurement},run=r v={i}i {}\n",
                base_ns + i * 1_000_000_000
            )
        })
        .collect();
    let writer = Writer::new(
        Endpoint::new(VM, Auth::Token(SecretString::from("unused"))).expect("url"),
        WriteApi::V2 {
            org: "o".into(),
            bucket: "b".into(),
        },
    )
    .gzip(true);
    let half = lines.len() / 2;
    let cut = lines[..half].rfind('\n').expect("newline") + 1;
    let bytes = Bytes::from(lines);
    writer
        .write(&[bytes.slice(..cut), bytes.slice(cut..)])
        .await
        .expect("v2 write");

    let http = reqwest::Client::new();
    let selector = format!("{{__name__=\"{measurement}_v\"}}");
    let mut values = Vec::new();
    for _ in 0..50 {
        http.get(format!("{VM}/internal/force_flush"))
            .send()
            .await
            .expect("flush");
        let text = http
            .get(format!("{VM}/api/v1/export"))
            .query(&[("match[]", selector.as_str())])
            .send()
            .await
            .expect("export")
            .text()
            .await
            .expect("text");
        if let Some(line) = text.lines().next() {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            values = v["values"].as_array().cloned().unwrap_or_default();
            if values.len() == 100 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = http
        .post(format!("{VM}/api/v1/admin/tsdb/delete_series"))
        .query(&[("match[]", selector.as_str())])
        .send()
        .await;
    assert_eq!(values.len(), 100, "all points read back: {values:?}");
    assert_eq!(values[99], serde_json::json!(99));
}

/// One request as a local server saw it.
#[derive(Debug)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

/// Serves one request on a local port with `status` (`503 Service Unavailable`), the extra
/// header lines `headers` and a JSON `body`, and hands back what it received.
async fn serve_once(
    status: &str,
    headers: &str,
    body: &str,
) -> (String, tokio::task::JoinHandle<Seen>) {
    let answer = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accept");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (head, body_start) = loop {
            let n = sock.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed before the head");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break (String::from_utf8_lossy(&buf[..end]).to_lowercase(), end + 4);
            }
        };
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().expect("length"));
        while buf.len() < body_start + len {
            let n = sock.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed before the body");
            buf.extend_from_slice(&chunk[..n]);
        }
        sock.write_all(answer.as_bytes()).await.expect("answer");
        Seen {
            head,
            body: buf[body_start..].to_vec(),
        }
    });
    (url, task)
}

/// A v2 write to a busy store: the token goes in `Authorization: Token`, the chain of buffers
/// goes as one body with its length (not chunked), and the store's 503 comes back as
/// unavailable with its `Retry-After`.
#[tokio::test]
async fn v2_sends_the_token_and_a_sized_body_and_honours_retry_after() {
    let (url, seen) = serve_once(
        "503 Service Unavailable",
        "Retry-After: 7\r\n",
        r#"{"code":"unavailable","message":"busy!"}"#,
    )
    .await;
    let writer = Writer::new(
        Endpoint::new(&url, Auth::Token(SecretString::from("s3cret"))).expect("url"),
        WriteApi::V2 {
            org: "o".into(),
            bucket: "b".into(),
        },
    );
    let err = writer
        .write(&[
            Bytes::from_static(b"a v=1i 1\n"),
            Bytes::from_static(b"b v=2i 2\n"),
        ])
        .await
        .expect_err("busy");
    assert_eq!(
        err,
        Error::Unavailable {
            message: "HTTP 503: busy!".into(),
            retry_after: Some(Duration::from_secs(7)),
        }
    );
    let seen = seen.await.expect("served");
    assert!(
        seen.head
            .starts_with("post /api/v2/write?org=o&bucket=b&precision=ns "),
        "{}",
        seen.head
    );
    assert!(
        seen.head.contains("authorization: token s3cret"),
        "{}",
        seen.head
    );
    assert!(seen.head.contains("content-length: 18"), "{}", seen.head);
    assert!(!seen.head.contains("transfer-encoding"), "{}", seen.head);
    assert_eq!(seen.body, b"a v=1i 1\nb v=2i 2\n");
}

/// A query with basic auth to a store that refuses it: the credential goes as basic auth, the
/// answer is an auth error with the store's explanation, and the error text has no password.
#[tokio::test]
async fn a_refused_credential_is_an_auth_error() {
    let (url, seen) = serve_once(
        "401 Unauthorized",
        "",
        r#"{"error":"authorization failed"}"#,
    )
    .await;
    let auth = Auth::Basic {
        username: "reader".into(),
        password: Some(SecretString::from("pw")),
    };
    let err = QueryClient::new(Endpoint::new(&url, auth).expect("url"), "loadtest")
        .retention_policy(Some("week".into()))
        .query("SELECT * FROM loadtest_event WHERE event_id = 'x'")
        .await
        .expect_err("refused");
    assert_eq!(
        err,
        Error::Auth {
            status: 401,
            message: "authorization failed".into()
        }
    );
    let seen = seen.await.expect("served");
    // "reader:pw" in base64.
    assert!(
        seen.head.contains("authorization: basic cmvhzgvyonb3"),
        "{}",
        seen.head
    );
    assert!(
        seen.head.starts_with("get /query?db=loadtest&q=select"),
        "{}",
        seen.head
    );
    assert!(seen.head.contains("&rp=week"), "{}", seen.head);
}
