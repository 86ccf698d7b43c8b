//! The real router and server over real TLS on loopback, driven with the captured
//! AdmissionReviews over HTTP/1.1 and HTTP/2 by a client that verifies the certificate.
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Client, StatusCode, Version};
use savepoint_webhook::server::Limits;
use serde_json::Value;

#[path = "support/example_server.rs"]
mod example_server;
#[path = "support/kit.rs"]
mod kit;

use kit::fixture;

use example_server::ExampleServer as TestServer;

/// Clients and URLs of the server under test.
trait ServerClient {
    fn client(&self, version: Version) -> Client;
    fn url(&self, path: &str) -> String;
}

impl ServerClient for TestServer {
    fn client(&self, version: Version) -> Client {
        let builder = Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap());
        let builder = if version == Version::HTTP_11 {
            builder.http1_only()
        } else {
            builder
        };
        builder.build().unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }
}

async fn post(client: &Client, url: &str, body: Vec<u8>) -> (StatusCode, Version, Value) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, version) = (response.status(), response.version());
    (status, version, response.json().await.unwrap())
}

#[tokio::test]
async fn fixtures_are_answered_over_http1_and_http2() {
    let server = TestServer::start(Limits::default(), None, true).await;
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let client = server.client(version);
        let (status, got_version, review) = post(
            &client,
            &server.url("/mutate?timeout=10s"),
            fixture("savepoint-create.json"),
        )
        .await;
        assert_eq!((status, got_version), (StatusCode::OK, version));
        let response = &review["response"];
        assert_eq!(response["uid"], "d81cc643-c6b4-4e2b-a381-04dcf48d5e02");
        assert_eq!(response["allowed"], true);
        assert_eq!(response["patchType"], "JSONPatch");
        assert!(
            response["warnings"][0].as_str().unwrap().contains("COPIED"),
            "{review}"
        );

        let (status, _, review) = post(
            &client,
            &server.url("/validate"),
            fixture("savepoint-update.json"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            review["response"]["uid"],
            "56659862-b2c9-44ef-ac67-feb55d181489"
        );
        assert_eq!(review["response"]["allowed"], true);

        let (status, _, review) = post(
            &client,
            &server.url("/mutate"),
            fixture("savepoint-dryrun.json"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(review["response"]["allowed"], true);
    }
    server.stop().await;
}

#[tokio::test]
async fn bad_bodies_get_clear_errors() {
    let limits = Limits {
        max_body_bytes: 16 * 1024,
        ..Limits::default()
    };
    let server = TestServer::start(limits, None, true).await;
    let client = server.client(Version::HTTP_2);
    let url = server.url("/mutate");

    let wrong_type = client
        .post(&url)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let huge = vec![b' '; 64 * 1024];
    let (status, _, body) = post(&client, &url, huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body["error"].as_str().unwrap().contains("16384"));

    for (body, expected) in [
        (b"not json".to_vec(), "not a valid admission.k8s.io/v1 AdmissionReview"),
        (br#"{"apiVersion":"v1","kind":"ConfigMap"}"#.to_vec(), "expected kind AdmissionReview"),
        (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), "has no request"),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"","kind":{},"operation":"CREATE"}}"#.to_vec(),
            "has no uid",
        ),
        (fixture("savepoint-create.json")[..100].to_vec(), "EOF"),
    ] {
        let (status, _, reply) = post(&client, &url, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let error = reply["error"].as_str().unwrap();
        assert!(error.contains(expected), "{error}");
    }
    let (status, _, review) = post(&client, &url, fixture("savepoint-create.json")).await;
    assert_eq!(
        (status, review["response"]["allowed"].as_bool()),
        (StatusCode::OK, Some(true)),
        "still serving"
    );
    server.stop().await;
}

