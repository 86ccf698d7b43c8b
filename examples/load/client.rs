//! The load harness: the client (HTTP/1.1 and HTTP/2 connections over TLS).

use super::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub(crate) enum Proto {
    Http1,
    Http2,
}

impl Proto {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Proto::Http1 => "HTTP/1.1",
            Proto::Http2 => "HTTP/2",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub(crate) enum Route {
    Baseline,
    Mutate,
    Validate,
}

impl Route {
    pub(crate) fn path(self) -> &'static str {
        match self {
            Route::Baseline => "/baseline?timeout=10s",
            Route::Mutate => "/mutate?timeout=10s",
            Route::Validate => "/validate?timeout=10s",
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Route::Baseline => "baseline",
            Route::Mutate => "/mutate",
            Route::Validate => "/validate",
        }
    }
}

/// Where and how the client connects.
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) authority: String,
    pub(crate) h1: TlsConnector,
    pub(crate) h2: TlsConnector,
    pub(crate) server_name: ServerName<'static>,
}

impl Target {
    pub(crate) fn new(addr: SocketAddr, ca_pem: &str) -> Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.context("parsing the CA")?)?;
        }
        let connector = |alpn: &[u8]| {
            let mut config = rustls::ClientConfig::builder()
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = vec![alpn.to_vec()];
            TlsConnector::from(Arc::new(config))
        };
        Ok(Self {
            addr,
            authority: format!("localhost:{}", addr.port()),
            h1: connector(b"http/1.1"),
            h2: connector(b"h2"),
            server_name: ServerName::try_from("localhost")?,
        })
    }

    pub(crate) fn request(
        &self,
        proto: Proto,
        route: Route,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>> {
        let builder = match proto {
            Proto::Http1 => Request::post(route.path()).header(header::HOST, &self.authority),
            Proto::Http2 => Request::post(format!("https://{}{}", self.authority, route.path())),
        };
        Ok(builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?)
    }
}

/// One keep-alive connection; an HTTP/2 one may be shared by several workers.
pub(crate) enum Conn {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Conn {
    pub(crate) async fn open(target: &Target, proto: Proto) -> Result<Self> {
        let tcp = TcpStream::connect(target.addr).await?;
        tcp.set_nodelay(true)?;
        let connector = match proto {
            Proto::Http1 => &target.h1,
            Proto::Http2 => &target.h2,
        };
        let tls = connector
            .connect(target.server_name.clone(), tcp)
            .await
            .context("TLS handshake")?;
        let io = TokioIo::new(tls);
        Ok(match proto {
            Proto::Http1 => {
                let (send, conn) = http1::handshake(io).await?;
                tokio::spawn(conn);
                Conn::H1(send)
            }
            Proto::Http2 => {
                let (send, conn) = http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(conn);
                Conn::H2(send)
            }
        })
    }

    pub(crate) fn share(&self) -> Option<Self> {
        match self {
            Conn::H1(_) => None,
            Conn::H2(send) => Some(Conn::H2(send.clone())),
        }
    }

    /// Sends one request; the status and the whole response body.
    pub(crate) async fn call(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes)> {
        let response = match self {
            Conn::H1(send) => {
                send.ready().await?;
                send.send_request(request).await?
            }
            Conn::H2(send) => {
                send.ready().await?;
                send.send_request(request).await?
            }
        };
        let status = response.status();
        Ok((status, response.into_body().collect().await?.to_bytes()))
    }
}
