//! Outbound HTTP for `wasi:http/outgoing-handler`.
//!
//! Guests have no ambient network: a request leaves only when the function's
//! deploy named its host, and internal addresses (loopback, private,
//! link-local, and the IPv4 ones that IPv6 addresses carry) stay unreachable
//! unless the operator allows them. The name is resolved once, every address
//! checked, and the connection made to a checked address: a second lookup
//! could answer otherwise (DNS rebinding). So muon sends the request itself,
//! as wasmtime's default sender does, but without that sender's own lookup.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// A timeout the guest did not set, as in wasmtime's default sender; the
/// function's own deadline bounds every request anyway.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Which hosts a function may call.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allowed_hosts: Arc<[String]>,
    allow_private: bool,
}

/// Where a permitted request goes: the checked addresses of its host.
struct Target {
    /// The host name, which TLS verifies.
    host: String,
    addresses: Vec<SocketAddr>,
    tls: bool,
}

impl OutboundPolicy {
    /// A policy allowing exactly `allowed_hosts` (lower-case host names, no port).
    pub fn new(allowed_hosts: Arc<[String]>, allow_private: bool) -> Self {
        Self { allowed_hosts, allow_private }
    }

    fn permits_host(&self, host: &str) -> bool {
        self.allowed_hosts.contains(&bare_host(host))
    }

    /// Resolves the request's host once and checks every address it has.
    async fn target(&self, uri: &http::Uri, lookup_timeout: Duration) -> Result<Target, HttpError> {
        let host = bare_host(uri.host().unwrap_or_default());
        if !self.permits_host(&host) {
            tracing::info!(%host, "outbound request refused: host not in the function's allowed_hosts");
            return Err(HttpError::HttpRequestDenied);
        }
        let tls = uri.scheme() == Some(&Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let addresses: Vec<SocketAddr> =
            tokio::time::timeout(lookup_timeout, tokio::net::lookup_host((host.as_str(), port)))
                .await
                .map_err(|_| HttpError::DnsTimeout)?
                .map_err(|_| HttpError::DestinationNotFound)?
                .collect();
        if !self.allow_private
            && let Some(internal) = addresses.iter().find(|address| is_internal(address.ip()))
        {
            tracing::info!(%host, ip = %internal.ip(), "outbound request refused: internal address");
            return Err(HttpError::DestinationIpProhibited);
        }
        if addresses.is_empty() {
            return Err(HttpError::DestinationNotFound);
        }
        Ok(Target { host, addresses, tls })
    }
}

/// Why the host's own POST (an alert sink's webhook) did not get an answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostError {
    /// The URL is not `http` or `https` with a host.
    #[error("not an http or https URL with a host")]
    InvalidUrl,
    /// The host resolves to a loopback, private or link-local address, and
    /// the operator has not allowed those.
    #[error("the host resolves to a private, loopback or link-local address; the operator has not allowed those")]
    PrivateAddress,
    /// No answer in time.
    #[error("timeout: no answer within {0:?}")]
    Timeout(Duration),
    /// The name did not resolve, the connection or TLS failed, and so on.
    #[error("{0}")]
    Http(HttpError),
}

impl From<HttpError> for PostError {
    fn from(err: HttpError) -> Self {
        match err {
            HttpError::DestinationIpProhibited => Self::PrivateAddress,
            HttpError::HttpRequestUriInvalid => Self::InvalidUrl,
            other => Self::Http(other),
        }
    }
}

/// POSTs `body` to `url` for the host itself (alert webhooks), under the
/// policy guests' requests obey: the name is resolved once, every address
/// checked (internal ones refused unless `allow_private`), and the request
/// sent over TLS for `https` to a checked address; the whole exchange
/// within `timeout`. Returns the status of the answer; its body is not read.
pub async fn post(
    url: &http::Uri,
    headers: http::HeaderMap,
    body: Bytes,
    allow_private: bool,
    timeout: Duration,
) -> Result<http::StatusCode, PostError> {
    let host = url.host().filter(|host| !host.is_empty()).ok_or(PostError::InvalidUrl)?;
    if !matches!(url.scheme_str(), Some("http" | "https")) {
        return Err(PostError::InvalidUrl);
    }
    let policy = OutboundPolicy::new(Arc::from(vec![bare_host(host)]), allow_private);
    let exchange = async {
        let target = policy.target(url, timeout).await?;
        let authority = url.authority().map_or(host, |authority| authority.as_str());
        let mut request = http::Request::post(url.clone())
            .header(http::header::HOST, authority)
            .body(http_body_util::Full::new(body).map_err(|never| match never {}).boxed_unsync())
            .map_err(|_| HttpError::HttpRequestUriInvalid)?;
        request.headers_mut().extend(headers);
        let options = RequestOptions {
            connect_timeout: Some(timeout),
            first_byte_timeout: Some(timeout),
            between_bytes_timeout: Some(timeout),
        };
        let (response, _io) = send_pinned(request, Some(options), &target).await?;
        Ok::<_, PostError>(response.status())
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| PostError::Timeout(timeout))?
}

