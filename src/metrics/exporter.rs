//! The `/metrics` endpoint: a small HTTP/1 server on its own port.

use std::{net::SocketAddr, sync::Arc};

use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::server::AppState;

/// Serves `GET /metrics` on `listener` until `stop`.
pub fn spawn_exporter(listener: TcpListener, state: Arc<AppState>, stop: CancellationToken) {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(metrics_addr = ?addr, "serving metrics at /metrics");
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!(error = %err, "metrics listener could not accept");
                        continue;
                    }
                },
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| answer(request, state.clone()));
                // A scraper that hangs up mid-answer is not an error worth a log line.
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
}

async fn answer(
    request: Request<hyper::body::Incoming>,
    state: Arc<AppState>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let respond = |status: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
        }
        Ok(response)
    };
    if request.uri().path() != "/metrics" {
        return respond(StatusCode::NOT_FOUND, "text/plain", "only /metrics is served here\n".into());
    }
    match super::render(&state).await {
        Ok(text) => respond(StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", text),
        Err(err) => {
            tracing::warn!(error = %err, "could not gather the metrics");
            respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("{err}\n"))
        }
    }
}
