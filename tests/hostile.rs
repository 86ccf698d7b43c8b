//! Hostile clients over real sockets: the real router and server on loopback, attacked
//! with malformed TLS, stalled and slow HTTP, oversized and malformed bodies, HTTP/2
//! stream abuse, piles of idle connections and wrong client certificates. Every test
//! asserts the outcome the client gets, then that the server still answers a correct
//! AdmissionReview on a fresh connection.
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use savepoint_webhook::server::Limits;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const CREATE_UID: &str = "d81cc643-c6b4-4e2b-a381-04dcf48d5e02";

/// Generous bound for anything the server should do "at once".
const PROMPTLY: Duration = Duration::from_secs(10);

/// Limits small enough that every deadline passes within a test.
fn short_limits() -> Limits {
    Limits {
        handshake_timeout: Duration::from_secs(1),
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        ..Limits::default()
    }
}

/// A client certificate and key, PEM.
struct Identity {
    cert_pem: String,
    key_pem: String,
}

#[path = "support/example_server.rs"]
mod example_server;
#[path = "support/kit.rs"]
mod kit;

use kit::{Review, fixture, mk_savepoint};

use example_server::ExampleServer;

struct Server {
    inner: ExampleServer,
    addr: SocketAddr,
    roots: Arc<RootCertStore>,
    identity: Option<Identity>,
}

impl Server {
    async fn start(limits: Limits) -> Server {
        Server::start_with(limits, None, None).await
    }

