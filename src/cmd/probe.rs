//! `probe`: post the built-in AdmissionReviews of [`crate::probe`] to a running webhook
//! and report each answer against what is expected.

use std::time::Duration;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

use crate::cli::{ProbeArgs, print_out};
use crate::probe::{cases, check};
use crate::server::tls::parse_certs;

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

fn client(args: &ProbeArgs) -> anyhow::Result<HttpsClient> {
    let ca_pem =
        std::fs::read(&args.ca).with_context(|| format!("cannot read {}", args.ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in parse_certs(&args.ca, &ca_pem)? {
        roots.add(ca)?;
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match (&args.client_cert, &args.client_key) {
        (Some(cert), Some(key)) => {
            let chain = parse_certs(cert, &std::fs::read(cert)?)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("cannot read key {}", key.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        _ => builder.with_no_client_auth(),
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

async fn send(
    client: &HttpsClient,
    request: hyper::Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(u16, Bytes), String> {
    let response = tokio::time::timeout(timeout, client.request(request))
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
        .map_err(|e| format!("request failed: {e:#}"))?;
    let status = response.status().as_u16();
    let body = tokio::time::timeout(timeout, response.into_body().collect())
        .await
        .map_err(|_| format!("body not received within {timeout:?}"))?
        .map_err(|e| format!("cannot read body: {e}"))?;
    Ok((status, body.to_bytes()))
}

fn url(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// Runs `probe`; `Ok(false)` when any answer differs from what was expected.
pub async fn run(args: &ProbeArgs) -> anyhow::Result<bool> {
    let client = client(args)?;
    let mut all_ok = true;
    let mut report = |name: &str, result: Result<(), String>| match result {
        Ok(()) => print_out(&format!("ok    {name}\n")),
        Err(why) => {
            all_ok = false;
            print_out(&format!("FAIL  {name}: {why}\n"))
        }
    };
    for path in ["/healthz", "/readyz"] {
        let request = hyper::Request::get(url(&args.url, path)).body(Full::default())?;
        let result = send(&client, request, args.timeout)
            .await
            .and_then(|(status, _)| {
                (status == 200)
                    .then_some(())
                    .ok_or(format!("status {status}"))
            });
        report(&format!("GET {path}"), result)?;
    }
    for case in cases(&args.namespace, args.deployment.as_deref()) {
        let body = serde_json::to_vec(&case.review)?;
        let request = hyper::Request::post(url(&args.url, &format!("{}?timeout=10s", case.path)))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let result = send(&client, request, args.timeout)
            .await
            .and_then(|(status, body)| {
                if status != 200 {
                    return Err(format!(
                        "status {status}: {}",
                        String::from_utf8_lossy(&body)
                    ));
                }
                let answer: Value = serde_json::from_slice(&body)
                    .map_err(|e| format!("answer is not JSON: {e}"))?;
                check(&case, &answer)
            });
        report(&format!("POST {} {}", case.path, case.name), result)?;
    }
    Ok(all_ok)
}
