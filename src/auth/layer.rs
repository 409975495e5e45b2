//! The tower layer that authenticates every request and applies `rules` before it reaches a service.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tonic::{
    Status,
    body::Body,
    codegen::http,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};
use tower_layer::Layer;
use tower_service::Service;

use super::{Authenticator, Identity, rules};

/// With `None`, requests pass untouched (the server runs without auth).
#[derive(Clone)]
pub struct AuthLayer {
    authenticator: Option<Arc<Authenticator>>,
}

impl AuthLayer {
    pub fn new(authenticator: Option<Arc<Authenticator>>) -> Self {
        Self { authenticator }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated { inner, authenticator: self.authenticator.clone() }
    }
}

#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    authenticator: Option<Arc<Authenticator>>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for Authenticated<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if let Some(authenticator) = &self.authenticator {
            match admit(authenticator, &request) {
                Ok(Some(identity)) => {
                    request.extensions_mut().insert(identity);
                }
                Ok(None) => {}
                Err(status) => return Box::pin(async move { Ok(status.into_http()) }),
            }
        }
        Box::pin(self.inner.call(request))
    }
}

/// The caller's identity, `None` for a public RPC, or the refusal.
fn admit<B>(authenticator: &Authenticator, request: &http::Request<B>) -> Result<Option<Arc<Identity>>, Status> {
    let path = request.uri().path();
    let access = rules::access(path);
    if access == rules::Access::Public {
        return Ok(None);
    }
    let identity = match bearer_token(request.headers()) {
        Some(token) => authenticator
            .authenticate(token)
            .ok_or_else(|| Status::unauthenticated("authorization: the bearer token is not recognised"))?,
        None => match client_certificate_names(request) {
            Some(names) => authenticator.authenticate_certificate(&names).ok_or_else(|| {
                Status::unauthenticated(format!(
                    "the client certificate's names ({}) are not in the token table",
                    names.join(", ")
                ))
            })?,
            None => {
                return Err(Status::unauthenticated(
                    "authorization: this server needs the metadata `authorization: Bearer <token>`",
                ));
            }
        },
    };
    if !access.admits(identity.role) {
        let method = path.trim_start_matches('/');
        return Err(Status::permission_denied(format!("{} {:?} may not call {method}", identity.role, identity.id)));
    }
    Ok(Some(identity))
}

/// The common names and DNS names of the client's certificate, when it connected with mutual TLS.
fn client_certificate_names<B>(request: &http::Request<B>) -> Option<Vec<String>> {
    let info = request.extensions().get::<TlsConnectInfo<TcpConnectInfo>>()?;
    let certificates = info.peer_certs()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(certificates.first()?.as_ref()).ok()?;
    let mut names: Vec<String> =
        certificate.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_owned).collect();
    if let Ok(Some(san)) = certificate.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push((*dns).to_owned());
            }
        }
    }
    (!names.is_empty()).then_some(names)
}

fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