#[tokio::test]
async fn other_kinds_are_allowed_unchanged_and_counted() {
    let server = TestServer::start(Limits::default(), None, true).await;
    let client = server.client(Version::HTTP_11);
    let text = String::from_utf8(fixture("savepoint-create.json"))
        .unwrap()
        .replace(
            "\"kind\": \"Savepoint\"\n    },\n    \"resource\"",
            "\"kind\": \"ConfigMap\"\n    },\n    \"resource\"",
        );
    let (status, _, review) = post(&client, &server.url("/mutate"), text.into_bytes()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(review["response"]["allowed"], true);
    assert!(review["response"].get("patch").is_none(), "{review}");
    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"savepoint_webhook_admission_decisions_total{endpoint="mutate",allowed="true",reason="not_a_savepoint"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"savepoint_webhook_index_entries{kind="deployments"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("savepoint_webhook_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn not_ready_until_synced_and_savepoints_denied_meanwhile() {
    let server = TestServer::start(Limits::default(), None, false).await;
    let client = server.client(Version::HTTP_2);
    assert_eq!(
        client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        client
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (_, _, review) = post(
        &client,
        &server.url("/mutate"),
        fixture("savepoint-create.json"),
    )
    .await;
    assert_eq!(review["response"]["allowed"], false);
    assert_eq!(review["response"]["status"]["code"], 503);
    assert!(
        review["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("has not synced")
    );
    server.readiness.deployments_synced();
    server.readiness.savepoints_synced();
    assert_eq!(
        client
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    server.stop().await;
}

#[tokio::test]
async fn a_client_without_the_ca_is_refused_the_handshake() {
    let server = TestServer::start(Limits::default(), None, true).await;
    let stranger = Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let err = stranger
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_stops_accepting() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(Limits::default(), None, true).await;
    let mut roots = rustls::RootCertStore::empty();
    let ca =
        savepoint_webhook::server::tls::parse_certs("ca.crt".as_ref(), server.ca_pem.as_bytes())
            .unwrap();
    roots.add(ca[0].clone()).unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();

    let body = fixture("savepoint-create.json");
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body[..body.len() / 2]).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (addr, stopping) = (server.addr, tokio::spawn(server.stop()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections once shutdown has begun"
    );
    tls.write_all(&body[body.len() / 2..]).await.unwrap();
    tls.flush().await.unwrap();
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("d81cc643-c6b4-4e2b-a381-04dcf48d5e02"),
        "{answer}"
    );
    stopping.await.unwrap();
}

/// The `Connection` header of one answer to `/healthz`.
async fn connection_header(client: &Client, server: &TestServer) -> Option<String> {
    let response = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response
        .headers()
        .get("connection")
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn http1_connections_are_closed_by_the_client_once_shutdown_begins() {
    let server = TestServer::start(Limits::default(), None, true).await;
    let http1 = server.client(Version::HTTP_11);
    assert_eq!(connection_header(&http1, &server).await, None);
    server.readiness.begin_shutdown();
    // An HTTP/1.1 client is told to close after the answer, rather than finding an idle
    // connection closed under a request it just sent.
    assert_eq!(
        connection_header(&http1, &server).await.as_deref(),
        Some("close")
    );
    // HTTP/2 has GOAWAY for that, and no Connection header.
    let http2 = server.client(Version::HTTP_2);
    assert_eq!(connection_header(&http2, &server).await, None);
    server.stop().await;
}

#[tokio::test]
async fn an_aged_http1_connection_is_closed_after_its_next_answer() {
    let limits = Limits {
        max_connection_age: Some(Duration::from_millis(300)),
        ..Limits::default()
    };
    let server = TestServer::start(limits, None, true).await;
    let http1 = server.client(Version::HTTP_11);
    assert_eq!(connection_header(&http1, &server).await, None);
    // Past its age the idle connection is left open; its next answer closes it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        connection_header(&http1, &server).await.as_deref(),
        Some("close")
    );
    // The client's next request opens a new connection, which is young again.
    assert_eq!(connection_header(&http1, &server).await, None);
    server.stop().await;
}
