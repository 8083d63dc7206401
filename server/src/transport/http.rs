//! HTTP destinations through reqwest: the guarded resolver, no redirects followed (a redirect is
//! reported, never followed to an unchecked place), a timeout, and outcome classification.

use super::guard::{is_private, GuardedResolver};
use super::{Attempt, Outcome, Transport};
use async_trait::async_trait;
use model::integration::{Manifest, Request};
use serde_json::{Map, Value};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Http {
    client: reqwest::Client,
    allow_private: bool,
    /// How much of a response body an attempt keeps.
    keep_body: usize,
}

impl Http {
    pub fn new(options: &super::Options) -> Http {
        // No proxy from the environment: a proxy would resolve the destination's name itself,
        // past the SSRF guard's resolver.
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("Switchyard/", env!("CARGO_PKG_VERSION")));
        if !options.allow_private {
            b = b.dns_resolver(Arc::new(GuardedResolver));
        }
        Http { client: b.build().expect("the HTTP client builds"), allow_private: options.allow_private, keep_body: options.response_bytes }
    }

    /// Refuses URLs whose host is a private IP literal (names are checked by the resolver).
    fn check_url(&self, url: &str) -> Result<url::Url, String> {
        let u = url::Url::parse(url).map_err(|e| format!("'{url}' is not a valid URL: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("'{url}' is not an http or https URL"));
        }
        let host = u.host_str().unwrap_or_default().trim_matches(['[', ']']);
        if let Ok(ip) = host.parse::<IpAddr>() {
            if !self.allow_private && is_private(ip) {
                return Err(format!("{ip} is a private address: refused (set allow_private_destinations to allow it)"));
            }
        }
        Ok(u)
    }
}

/// 2xx delivered; 408, 429 and 5xx retryable; everything else permanent.
pub fn classify(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Retryable,
        _ => Outcome::Permanent,
    }
}

/// `Retry-After` as seconds: a number of seconds, or an HTTP date.
pub fn retry_after_secs(v: &str) -> Option<f64> {
    if let Ok(n) = v.trim().parse::<f64>() {
        return (n.is_finite() && n >= 0.0).then_some(n);
    }
    let at = time::OffsetDateTime::parse(v.trim(), &time::format_description::well_known::Rfc2822).ok()?;
    Some(((at - time::OffsetDateTime::now_utc()).as_seconds_f64()).max(0.0))
}

/// The response's headers, names in lower case, repeated ones joined; cookies masked.
fn headers_of(h: &reqwest::header::HeaderMap) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::<String, String>::new();
    for (name, value) in h {
        let text = if name == reqwest::header::SET_COOKIE { crate::integrations::settings::MASK.to_string() } else { String::from_utf8_lossy(value.as_bytes()).into_owned() };
        out.entry(name.as_str().to_string()).and_modify(|v| *v = format!("{v}, {text}")).or_insert(text);
    }
    out
}

pub(crate) fn cut(mut s: String, keep: usize) -> String {
    if s.len() > keep {
        let mut end = keep;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// A reqwest error in words, with the cause the resolver gave (the SSRF guard's refusal).
fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}

#[async_trait]
impl Transport for Http {
    async fn send(&self, _settings: &Map<String, Value>, request: &Request) -> Attempt {
        let started = Instant::now();
        let Request::Http(r) = request else {
            return Attempt::timed(started, Outcome::Permanent, None, "an HTTP destination got a broker message");
        };
        let url = match self.check_url(&r.url) {
            Ok(u) => u,
            Err(e) => return Attempt::timed(started, Outcome::Permanent, None, e),
        };
        let method = match reqwest::Method::from_bytes(r.method.as_bytes()) {
            Ok(m) => m,
            Err(_) => return Attempt::timed(started, Outcome::Permanent, None, format!("'{}' is not an HTTP method", r.method)),
        };
        let mut req = self.client.request(method, url);
        for (k, v) in &r.headers {
            req = req.header(k, v);
        }
        if let Some(b) = &r.body {
            req = req.body(b.clone());
        } else if let Some(j) = &r.json {
            req = req.body(serde_json::to_vec(j).unwrap_or_default());
        } else if let Some(f) = &r.form {
            req = req.form(f);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(retry_after_secs);
                let headers = headers_of(resp.headers());
                let full = resp.text().await.unwrap_or_default();
                let body = cut(full.clone(), self.keep_body);
                let outcome = match status {
                    300..=399 => Outcome::Permanent,
                    s => classify(s),
                };
                Attempt { retry_after, headers: Some(headers), body: Some(full), ..Attempt::timed(started, outcome, Some(status), body) }
            }
            Err(e) => {
                let msg = describe(&e);
                let outcome = if msg.contains("private address") || e.is_builder() { Outcome::Permanent } else { Outcome::Retryable };
                Attempt::timed(started, outcome, None, msg)
            }
        }
    }

    async fn test_connection(&self, manifest: &Manifest, settings: &Map<String, Value>) -> Result<String, String> {
        if let Some(built) = model::mapping::test_connection_request(manifest, settings) {
            let request = built?;
            let a = self.send(settings, &request).await;
            return match a.outcome {
                Outcome::Delivered => Ok(format!("the test request was answered {}", a.status.unwrap_or_default())),
                _ => Err(match a.status {
                    Some(s) => format!("the test request was answered {s}: {}", a.detail),
                    None => a.detail,
                }),
            };
        }
        // No test request: check that the first URL setting's host is allowed and accepts connections.
        let url = manifest
            .settings
            .iter()
            .filter(|f| f.ty == model::integration::FieldType::Url)
            .find_map(|f| super::text(settings, &f.key))
            .ok_or("no URL setting to test")?;
        let u = self.check_url(url)?;
        let host = u.host_str().unwrap_or_default().trim_matches(['[', ']']).to_string();
        let port = u.port_or_known_default().unwrap_or(443);
        let addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), port)).await.map_err(|e| format!("cannot resolve {host}: {e}"))?.collect();
        if !self.allow_private {
            if let Some(a) = addrs.iter().find(|a| is_private(a.ip())) {
                return Err(format!("{host} resolves to {}, a private address: refused", a.ip()));
            }
        }
        let addr = *addrs.first().ok_or_else(|| format!("{host} has no address"))?;
        match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(format!("connected to {host}:{port} ({})", addr.ip())),
            Ok(Err(e)) => Err(format!("cannot connect to {host}:{port}: {e}")),
            Err(_) => Err(format!("connecting to {host}:{port} timed out after 5 s")),
        }
    }
}
