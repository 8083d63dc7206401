//! Calls to the JSON API from the browser. On the server these are never awaited (pages load
//! their data after hydration), so the non-browser build only answers with an error.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// An API failure as a person should read it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiErr {
    pub status: u16,
    pub message: String,
}

impl std::fmt::Display for ApiErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub async fn get<T: DeserializeOwned>(url: &str) -> Result<T, ApiErr> {
    send("GET", url, None).await
}

pub async fn post<T: DeserializeOwned>(url: &str, body: &Value) -> Result<T, ApiErr> {
    send("POST", url, Some(body)).await
}

#[cfg(feature = "hydrate")]
pub async fn send<T: DeserializeOwned>(method: &str, url: &str, body: Option<&Value>) -> Result<T, ApiErr> {
    use gloo_net::http::{Method, RequestBuilder};
    let net = |e: gloo_net::Error| ApiErr { status: 0, message: format!("cannot reach the server: {e}") };
    let method = match method {
        "POST" => Method::POST,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        _ => Method::GET,
    };
    let builder = RequestBuilder::new(url).method(method).header("Accept", "application/json");
    let request = match body {
        Some(b) => builder.json(b).map_err(net)?,
        None => builder.build().map_err(net)?,
    };
    let res = request.send().await.map_err(net)?;
    let status = res.status();
    let text = res.text().await.map_err(net)?;
    if (200..300).contains(&status) {
        let value: Value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::Null) };
        return serde_json::from_value(value)
            .map_err(|e| ApiErr { status, message: format!("unexpected answer from the server: {e}") });
    }
    let message = serde_json::from_str::<model::Problem>(&text)
        .map(|p| p.message())
        .unwrap_or_else(|_| format!("the server answered {status}"));
    Err(ApiErr { status, message })
}

#[cfg(not(feature = "hydrate"))]
pub async fn send<T: DeserializeOwned>(_method: &str, _url: &str, _body: Option<&Value>) -> Result<T, ApiErr> {
    Err(ApiErr { status: 0, message: "only available in the browser".into() })
}

/// Full-page navigation (after sign-in and sign-out, so the server renders the new state).
pub fn go(url: &str) {
    #[cfg(feature = "hydrate")]
    if let Some(w) = web_sys::window() {
        let _ = w.location().set_href(url);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = url;
}
