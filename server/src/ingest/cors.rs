//! CORS for the Tracking API. Browser SDKs call from any page: preflights are answered and every
//! answer is labelled. A source's allowed origins are enforced on the request itself (a preflight
//! has no write key).

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The answer to a preflight.
pub async fn preflight(headers: HeaderMap) -> Response {
    let allow_headers = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or(HeaderValue::from_static("Content-Type, Authorization, Content-Encoding, AnonymousId"));
    let mut res = StatusCode::NO_CONTENT.into_response();
    let h = res.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, GET, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    label(headers.get(header::ORIGIN).cloned(), res)
}

/// Labels an answer to a request from `origin` (any origin; credentials when one is named).
pub fn label(origin: Option<HeaderValue>, mut res: Response) -> Response {
    let h = res.headers_mut();
    match origin {
        Some(o) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
            h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        None => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        }
    }
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    res
}

/// The same as a middleware, for the routes that are not on every event's path.
pub async fn layer(req: Request, next: Next) -> Response {
    if req.method() == Method::OPTIONS {
        return preflight(req.headers().clone()).await;
    }
    let origin = req.headers().get(header::ORIGIN).cloned();
    label(origin, next.run(req).await)
}
