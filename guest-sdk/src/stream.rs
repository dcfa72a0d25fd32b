//! [`BodyWriter`]: a streaming handler's response, sent as it is written.

use crate::__bindings::streaming::muon::function::response_stream;
use crate::sse;

/// The response of a [`streaming_handler`](crate::streaming_handler): the
/// head once, then the body in chunks, each sent to the client as it is
/// written.
///
/// `write` blocks while the client is behind, so a function never runs
/// ahead of its reader. When the client has gone or the response passes the
/// host's size cap, the host stops the function inside the call; there is no
/// error to handle.
///
/// ```no_run
/// use muon_sdk::{BodyWriter, Request};
///
/// #[muon_sdk::streaming_handler]
/// fn count(_req: Request, mut out: BodyWriter) {
///     out.event_stream();
///     for i in 0..10 {
///         out.event(&i.to_string());
///     }
/// }
/// ```
#[derive(Debug, Default)]
pub struct BodyWriter {
    started: bool,
}

impl BodyWriter {
    /// The writer of this call's response; the macro makes it.
    #[doc(hidden)]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends the status and headers. Without it, the first write sends a
    /// `200` with no headers; after the first write it does nothing.
    pub fn start(&mut self, status: u16, headers: &[(&str, &str)]) {
        if self.started {
            return;
        }
        self.started = true;
        let headers: Vec<(String, String)> =
            headers.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
        response_stream::start(status, &headers);
    }

    /// Sends `bytes` as the next part of the body.
    pub fn write(&mut self, bytes: impl AsRef<[u8]>) {
        self.started = true;
        response_stream::write(bytes.as_ref());
    }

    /// Starts a Server-Sent Events stream: `200`, `content-type:
    /// text/event-stream` and `cache-control: no-cache`.
    pub fn event_stream(&mut self) {
        self.start(200, &[("content-type", "text/event-stream"), ("cache-control", "no-cache")]);
    }

    /// Sends one Server-Sent Event carrying `data` (see [`sse::event`]).
    pub fn event(&mut self, data: &str) {
        self.write(sse::event(data));
    }
}
