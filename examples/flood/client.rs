//! The flood harness: the clients (HTTP/2 over TLS, through hyper or raw `h2`).

use super::*;

/// Where and how the client connects.
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    authority: String,
    tls: TlsConnector,
    server_name: ServerName<'static>,
}

impl Target {
    pub(crate) fn new(addr: SocketAddr, ca_pem: &str) -> Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.context("parsing the CA")?)?;
        }
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            addr,
            authority: format!("localhost:{}", addr.port()),
            tls: TlsConnector::from(Arc::new(config)),
            server_name: ServerName::try_from("localhost")?,
        })
    }

    pub(crate) fn uri(&self, path: &str) -> String {
        format!("https://{}{path}", self.authority)
    }

    /// A `POST` of an AdmissionReview to `/mutate`.
    pub(crate) fn mutate(&self, body: Bytes) -> Result<Request<Full<Bytes>>> {
        Ok(Request::post(self.uri(MUTATE))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?)
    }

    /// A TCP connection with a completed TLS handshake.
    pub(crate) async fn tls(&self) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        self.tls
            .connect(self.server_name.clone(), tcp)
            .await
            .context("TLS handshake")
    }

    /// A raw HTTP/2 connection whose client advertises `initial_window` as
    /// SETTINGS_INITIAL_WINDOW_SIZE; its driver runs on a task of its own.
    pub(crate) async fn raw_h2(
        &self,
        initial_window: u32,
    ) -> Result<h2::client::SendRequest<Bytes>> {
        let tls = self.tls().await?;
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(initial_window)
            .handshake(tls)
            .await?;
        tokio::spawn(connection);
        Ok(send)
    }
}

/// The route every flood posts to, with the budget the API server sends by default.
pub(crate) const MUTATE: &str = "/mutate?timeout=10s";

/// One HTTP/2 connection through hyper; clones share it.
#[derive(Clone)]
pub(crate) struct Conn(http2::SendRequest<Full<Bytes>>);

impl Conn {
    pub(crate) async fn open(target: &Target) -> Result<Self> {
        Self::over(target.tls().await?).await
    }

    /// HTTP/2 over a connection whose TLS handshake is done.
    pub(crate) async fn over(tls: tokio_rustls::client::TlsStream<TcpStream>) -> Result<Self> {
        let io = TokioIo::new(tls);
        let (send, conn) = http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        Ok(Self(send))
    }

    /// Sends one request; the status and the whole response body.
    pub(crate) async fn call(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes)> {
        self.0.ready().await?;
        let response = self.0.send_request(request).await?;
        let status = response.status();
        Ok((status, response.into_body().collect().await?.to_bytes()))
    }
}

/// What a fresh client saw: answered correctly within [`FRESH_BUDGET`] or not, and when.
pub(crate) struct Fresh {
    pub(crate) ok: bool,
    pub(crate) took: Duration,
    pub(crate) detail: String,
}

impl Fresh {
    pub(crate) fn cell(&self) -> String {
        let ms = self.took.as_millis();
        if self.ok {
            format!("yes {ms} ms")
        } else {
            format!("no {ms} ms")
        }
    }
}

/// The time a fresh client gets for its TCP connection, TLS handshake and one answer.
pub(crate) const FRESH_BUDGET: Duration = Duration::from_secs(5);

/// Connects anew and posts the captured create: answered 200, allowed, for its own uid.
pub(crate) async fn fresh_client(target: &Target) -> Fresh {
    let started = Instant::now();
    let handshake = Mutex::new(None);
    let attempt = async {
        let body = reviews::fixture_create()?;
        let tls = target.tls().await?;
        *lock(&handshake) = Some(started.elapsed());
        let mut conn = Conn::over(tls).await?;
        let (status, answer) = conn.call(target.mutate(body)?).await?;
        ensure!(status == StatusCode::OK, "answered {status}");
        let review: Value = serde_json::from_slice(&answer)?;
        ensure!(
            review["response"]["allowed"] == true
                && review["response"]["uid"] == reviews::FIXTURE_UID,
            "answered {review}"
        );
        Ok(())
    };
    let outcome = tokio::time::timeout(FRESH_BUDGET, attempt).await;
    let took = started.elapsed();
    let handshake = *lock(&handshake);
    let detail = match (outcome, handshake) {
        (Ok(Ok(())), _) => String::new(),
        (Ok(Err(err)), _) => format!("{err:#}"),
        (Err(_), None) => format!("no TLS handshake within {FRESH_BUDGET:?}"),
        (Err(_), Some(at)) => format!(
            "TLS handshake done after {} ms, no answer within {FRESH_BUDGET:?}",
            at.as_millis()
        ),
    };
    Fresh {
        ok: detail.is_empty(),
        took,
        detail,
    }
}