    /// Serves the example state; `client_ca` turns on mutual TLS, and `identity` is then
    /// what [`Server::assert_serving`] presents.
    async fn start_with(
        limits: Limits,
        client_ca: Option<&Path>,
        identity: Option<Identity>,
    ) -> Server {
        let inner = ExampleServer::start(limits, client_ca, true).await;
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(inner.ca_pem.as_bytes()).unwrap())
            .unwrap();
        Server {
            addr: inner.addr,
            inner,
            roots: Arc::new(roots),
            identity,
        }
    }

    fn client_config(&self, alpn: &[&[u8]], identity: Option<&Identity>) -> Arc<ClientConfig> {
        let builder = ClientConfig::builder().with_root_certificates(self.roots.clone());
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some(id) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
                        .collect::<Result<Vec<_>, _>>()
                        .unwrap(),
                    PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).unwrap(),
                )
                .unwrap(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    async fn tcp(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    async fn tls_with(
        &self,
        alpn: &[&[u8]],
        identity: Option<&Identity>,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let connector = TlsConnector::from(self.client_config(alpn, identity));
        let name = ServerName::try_from("localhost".to_string()).unwrap();
        connector.connect(name, self.tcp().await).await
    }

    /// A TLS connection that completed its handshake.
    async fn tls(&self, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
        self.tls_with(alpn, self.identity.as_ref()).await.unwrap()
    }

    /// One HTTP/1.1 request on a fresh connection.
    async fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Reply {
        let mut tls = self.tls(&[b"http/1.1"]).await;
        tls.write_all(&request_head(method, path, content_type, Some(body.len())))
            .await
            .unwrap();
        tls.write_all(body).await.unwrap();
        read_response(&mut tls).await.unwrap()
    }

    async fn post(&self, body: &[u8]) -> Reply {
        self.request("POST", "/mutate", Some("application/json"), body)
            .await
    }

    /// A correct Savepoint create on a fresh connection is answered, allowed and patched.
    async fn assert_serving(&self) {
        let reply = tokio::time::timeout(PROMPTLY, self.post(&fixture("savepoint-create.json")))
            .await
            .expect("the server did not answer a correct request in time");
        assert_eq!(reply.status, 200, "{reply:?}");
        assert!(
            reply
                .head
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{reply:?}"
        );
        let review = reply.json();
        assert_eq!(review["response"]["uid"], CREATE_UID, "{review}");
        assert_eq!(review["response"]["allowed"], true, "{review}");
        assert_eq!(review["response"]["patchType"], "JSONPatch", "{review}");
    }

    async fn h2(
        &self,
    ) -> (
        h2::client::SendRequest<Bytes>,
        tokio::task::JoinHandle<Result<(), h2::Error>>,
    ) {
        let tls = self.tls(&[b"h2"]).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (client, connection) = h2::client::handshake(tls).await.unwrap();
        (client, tokio::spawn(connection))
    }

    /// An HTTP/2 connection whose peer never lets the server send DATA: a zero initial
    /// stream window (SETTINGS_INITIAL_WINDOW_SIZE 0) and never a WINDOW_UPDATE.
    async fn h2_never_reading(
        &self,
    ) -> (
        h2::client::SendRequest<Bytes>,
        tokio::task::JoinHandle<Result<(), h2::Error>>,
    ) {
        let tls = self.tls(&[b"h2"]).await;
        let (client, connection) = h2::client::Builder::new()
            .initial_window_size(0)
            .handshake(tls)
            .await
            .unwrap();
        (client, tokio::spawn(connection))
    }

    async fn stop(self) {
        self.inner.stop().await;
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

fn request_head(
    method: &str,
    path: &str,
    content_type: Option<&str>,
    length: Option<usize>,
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    if let Some(content_type) = content_type {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    match length {
        Some(length) => head.push_str(&format!("Content-Length: {length}\r\n")),
        None => head.push_str("Transfer-Encoding: chunked\r\n"),
    }
    head.push_str("\r\n");
    head.into_bytes()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one HTTP/1.1 response (head, then a Content-Length body).
async fn read_response<R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<Reply> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed after {:?}", String::from_utf8_lossy(&buf)),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Reply { status, head, body })
}

/// Reads until the server closes the connection (EOF, reset or a TLS error) and returns
/// what it sent; panics when it is still open after `bound`.
async fn wait_closed<R: AsyncRead + Unpin>(reader: &mut R, bound: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let closed = tokio::time::timeout(bound, async {
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server kept the connection open for {bound:?}; it sent {:?}",
        String::from_utf8_lossy(&got)
    );
    (got, started.elapsed())
}

/// A review of `object` as the API server would send it for a CREATE.
fn review_of(object: Value) -> Vec<u8> {
    Review::create(object).name("hostile".into()).bytes()
}

fn savepoint(location: &str) -> Value {
    mk_savepoint("default", "hostile", "top-speed-windowing", location)
}

// ---------------------------------------------------------------------------------------
// TLS

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_no_http_answer_and_is_closed() {
    let server = Server::start(short_limits()).await;
    let mut tcp = server.tcp().await;
    tcp.write_all(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let (got, _) = wait_closed(&mut tcp, PROMPTLY).await;
    assert!(
        !got.starts_with(b"HTTP/"),
        "an HTTP answer on the TLS port: {:?}",
        String::from_utf8_lossy(&got)
    );
    // At most a TLS alert record (content type 21).
    assert!(got.is_empty() || got[0] == 0x15, "{got:?}");
    server.assert_serving().await;
    server.stop().await;
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_closed_after_the_handshake_timeout() {
    let limits = short_limits();
    let server = Server::start(limits.clone()).await;
    // A real ClientHello, of which only the first bytes are sent.
    let mut hello = Vec::new();
    rustls::ClientConnection::new(
        server.client_config(&[b"h2"], None),
        ServerName::try_from("localhost".to_string()).unwrap(),
    )
    .unwrap()
    .write_tls(&mut hello)
    .unwrap();
    assert!(hello.len() > 40);
    for sent in [&[][..], &hello[..5], &hello[..hello.len() / 2]] {
        let mut tcp = server.tcp().await;
        tcp.write_all(sent).await.unwrap();
        let (got, waited) = wait_closed(&mut tcp, limits.handshake_timeout + PROMPTLY).await;
        assert!(got.is_empty(), "{} bytes sent, answer {got:?}", sent.len());
        assert!(
            waited >= limits.handshake_timeout / 2,
            "closed after {waited:?}, before the handshake timeout"
        );
    }
    server.assert_serving().await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Stalled and slow HTTP

#[tokio::test]
async fn a_connection_that_sends_nothing_after_the_handshake_is_closed() {
    let limits = short_limits();
    let server = Server::start(limits.clone()).await;
    // No bytes at all (hyper cannot yet tell HTTP/1.1 from HTTP/2), half an HTTP/2
    // preface, and a complete HTTP/2 connection that never opens a stream.
    let mut silent = server.tls(&[b"http/1.1"]).await;
    let mut half_preface = server.tls(&[b"h2"]).await;
    half_preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let (client, driver) = server.h2().await;
    for stream in [&mut silent, &mut half_preface] {
        let (got, _) = wait_closed(stream, limits.header_timeout + PROMPTLY).await;
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    }
    let ended = tokio::time::timeout(limits.header_timeout + PROMPTLY, driver)
        .await
        .expect("an HTTP/2 connection without streams stays open")
        .unwrap();
    // The server said GOAWAY (with no error) and closed.
    if let Err(err) = ended {
        assert!(err.is_go_away() || err.is_io(), "{err:?}");
    }
    drop(client);
    server.assert_serving().await;
    server.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let limits = short_limits();
    let server = Server::start(limits.clone()).await;
    // HTTP/1.1: after one answer, the next request's headers must come within the
    // header timeout.
    let mut h1 = server.tls(&[b"http/1.1"]).await;
    let body = fixture("savepoint-create.json");
    h1.write_all(&request_head(
        "POST",
        "/mutate",
        Some("application/json"),
        Some(body.len()),
    ))
    .await
    .unwrap();
    h1.write_all(&body).await.unwrap();
    assert_eq!(read_response(&mut h1).await.unwrap().status, 200);
    let (got, _) = wait_closed(&mut h1, limits.header_timeout + PROMPTLY).await;
    assert!(got.is_empty());

    // HTTP/2: a GOAWAY once no stream was open for the idle timeout.
    let (client, driver) = server.h2().await;
    let (status, _) = h2_post(&client, "/mutate", fixture("savepoint-create.json"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let ended = tokio::time::timeout(limits.idle_timeout + PROMPTLY, driver)
        .await
        .expect("an idle HTTP/2 connection stays open")
        .unwrap();
    if let Err(err) = ended {
        assert!(err.is_go_away() || err.is_io(), "{err:?}");
    }
    drop(client);
    server.assert_serving().await;
    server.stop().await;
}

#[tokio::test]
async fn slow_headers_are_cut_off_at_the_header_timeout() {
    let limits = short_limits();
    let server = Server::start(limits.clone()).await;
    let tls = server.tls(&[b"http/1.1"]).await;
    let (mut reader, mut writer) = tokio::io::split(tls);
    let drip = tokio::spawn(async move {
        let _ = writer
            .write_all(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\n")
            .await;
        for i in 0..300 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer
                .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                return i;
            }
        }
        300
    });
    let (got, waited) = wait_closed(&mut reader, limits.header_timeout + PROMPTLY).await;
    let text = String::from_utf8_lossy(&got);
    assert!(got.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        waited >= limits.header_timeout / 2,
        "closed after {waited:?}"
    );
    drip.abort();
    server.assert_serving().await;
    server.stop().await;
}

#[tokio::test]
async fn slow_bodies_get_408_within_the_request_budget() {
    let limits = short_limits();
    let server = Server::start(limits.clone()).await;
    let body = fixture("savepoint-create.json");

    // HTTP/1.1, one byte every 100 ms; with and without the API server's ?timeout=.
    for (path, budget) in [
        ("/mutate", limits.request_timeout),
        ("/mutate?timeout=1s", Duration::from_secs(1)),
    ] {
        let tls = server.tls(&[b"http/1.1"]).await;
        let (mut reader, mut writer) = tokio::io::split(tls);
        let head = request_head("POST", path, Some("application/json"), Some(body.len()));
        let slow = body.clone();
        let drip = tokio::spawn(async move {
            writer.write_all(&head).await.unwrap();
            for byte in slow {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if writer.write_all(&[byte]).await.is_err() {
                    return;
                }
            }
        });
        let started = Instant::now();
        let reply = tokio::time::timeout(budget + PROMPTLY, read_response(&mut reader))
            .await
            .expect("no answer to a slow body")
            .unwrap();
        assert_eq!(reply.status, 408, "{reply:?}");
        assert!(reply.error().contains("not received within"), "{reply:?}");
        assert!(started.elapsed() >= budget / 2, "{:?}", started.elapsed());
        drip.abort();
    }

    // HTTP/2: the same budget per stream.
    let (client, _driver) = server.h2().await;
    let mut ready = client.clone().ready().await.unwrap();
    let (response, mut stream) = ready.send_request(h2_request("/mutate"), false).unwrap();
    stream
        .send_data(Bytes::from_static(b"{\"apiVersion\""), false)
        .unwrap();
    let response = tokio::time::timeout(limits.request_timeout + PROMPTLY, response)
        .await
        .expect("no answer to a slow HTTP/2 body")
        .unwrap();
    assert_eq!(response.status(), 408);
    drop(stream);
    server.assert_serving().await;
    server.stop().await;
}

#[tokio::test]
async fn requests_in_flight_share_one_memory_budget() {
    // Three held 512 KiB bodies reserve 3 MiB of a 2.5 MiB budget: the third is refused at
    // once, however many connections a client opens.
    let limits = Limits {
        max_request_bytes_in_flight: 5 * 512 * 1024,
        request_timeout: Duration::from_secs(30),
        ..short_limits()
    };
    let server = Server::start(limits).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let tls = server.tls(&[b"http/1.1"]).await;
        let (reader, mut writer) = tokio::io::split(tls);
        let head = request_head(
            "POST",
            "/mutate",
            Some("application/json"),
            Some(512 * 1024),
        );
        writer.write_all(&head).await.unwrap();
        writer.write_all(b"{").await.unwrap();
        held.push((reader, writer));
    }
    // The server reserves when the headers arrive; give it a moment to read them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tls = server.tls(&[b"http/1.1"]).await;
    let (mut reader, mut writer) = tokio::io::split(tls);
    let head = request_head(
        "POST",
        "/mutate",
        Some("application/json"),
        Some(512 * 1024),
    );
    writer.write_all(&head).await.unwrap();
    let reply = tokio::time::timeout(PROMPTLY, read_response(&mut reader))
        .await
        .expect("no answer while the budget is spent")
        .unwrap();
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(
        reply.error().contains("requests in flight hold"),
        "{reply:?}"
    );
    drop(held);
    server.assert_serving().await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Oversized and malformed bodies

/// Sends a 50 MB body in 64 KiB writes and returns the answer with the number of bytes
/// written when it arrived.
async fn upload_50mb(server: &Server, declare_length: bool) -> (Reply, usize) {
    const SIZE: usize = 50 * 1024 * 1024;
    const CHUNK: usize = 64 * 1024;
    let tls = server.tls(&[b"http/1.1"]).await;
    let (mut reader, mut writer) = tokio::io::split(tls);
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let upload = tokio::spawn(async move {
        let head = request_head(
            "POST",
            "/mutate",
            Some("application/json"),
            declare_length.then_some(SIZE),
        );
        writer.write_all(&head).await?;
        let chunk = vec![b' '; CHUNK];
        let framed: Vec<u8> = if declare_length {
            chunk
        } else {
            [format!("{CHUNK:x}\r\n").as_bytes(), &chunk, b"\r\n"].concat()
        };
        while counter.load(Ordering::Relaxed) < SIZE {
            writer.write_all(&framed).await?;
            counter.fetch_add(CHUNK, Ordering::Relaxed);
        }
        writer.flush().await
    });
    let reply = tokio::time::timeout(PROMPTLY, read_response(&mut reader))
        .await
        .expect("no answer to a 50 MB body")
        .unwrap();
    let at_answer = sent.load(Ordering::Relaxed);
    upload.abort();
    (reply, at_answer)
}

#[tokio::test]
async fn a_50_mb_body_gets_413_before_it_is_uploaded() {
    let server = Server::start(Limits::default()).await;
    for declare_length in [true, false] {
        let (reply, sent) = upload_50mb(&server, declare_length).await;
        assert_eq!(reply.status, 413, "{reply:?}");
        assert!(reply.error().contains("1048576"), "{reply:?}");
        // Answered while the client was still sending: the server read at most about
        // its limit, never the whole body.
        assert!(
            sent < 50 * 1024 * 1024,
            "the whole body was sent before the answer (declared length: {declare_length})"
        );
    }
    server.assert_serving().await;
    server.stop().await;
}

#[tokio::test]
async fn malformed_bodies_get_400_with_a_reason() {
    let server = Server::start(Limits::default()).await;
    let create = fixture("savepoint-create.json");
    let deep = |depth: usize| "[".repeat(depth) + &"]".repeat(depth);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", create[..create.len() / 2].to_vec(), "EOF"),
        (
            "10 000 levels deep in spec",
            review_of(json!({ "metadata": {}, "spec": "DEEP" })).replace_deep(&deep(10_000)),
            "recursion limit",
        ),
        (
            "100 000 levels deep in spec",
            review_of(json!({ "metadata": {}, "spec": "DEEP" })).replace_deep(&deep(100_000)),
            "recursion limit",
        ),
        (
            "invalid UTF-8 in the location",
            review_of(savepoint("s3://bucket/\u{1}")).replace_bytes(b"\\u0001", b"\xff\xfe"),
            "invalid unicode",
        ),
        (
            "a lone surrogate",
            review_of(savepoint("s3://bucket/\u{1}")).replace_bytes(b"\\u0001", b"\\udc00"),
            "surrogate",
        ),
        (
            "request twice",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","kind":{},"operation":"CREATE"},"request":{"uid":"b","kind":{},"operation":"CREATE"}}"#.to_vec(),
            "duplicate field `request`",
        ),
        (
            "metadata.name twice",
            review_of(savepoint("s3://bucket/p")).replace_bytes(br#""name":"hostile""#, br#""name":"a","name":"b""#),
            "duplicate field `name`",
        ),
        (
            "no uid",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{},"operation":"CREATE"}}"#.to_vec(),
            "missing field `uid`",
        ),
        (
            "an empty uid",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"","kind":{},"operation":"CREATE"}}"#.to_vec(),
            "has no uid",
        ),
    ];
    for (what, body, expected) in cases {
        let reply = server.post(&body).await;
        assert_eq!(reply.status, 400, "{what}: {reply:?}");
        assert!(
            reply.error().contains(expected),
            "{what}: {}",
            reply.error()
        );
    }
    server.assert_serving().await;
    server.stop().await;
}

/// Byte-level replacement for building malformed bodies.
trait Replace {
    fn replace_bytes(self, from: &[u8], to: &[u8]) -> Vec<u8>;
    fn replace_deep(self, nested: &str) -> Vec<u8>;
}

impl Replace for Vec<u8> {
    fn replace_bytes(self, from: &[u8], to: &[u8]) -> Vec<u8> {
        let at = find(&self, from).unwrap_or_else(|| panic!("{from:?} not in the body"));
        [&self[..at], to, &self[at + from.len()..]].concat()
    }

    fn replace_deep(self, nested: &str) -> Vec<u8> {
        self.replace_bytes(b"\"DEEP\"", nested.as_bytes())
    }
}

#[tokio::test]
async fn deep_nesting_in_skipped_fields_is_skipped_without_recursion() {
    // Fields decisions do not read are skipped by an iterative scanner: 100 000 levels in
    // `request.options` cost no stack, and the review is decided as usual.
    let server = Server::start(Limits::default()).await;
    let mut review: Value = serde_json::from_slice(&fixture("savepoint-create.json")).unwrap();
    review["request"]["options"] = json!("DEEP");
    let body = review
        .to_string()
        .into_bytes()
        .replace_deep(&("[".repeat(100_000) + &"]".repeat(100_000)));
    let reply = server.post(&body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["response"]["allowed"], true);
    server.assert_serving().await;
    server.stop().await;
}

#[tokio::test]
async fn duplicate_spec_keys_are_read_as_the_api_server_stores_them() {
    // Inside the object the last of duplicate keys wins, as in the API server's own
    // decoder: the decision is about the value that would be stored.
    let server = Server::start(Limits::default()).await;
    let duplicate = |first: &str, last: &str| {
        review_of(savepoint("PLACEHOLDER")).replace_bytes(
            br#""savepointLocation":"PLACEHOLDER""#,
            format!(r#""savepointLocation":"{first}","savepointLocation":"{last}""#).as_bytes(),
        )
    };
    let reply = server
        .post(&duplicate("ftp://host/p", "s3://bucket/p"))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["response"]["allowed"], true, "{reply:?}");
    let reply = server
        .post(&duplicate("s3://bucket/p", "ftp://host/p"))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let review = reply.json();
    assert_eq!(review["response"]["allowed"], false, "{review}");
    assert!(
        review["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("\"ftp\""),
        "{review}"
    );
    server.assert_serving().await;
    server.stop().await;
}

#[tokio::test]
async fn another_kind_is_allowed_unchanged() {
    let server = Server::start(Limits::default()).await;
    let mut review: Value = serde_json::from_slice(&fixture("savepoint-create.json")).unwrap();
    review["request"]["kind"] = json!({ "group": "", "version": "v1", "kind": "ConfigMap" });
    review["request"]["object"] = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "c", "namespace": "default" },
        "data": { "savepointLocation": "ftp://not/checked" },
    });
    for path in ["/mutate", "/validate"] {
        let reply = server
            .request(
                "POST",
                path,
                Some("application/json"),
                review.to_string().as_bytes(),
            )
            .await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let response = &reply.json()["response"];
        assert_eq!(response["allowed"], true, "{response}");
        assert_eq!(response["uid"], CREATE_UID);
        assert!(response.get("patch").is_none(), "{response}");
        assert!(response.get("warnings").is_none(), "{response}");
    }
    server.assert_serving().await;
    server.stop().await;
}

#[tokio::test]
async fn wrong_content_types_get_415() {
    let server = Server::start(Limits::default()).await;
    let body = fixture("savepoint-create.json");
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/yaml"),
        Some("application/jsonx"),
    ] {
        let reply = server.request("POST", "/mutate", content_type, &body).await;
        assert_eq!(reply.status, 415, "{content_type:?}: {reply:?}");
        assert!(reply.error().contains("application/json"), "{reply:?}");
    }
    let reply = server
        .request(
            "POST",
            "/mutate",
            Some("Application/JSON; charset=utf-8"),
            &body,
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    server.assert_serving().await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// HTTP/2 streams

fn h2_request(path: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("https://localhost{path}"))
        .header("content-type", "application/json")
        .body(())
        .unwrap()
}

async fn h2_post(
    client: &h2::client::SendRequest<Bytes>,
    path: &str,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), h2::Error> {
    let mut client = client.clone().ready().await?;
    let (response, mut stream) = client.send_request(h2_request(path), false)?;
    stream.send_data(Bytes::from(body), true)?;
    let response = response.await?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    Ok((status, out))
}

#[tokio::test]
async fn many_concurrent_http2_streams_are_all_answered_within_the_stream_limit() {
    let limits = Limits {
        max_concurrent_streams: 8,
        ..Limits::default()
    };
    let server = Server::start(limits).await;
    let (client, _driver) = server.h2().await;
    let body = fixture("savepoint-create.json");
    // After one exchange the client has the server's SETTINGS (before them, streams
    // beyond the limit are refused with REFUSED_STREAM, which clients retry) and queues
    // whatever exceeds the limit.
    let (status, _) = h2_post(&client, "/mutate", body.clone()).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(client.current_max_send_streams(), 8);
    let requests = (0..500).map(|_| h2_post(&client, "/mutate", body.clone()));
    let replies = futures::future::join_all(requests).await;
    for reply in replies {
        let (status, body) = reply.unwrap();
        assert_eq!(status, 200);
        let review: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(review["response"]["allowed"], true);
    }
    server.assert_serving().await;
    server.stop().await;
}

#[tokio::test]
async fn rapid_http2_stream_resets_do_not_stop_the_server() {
    // HEADERS then RST_STREAM, 10 000 times on one connection ("rapid reset"), while
    // other clients keep being served. hyper hands each stream to a handler at once and
    // drops the handler on reset; when resets still pile up, h2 ends the connection
    // with GOAWAY ENHANCE_YOUR_CALM. Either way only the abusive connection is affected.
    let server = Arc::new(Server::start(Limits::default()).await);
    let (client, driver) = server.h2().await;
    let storm = {
        let client = client.clone();
        tokio::spawn(async move {
            for _ in 0..10_000 {
                let mut ready = client.clone().ready().await?;
                let (_response, mut stream) = ready.send_request(h2_request("/mutate"), false)?;
                stream.send_reset(h2::Reason::CANCEL);
            }
            Ok::<_, h2::Error>(())
        })
    };
    while !storm.is_finished() {
        server.assert_serving().await;
    }
    let calm_down = |err: &h2::Error| {
        assert!(
            err.is_go_away() && err.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM),
            "the abusive connection ended with {err:?}"
        );
    };
    match storm.await.unwrap() {
        Err(err) => calm_down(&err),
        Ok(()) => match h2_post(&client, "/mutate", fixture("savepoint-create.json")).await {
            Err(err) => calm_down(&err),
            Ok((status, body)) => {
                assert_eq!(status, 200);
                let review: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(review["response"]["allowed"], true);
            }
        },
    }
    drop(client);
    drop(driver);
    server.assert_serving().await;
    Arc::into_inner(server).unwrap().stop().await;
}

/// Posts `body` and waits for the stream to end without ever releasing flow-control
/// capacity: the answer's DATA can never arrive, so only a reset (or the connection's
/// end) finishes it. The error it ended with, or the bytes it got.
async fn h2_post_never_read(
    client: &h2::client::SendRequest<Bytes>,
    body: Vec<u8>,
) -> Result<usize, h2::Error> {
    let mut client = client.clone().ready().await?;
    let (response, mut stream) = client.send_request(h2_request("/mutate"), false)?;
    stream.send_data(Bytes::from(body), true)?;
    let mut body = response.await?.into_body();
    let mut got = 0;
    while let Some(chunk) = body.data().await {
        got += chunk?.len();
    }
    Ok(got)
}

#[tokio::test]
async fn http2_answers_a_peer_never_reads_are_reset_by_the_stream_deadline() {
    // Two connections of 128 streams each, whose peer keeps a zero window, post reviews
    // with a 256 KiB uid that the answer echoes. A stream whose answer would go beyond
    // `max_unsent_bytes` on its connection is reset at once; the others are reset when
    // still open `request_timeout + send_timeout` after they began. Either way no answer
    // pins memory past that bound.
    let limits = Limits {
        request_timeout: Duration::from_secs(2),
        send_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let bound = limits.request_timeout + limits.send_timeout + PROMPTLY;
    let server = Server::start(limits).await;
    let body = Review::create(savepoint("s3://savepoints/hostile"))
        .uid("u".repeat(256 * 1024))
        .bytes();
    let mut connections = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..2 {
        let (client, driver) = server.h2_never_reading().await;
        for _ in 0..128 {
            let client = client.clone();
            let body = body.clone();
            streams.push(tokio::spawn(async move {
                h2_post_never_read(&client, body).await
            }));
        }
        connections.push((client, driver));
    }
    let ended = tokio::time::timeout(bound, futures::future::join_all(streams))
        .await
        .expect("streams whose answer cannot be sent were still open");
    for outcome in ended {
        match outcome.unwrap() {
            Err(err) => assert!(
                err.is_reset() || err.is_go_away() || err.is_io(),
                "a stream ended with {err:?}"
            ),
            Ok(got) => panic!("a peer with a zero window got a {got}-byte answer"),
        }
    }
    drop(connections);
    server.assert_serving().await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Many connections

/// The soft limit on open files, from /proc/self/limits.
fn open_files_limit() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|line| line.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

#[tokio::test]
async fn two_thousand_idle_connections_leave_the_server_responsive() {
    const IDLE: usize = 2000;
    const HANDSHAKED: usize = 200;
    // Both ends of every connection live in this process.
    let needed = 2 * IDLE as u64 + 512;
    match open_files_limit() {
        Some(limit) if limit >= needed => {}
        limit => {
            eprintln!(
                "SKIPPED two_thousand_idle_connections_leave_the_server_responsive: the open-files limit is {limit:?}, {needed} needed; raise it with `ulimit -n {needed}`"
            );
            return;
        }
    }
    let limits = Limits {
        max_connections: 4 * IDLE,
        handshake_timeout: Duration::from_secs(120),
        header_timeout: Duration::from_secs(120),
        ..Limits::default()
    };
    let server = Server::start(limits).await;
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE - HANDSHAKED {
        idle.push(server.tcp().await);
    }
    let mut handshaked = Vec::with_capacity(HANDSHAKED);
    for _ in 0..HANDSHAKED {
        handshaked.push(server.tls(&[b"h2", b"http/1.1"]).await);
    }
    let started = Instant::now();
    for _ in 0..5 {
        server.assert_serving().await;
    }
    eprintln!(
        "five requests beside {IDLE} idle connections took {:?}",
        started.elapsed()
    );
    // The idle connections are all still open (nothing closed them early).
    let mut probe = [0u8; 1];
    for tcp in idle.iter_mut().take(50) {
        let read = tokio::time::timeout(Duration::from_millis(1), tcp.read(&mut probe)).await;
        assert!(read.is_err(), "an idle connection was closed: {read:?}");
    }
    drop(idle);
    drop(handshaked);
    server.assert_serving().await;
    server.stop().await;
}

#[tokio::test]
async fn idle_connections_cannot_lock_out_new_clients() {
    // With every slot taken by connections that went silent after the handshake, a new
    // client is served once their deadlines free the slots.
    let limits = Limits {
        max_connections: 16,
        ..short_limits()
    };
    let server = Server::start(limits.clone()).await;
    let mut silent = Vec::new();
    for i in 0..16 {
        let alpn: &[&[u8]] = if i % 2 == 0 { &[b"h2"] } else { &[b"http/1.1"] };
        silent.push(server.tls(alpn).await);
    }
    server.assert_serving().await;
    for stream in &mut silent {
        wait_closed(stream, PROMPTLY).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn quiet_clients_give_up_the_idlest_slot_to_a_newcomer() {
    // Every slot is taken by HTTP/2 clients that made one request and went quiet, and the
    // idle timeout is far off: only closing the idlest connection can admit a newcomer.
    // The connection idle the longest has a request in flight, so another one goes.
    let limits = Limits {
        max_connections: 8,
        idle_timeout: Duration::from_secs(60),
        request_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let server = Server::start(limits.clone()).await;
    let body = fixture("savepoint-create.json");
    let tls = server.tls(&[b"h2"]).await;
    tls.get_ref().0.set_nodelay(true).unwrap();
    let (busy, mut connection) = h2::client::handshake(tls).await.unwrap();
    let mut ping = connection.ping_pong().unwrap();
    let _busy_driver = tokio::spawn(connection);
    assert_eq!(
        h2_post(&busy, "/mutate", body.clone()).await.unwrap().0,
        200
    );
    let mut ready = busy.clone().ready().await.unwrap();
    let (in_flight, mut upload) = ready.send_request(h2_request("/mutate"), false).unwrap();
    // The PING is answered after the server read the HEADERS before it: the request is in
    // flight.
    ping.ping(h2::Ping::opaque()).await.unwrap();
    let mut quiet = Vec::new();
    for _ in 1..limits.max_connections {
        let (client, driver) = server.h2().await;
        assert_eq!(
            h2_post(&client, "/mutate", body.clone()).await.unwrap().0,
            200
        );
        quiet.push((client, driver));
    }

    let started = Instant::now();
    server.assert_serving().await;
    assert!(started.elapsed() < limits.idle_timeout / 4);
    let (_, idlest) = quiet.remove(0);
    let _ended = tokio::time::timeout(PROMPTLY, idlest)
        .await
        .expect("the idlest quiet connection was not closed")
        .unwrap();
    for (_, driver) in &quiet {
        assert!(
            !driver.is_finished(),
            "a quiet connection beyond the idlest was closed"
        );
    }

    upload.send_data(Bytes::from(body), true).unwrap();
    let response = tokio::time::timeout(PROMPTLY, in_flight)
        .await
        .expect("the request in flight was not answered")
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut answer = response.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = answer.data().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    let review: Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(review["response"]["uid"], CREATE_UID, "{review}");
    assert_eq!(review["response"]["allowed"], true, "{review}");
    drop(quiet);
    server.assert_serving().await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Mutual TLS

/// A CA and a client certificate it signed, as the API server presents one.
fn client_identity(ca_name: &str) -> (String, Identity) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut params = CertificateParams::new(vec!["kube-apiserver".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    (
        ca.pem(),
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        },
    )
}

/// GET /healthz over a TLS connection presenting `identity`; the status, or the error.
async fn healthz_as(server: &Server, identity: Option<&Identity>) -> Result<u16, String> {
    let mut tls = server
        .tls_with(&[b"http/1.1"], identity)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    // With TLS 1.3 the server judges the client certificate after the client's side of
    // the handshake is done, so a refusal shows up on the first read.
    read_response(&mut tls)
        .await
        .map(|reply| reply.status)
        .map_err(|e| format!("read: {e}"))
}

#[tokio::test]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, right) = client_identity("API server client CA");
    let (_, wrong) = client_identity("some other CA");
    let ca_path = dir.path().join("client-ca.crt");
    std::fs::write(&ca_path, ca_pem).unwrap();
    let server = Server::start_with(Limits::default(), Some(&ca_path), Some(right)).await;

    assert_eq!(healthz_as(&server, server.identity.as_ref()).await, Ok(200));
    for (who, identity) in [
        ("a wrong certificate", Some(&wrong)),
        ("no certificate", None),
    ] {
        let outcome = tokio::time::timeout(PROMPTLY, healthz_as(&server, identity))
            .await
            .expect("a refused client is not left hanging");
        assert!(outcome.is_err(), "{who} was served: {outcome:?}");
    }
    server.assert_serving().await;
    server.stop().await;
}