/// Whether `ip` is loopback, private, link-local or otherwise internal: an
/// address that neither guests nor alert sinks reach unless allowed.
pub fn is_internal_address(ip: IpAddr) -> bool {
    is_internal(ip)
}

/// A host as the allow list and the resolver want it: lower case, IPv6 without brackets.
fn bare_host(host: &str) -> String {
    host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()
}

/// Whether `ip` is one that a guest must not reach by default.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6) || embedded_v4(v6).is_some_and(is_internal_v4),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    a == 0 // 0.0.0.0/8, "this network"
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (b & 0xc0) == 64) // 100.64.0.0/10, carrier-grade NAT
        || (a == 198 && (b & 0xfe) == 18) // 198.18.0.0/15, benchmarking
        || a >= 224 // multicast, reserved and broadcast
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // fc00::/7, unique local
        || (segments[0] & 0xffc0) == 0xfe80 // fe80::/10, link-local
        || (segments[0] & 0xffc0) == 0xfec0 // fec0::/10, the former site-local
        || segments[..3] == [0x64, 0xff9b, 1] // 64:ff9b:1::/48, local-use NAT64
}

/// The IPv4 address an IPv6 one leads to: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) and 6to4
/// (`2002:AABB:CCDD::/48`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let segments = ip.segments();
    let v4 = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    match segments {
        [0, 0, 0, 0, 0, 0 | 0xffff, high, low] | [0x64, 0xff9b, 0, 0, 0, 0, high, low] => Some(v4(high, low)),
        [0x2002, high, low, ..] => Some(v4(high, low)),
        _ => None,
    }
}

/// What completes once the response body has been read (or the connection failed).
type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

type ResponseFuture = Box<dyn Future<Output = wasmtime_wasi_http::Result<(http::Response<WasiBody>, IoFuture)>> + Send>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        let policy = self.clone();
        Box::new(async move {
            let connect_timeout = options.and_then(|o| o.connect_timeout).unwrap_or(DEFAULT_TIMEOUT);
            let target = policy.target(request.uri(), connect_timeout).await?;
            let (response, io) = send_pinned(request, options, &target).await?;
            Ok((response.map(BodyExt::boxed_unsync), io))
        })
    }
}

/// A byte stream to the server, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Sends `request` over a new connection to one of `target`'s checked
/// addresses, with the guest's timeouts.
async fn send_pinned(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    target: &Target,
) -> Result<(http::Response<TimedBody>, IoFuture), HttpError> {
    let timeout = |pick: fn(RequestOptions) -> Option<Duration>| options.and_then(pick).unwrap_or(DEFAULT_TIMEOUT);
    let (connect_timeout, first_byte_timeout) = (timeout(|o| o.connect_timeout), timeout(|o| o.first_byte_timeout));
    let between_bytes_timeout = timeout(|o| o.between_bytes_timeout);
    let stream =
        tokio::time::timeout(connect_timeout, connect(target)).await.map_err(|_| HttpError::ConnectionTimeout)??;
    let (mut sender, connection) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::Builder::new().handshake::<_, WasiBody>(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;
    // To a server, not a proxy: the request line carries the path only; the
    // authority is in `Host`, which wasi-http has set.
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = http::Uri::try_from(path).map_err(|_| HttpError::HttpRequestUriInvalid)?;

    let send = tokio::time::timeout(first_byte_timeout, sender.send_request(request));
    tokio::pin!(send);
    let mut connection = Box::pin(connection);
    let mut connection_done = false;
    // The connection must make progress while the response is awaited.
    let response = loop {
        tokio::select! {
            sent = &mut send => break sent.map_err(|_| HttpError::ConnectionReadTimeout)??,
            done = &mut connection, if !connection_done => {
                done?;
                connection_done = true;
            }
        }
    };
    let io: IoFuture = Box::new(async move {
        if !connection_done {
            connection.await.map_err(response_error)?;
        }
        Ok(())
    });
    let response = response.map(|incoming| TimedBody::new(incoming, between_bytes_timeout));
    Ok((response, io))
}

/// A TCP connection to the first of `target`'s addresses that answers, in TLS for `https`.
async fn connect(target: &Target) -> Result<Box<dyn Stream>, HttpError> {
    let mut failure = None;
    let mut tcp = None;
    for address in &target.addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                tcp = Some(stream);
                break;
            }
            Err(err) => failure = Some(err),
        }
    }
    let Some(tcp) = tcp else {
        return Err(failure.map_or(HttpError::DestinationNotFound, HttpError::Connect));
    };
    if !target.tls {
        return Ok(Box::new(tcp));
    }
    let config = TLS_CONFIG.as_ref().ok_or(HttpError::TlsProtocolError)?;
    let name = rustls::pki_types::ServerName::try_from(target.host.clone())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::clone(config)).connect(name, tcp).await.map_err(HttpError::Tls)?;
    Ok(Box::new(tls))
}

