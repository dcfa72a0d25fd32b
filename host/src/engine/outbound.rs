//! Outbound HTTP policy for `wasi:http/outgoing-handler`.
//!
//! Guests have no ambient network: a request leaves only when the function's
//! deploy named its host, and loopback, private and link-local addresses stay
//! unreachable (checked after DNS resolution) unless the operator allows them.

use std::net::IpAddr;
use std::sync::Arc;

use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Which hosts a function may call.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allowed_hosts: Arc<[String]>,
    allow_private: bool,
}

impl OutboundPolicy {
    /// A policy allowing exactly `allowed_hosts` (lower-case host names, no port).
    pub fn new(allowed_hosts: Arc<[String]>, allow_private: bool) -> Self {
        Self { allowed_hosts, allow_private }
    }

    fn permits_host(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        self.allowed_hosts.contains(&host)
    }
}

/// Whether `ip` is one that a guest must not reach by default.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| is_internal(IpAddr::V4(v4)))
        }
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        let policy = self.clone();
        Box::new(async move {
            let uri = request.uri();
            let host = uri.host().unwrap_or_default().to_owned();
            if !policy.permits_host(&host) {
                tracing::info!(%host, "outbound request refused: host not in the function's allowed_hosts");
                return Err(HttpError::HttpRequestDenied);
            }
            if !policy.allow_private {
                let port = uri.port_u16().unwrap_or(443);
                let addrs = tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .map_err(|_| HttpError::DestinationNotFound)?;
                for addr in addrs {
                    if is_internal(addr.ip()) {
                        tracing::info!(%host, ip = %addr.ip(), "outbound request refused: internal address");
                        return Err(HttpError::DestinationIpProhibited);
                    }
                }
            }
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in ["127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.0.1", "169.254.1.1", "::1", "fd00::1", "::ffff:127.0.0.1", "100.64.0.1"] {
            assert!(is_internal(ip.parse().unwrap_or(IpAddr::from([8, 8, 8, 8]))), "{ip}");
        }
        assert!(!is_internal(IpAddr::from([93, 184, 216, 34])));
    }

    #[test]
    fn only_named_hosts_are_permitted() {
        let policy = OutboundPolicy::new(Arc::from(vec!["api.example.com".to_owned()]), false);
        assert!(policy.permits_host("API.example.com"));
        assert!(!policy.permits_host("example.com"));
        assert!(!OutboundPolicy::default().permits_host("api.example.com"));
    }
}
