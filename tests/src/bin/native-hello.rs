//! The `hello` handler written natively on hyper: the benchmark's baseline.
//! Same response bytes as `functions/hello`, same runtime shape as muon.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("native-hello listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|request: hyper::Request<hyper::body::Incoming>| async move {
                let name = request
                    .uri()
                    .query()
                    .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("name=")))
                    .unwrap_or("world")
                    .to_owned();
                let mut response = hyper::Response::new(Full::new(Bytes::from(format!("hello, {name}!\n"))));
                response
                    .headers_mut()
                    .insert("content-type", hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"));
                Ok::<_, Infallible>(response)
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
