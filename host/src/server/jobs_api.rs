//! `/v1/jobs`: submit, list, show, cancel and delete training jobs; follow
//! one as Server-Sent Events; read its logs and its report (JSON or SVG).

use std::sync::Arc;

use bytes::Bytes;
use http::{StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};

use super::App;
use super::body::{self, Body};
use super::error::ApiError;
use crate::api::{Deleted, JobCreated, JobList, JobSpec, JobState};
use crate::jobs::Jobs;

/// Events sent per database read of a stream.
const EVENTS_PER_READ: i64 = 500;

/// A quiet stream sends a comment this often, so that proxies and clients
/// do not take a long epoch for a dead connection.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// `POST /v1/jobs` with a [`JobSpec`].
pub async fn submit(
    app: &App,
    tenant: &str,
    request: http::Request<Incoming>,
) -> Result<http::Response<Body>, ApiError> {
    let (parts, incoming) = request.into_parts();
    let bytes = app.bodies.read(&parts.headers, incoming, app.config.max_request_bytes).await?;
    let spec: JobSpec =
        serde_json::from_slice(&bytes).map_err(|err| ApiError::BadRequest(format!("invalid job spec: {err}")))?;
    let id = app.jobs.submit(tenant, spec).await?;
    tracing::info!(tenant, job = %id, "job submitted");
    Ok(body::json_response(StatusCode::CREATED, &JobCreated { id, state: JobState::Queued }))
}

/// `GET /v1/jobs`.
pub async fn list(app: &App, tenant: &str) -> Result<http::Response<Body>, ApiError> {
    Ok(body::json_response(StatusCode::OK, &JobList { jobs: app.jobs.list(tenant).await? }))
}

/// `GET /v1/jobs/{id}`.
pub async fn show(app: &App, tenant: &str, id: &str) -> Result<http::Response<Body>, ApiError> {
    Ok(body::json_response(StatusCode::OK, &app.jobs.get(tenant, id).await?))
}

/// `POST /v1/jobs/{id}/cancel`.
pub async fn cancel(app: &App, tenant: &str, id: &str) -> Result<http::Response<Body>, ApiError> {
    Ok(body::json_response(StatusCode::OK, &app.jobs.cancel(tenant, id).await?))
}

/// `DELETE /v1/jobs/{id}`.
pub async fn delete(app: &App, tenant: &str, id: &str) -> Result<http::Response<Body>, ApiError> {
    app.jobs.delete(tenant, id).await?;
    Ok(body::json_response(StatusCode::OK, &Deleted { deleted: id.to_owned() }))
}

/// `GET /v1/jobs/{id}/logs`.
pub async fn logs(app: &App, tenant: &str, id: &str) -> Result<http::Response<Body>, ApiError> {
    Ok(body::json_response(StatusCode::OK, &app.jobs.logs(tenant, id).await?))
}

/// `GET /v1/jobs/{id}/parameters[?trial=N]`: a trial's parameters (the
/// best trial's by default) at its latest checkpoint, as JSON tensors.
pub async fn parameters(app: &App, tenant: &str, id: &str, query: &str) -> Result<http::Response<Body>, ApiError> {
    let mut trial = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "trial" => {
                trial = Some(
                    value
                        .parse::<u32>()
                        .map_err(|_| ApiError::BadRequest(format!("`trial` must be a trial number, not `{value}`")))?,
                );
            }
            other => return Err(ApiError::BadRequest(format!("unknown query parameter `{other}`; use `trial`"))),
        }
    }
    let parameters = app.jobs.parameters(tenant, id, trial).await?;
    let json =
        crate::invoke::typed::output(&crate::invoke::Output::Parameters(parameters), app.config.max_response_bytes)?;
    Ok(body::json_bytes_response(StatusCode::OK, json))
}

/// `GET /v1/jobs/{id}/report`.
pub async fn report(app: &App, tenant: &str, id: &str) -> Result<http::Response<Body>, ApiError> {
    Ok(body::json_response(StatusCode::OK, &app.jobs.report(tenant, id).await?))
}

/// `GET /v1/jobs/{id}/report.svg`.
pub async fn report_svg(app: &App, tenant: &str, id: &str) -> Result<http::Response<Body>, ApiError> {
    let svg = crate::jobs::report::svg(&app.jobs.report(tenant, id).await?)?;
    let mut response = http::Response::new(body::full(svg));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("image/svg+xml"));
    Ok(response)
}

/// `GET /v1/jobs/{id}/events`: every event after `Last-Event-ID` (or from
/// the start), then new ones as they come, until the job is over. Each
/// event's `id` is its number in the job, so a client that reconnects with
/// the last one it saw misses none and sees none twice.
pub async fn events(
    app: &App,
    tenant: &str,
    id: &str,
    headers: &http::HeaderMap,
) -> Result<http::Response<Body>, ApiError> {
    let after = match headers.get("last-event-id").map(|v| v.to_str().map(str::parse::<i64>)) {
        None => 0,
        Some(Ok(Ok(seq))) if seq >= 0 => seq,
        Some(_) => return Err(ApiError::BadRequest("Last-Event-ID must be the id of an event of this job".to_owned())),
    };
    // Refuse an unknown job now, with a status, rather than in the stream.
    app.jobs.events(tenant, id, after, 0).await?;
    let state = Stream {
        jobs: Arc::clone(&app.jobs),
        tenant: tenant.to_owned(),
        id: id.to_owned(),
        after,
        done: false,
        sent: std::time::Instant::now(),
    };
    let frames = futures_util::stream::unfold(state, next_frame);
    let mut response = http::Response::new(StreamBody::new(frames).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// Where an event stream stands.
struct Stream {
    jobs: Arc<Jobs>,
    tenant: String,
    id: String,
    after: i64,
    done: bool,
    /// When the stream last sent something.
    sent: std::time::Instant,
}

type Chunk = Result<Frame<Bytes>, body::BoxError>;

/// The next chunk of events; waits for new ones while the job runs. A
/// client that goes away drops the stream, and with it this wait.
async fn next_frame(mut stream: Stream) -> Option<(Chunk, Stream)> {
    loop {
        if stream.done {
            return None;
        }
        let (events, over) = match stream.jobs.events(&stream.tenant, &stream.id, stream.after, EVENTS_PER_READ).await {
            Ok(read) => read,
            // The job was deleted, or the database is gone: end the stream.
            Err(err) => {
                tracing::debug!(%err, job = %stream.id, "event stream ended");
                return None;
            }
        };
        if !events.is_empty() {
            let mut text = String::new();
            for event in &events {
                text.push_str(&format!("id: {}\ndata: {}\n\n", event.seq, event.data));
            }
            stream.after = events.last().map_or(stream.after, |e| e.seq);
            stream.sent = std::time::Instant::now();
            return Some((Ok(Frame::data(Bytes::from(text))), stream));
        }
        if over {
            // Everything up to the end was sent: the state was read before the events.
            stream.done = true;
            continue;
        }
        if stream.sent.elapsed() >= KEEP_ALIVE {
            stream.sent = std::time::Instant::now();
            return Some((Ok(Frame::data(Bytes::from_static(b": keep-alive\n\n"))), stream));
        }
        stream.jobs.appended().await;
    }
}
