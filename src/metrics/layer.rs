//! In front of every service: a span per RPC carrying the method and the caller's trace id (so every log line of
//! the call has them), and the RPC's latency by method and status code.

use std::{
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::OnceLock,
    task::{Context, Poll},
    time::Instant,
};

use prost::Message;
use tracing::Instrument;

use tonic::{body::Body, codegen::http};
use tower_layer::Layer;
use tower_service::Service;

use super::{RpcLabels, global};

#[derive(Clone, Default)]
pub struct RpcMetricsLayer;

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = Timed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timed { inner }
    }
}

#[derive(Clone)]
pub struct Timed<S> {
    inner: S,
}

/// The method's name, or `unknown`: a label per path a caller makes up would let anyone grow the metrics without
/// bound.
fn known_method(path: &str) -> String {
    static KNOWN: OnceLock<HashSet<String>> = OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        let sets = [crate::pb::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET];
        let mut methods = HashSet::new();
        for file in sets.iter().filter_map(|set| prost_types::FileDescriptorSet::decode(*set).ok()).flat_map(|s| s.file)
        {
            for service in &file.service {
                for method in &service.method {
                    methods.insert(format!("{}.{}/{}", file.package(), service.name(), method.name()));
                }
            }
        }
        methods
    });
    let method = path.trim_start_matches('/');
    if known.contains(method) { method.to_owned() } else { "unknown".to_owned() }
}

/// The trace id the request carries, as the handlers will read it (see `api::metadata`).
fn request_trace_id(headers: &http::HeaderMap) -> Option<String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match header(crate::api::metadata::TRACE_ID_HEADER) {
        Some(id) => Some(id.trim().chars().take(128).collect()),
        None => header(crate::api::metadata::TRACEPARENT_HEADER).and_then(crate::api::metadata::traceparent_trace_id),
    }
}

/// The code as gRPC names it (`OK`, `InvalidArgument`, ...).
fn code_name(code: tonic::Code) -> String {
    match code {
        tonic::Code::Ok => "OK".to_owned(),
        other => format!("{other:?}"),
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for Timed<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = known_method(request.uri().path());
        let trace_id = request_trace_id(request.headers());
        let span = tracing::info_span!("rpc", method = %method, trace_id = trace_id.as_deref().unwrap_or_default());
        let started = Instant::now();
        let response = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                let response = response.await?;
                // An error answered before any message travels in the headers ("trailers-only"); otherwise the call
                // has started well, and its final status follows in the trailers.
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from);
                global()
                    .rpc_duration
                    .get_or_create(&RpcLabels { method, code: code_name(code) })
                    .observe(started.elapsed().as_secs_f64());
                Ok(response)
            }
            .instrument(span),
        )
    }
}