/// The TLS client configuration: the Mozilla roots of `webpki-roots`, as in
/// wasmtime's default sender, with ring named explicitly so that no process-wide
/// provider needs choosing.
static TLS_CONFIG: LazyLock<Option<Arc<rustls::ClientConfig>>> = LazyLock::new(|| {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions();
    match builder {
        Ok(builder) => Some(Arc::new(builder.with_root_certificates(roots).with_no_client_auth())),
        Err(err) => {
            tracing::error!(%err, "no TLS client configuration; outbound https fails");
            None
        }
    }
});

fn response_error(err: hyper::Error) -> HttpError {
    if err.is_timeout() { HttpError::HttpResponseTimeout } else { HttpError::from(err) }
}

/// A response body that fails when a frame is longer in coming than the
/// guest's `between_bytes_timeout`.
struct TimedBody {
    incoming: Incoming,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl TimedBody {
    fn new(incoming: Incoming, timeout: Duration) -> Self {
        Self { incoming, timeout, deadline: Box::pin(tokio::time::sleep(timeout)) }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.timeout;
                this.deadline.as_mut().reset(next);
                Poll::Ready(frame.map(|frame| frame.map_err(response_error)))
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::from([8, 8, 8, 8]))
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            // IPv4-compatible, NAT64 and 6to4 addresses of internal IPv4 ones
            "::127.0.0.1",
            "::10.0.0.1",
            "::0.0.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:0a00:0001::1",
            "2002:c0a8:0101:1::1",
        ] {
            assert!(is_internal(ip(internal)), "{internal} is internal");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
            "1.0.0.0",
        ] {
            assert!(!is_internal(ip(public)), "{public} is public");
        }
    }

    #[test]
    fn only_named_hosts_are_permitted() {
        let policy = OutboundPolicy::new(Arc::from(vec!["api.example.com".to_owned(), "::1".to_owned()]), false);
        assert!(policy.permits_host("API.example.com"));
        assert!(policy.permits_host("[::1]"));
        assert!(!policy.permits_host("example.com"));
        assert!(!OutboundPolicy::default().permits_host("api.example.com"));
    }

    /// The connection goes to the checked address, never to a second lookup
    /// of the name: here the name does not resolve at all, yet the request
    /// arrives, with its `Host` and a path-only request line.
    #[tokio::test]
    async fn requests_go_to_the_checked_address_without_a_second_lookup() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await?;
            let mut head = Vec::new();
            let mut buffer = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let read = stream.read(&mut buffer).await?;
                anyhow::ensure!(read > 0, "closed before the request head");
                head.extend_from_slice(&buffer[..read]);
            }
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await?;
            anyhow::Ok(String::from_utf8_lossy(&head).into_owned())
        });
        let body: WasiBody = http_body_util::Empty::<Bytes>::new().map_err(|never| match never {}).boxed_unsync();
        let request = http::Request::get(format!("http://rebind.invalid:{}/x?y=1", address.port()))
            .header(http::header::HOST, format!("rebind.invalid:{}", address.port()))
            .body(body)?;
        let target = Target { host: "rebind.invalid".to_owned(), addresses: vec![address], tls: false };
        let (response, io) = send_pinned(request, None, &target).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        assert_eq!(response.status(), 200);
        let bytes = response.into_body().collect().await.map_err(|e| anyhow::anyhow!("{e}"))?.to_bytes();
        assert_eq!(&bytes[..], b"ok");
        Pin::from(io).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let head = server.await??;
        assert!(head.starts_with("GET /x?y=1 HTTP/1.1\r\n"), "{head}");
        assert!(head.to_ascii_lowercase().contains(&format!("host: rebind.invalid:{}", address.port())), "{head}");
        Ok(())
    }

    /// https goes through TLS on the pinned connection: a server that is
    /// not TLS is a TLS error, not a panic and not plain HTTP.
    #[tokio::test]
    async fn https_speaks_tls_to_the_checked_address() -> anyhow::Result<()> {
        assert!(TLS_CONFIG.is_some(), "the TLS client configuration builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move {
            if let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
            }
        });
        let target = Target { host: "rebind.invalid".to_owned(), addresses: vec![address], tls: true };
        let connected = connect(&target).await;
        assert!(matches!(connected, Err(HttpError::Tls(_))), "{:?}", connected.err());
        Ok(())
    }

    #[tokio::test]
    async fn internal_addresses_are_refused_after_one_lookup() -> anyhow::Result<()> {
        let policy = OutboundPolicy::new(Arc::from(vec!["localhost".to_owned()]), false);
        let uri: http::Uri = "http://localhost:9/".parse()?;
        let refused = policy.target(&uri, Duration::from_secs(5)).await;
        assert!(matches!(refused, Err(HttpError::DestinationIpProhibited)), "{:?}", refused.err());
        let allowed = OutboundPolicy::new(Arc::from(vec!["localhost".to_owned()]), true)
            .target(&uri, Duration::from_secs(5))
            .await;
        let target = allowed.map_err(|e| anyhow::anyhow!("{e}"))?;
        assert!(target.addresses.iter().all(|a| a.ip().is_loopback() && a.port() == 9) && !target.tls);
        Ok(())
    }
}
