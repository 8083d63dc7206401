//! Test deliveries: a sample event of a type the integration takes, and redaction of secrets from
//! the requests shown back to the user.

use model::integration::{HttpRequest, Manifest, Request};
use serde_json::{json, Map, Value};

/// A realistic event of the integration's first event type.
pub fn event(m: &Manifest) -> Value {
    let ty = m.capabilities.event_types.first().map(String::as_str).unwrap_or("track");
    let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let mut e = json!({
        "type": ty,
        "messageId": format!("test-{}", ulid::Ulid::new().to_string().to_lowercase()),
        "userId": "test-user-1",
        "anonymousId": "test-anonymous-1",
        "timestamp": now,
        "context": {"ip": "203.0.113.7", "userAgent": "Switchyard test delivery",
            "traits": {"email": "test.user@example.com"}, "library": {"name": "switchyard-test", "version": "1"}},
    });
    let o = e.as_object_mut().expect("object");
    match ty {
        "track" => {
            o.insert("event".into(), json!("Order Completed"));
            o.insert("properties".into(), json!({"order_id": "T-1001", "revenue": 42.5, "currency": "EUR",
                "products": [{"product_id": "p1", "sku": "SKU-1", "name": "Test product", "price": 42.5, "quantity": 1}]}));
        }
        "identify" => {
            o.insert("traits".into(), json!({"email": "test.user@example.com", "firstName": "Test", "lastName": "User", "plan": "pro"}));
        }
        "page" | "screen" => {
            o.insert("name".into(), json!("Home"));
            o.insert("properties".into(), json!({"url": "https://www.example.com/", "title": "Home", "path": "/"}));
        }
        "group" => {
            o.insert("groupId".into(), json!("test-group-1"));
            o.insert("traits".into(), json!({"name": "Example Inc."}));
        }
        "alias" => {
            o.insert("previousId".into(), json!("test-anonymous-1"));
        }
        _ => {}
    }
    e
}

/// Secret values (and header values that carry credentials) replaced by the mask.
pub fn redact(request: &Request, secrets: &[String]) -> Value {
    let (text, v) = redacted(request, secrets);
    serde_json::from_str(&text).unwrap_or(v)
}

/// `redact` as JSON text (the attempt log keeps text; parsing it back would cost as much again).
/// An HTTP request whose body was serialised already (to sign it) is written around those bytes,
/// the same text as from its value with keys in order, without copying its JSON into a value
/// first (that copy was ~6% of the server's CPU delivering webhooks one by one).
pub fn redact_text(request: &Request, secrets: &[String]) -> String {
    match request {
        Request::Http(h @ HttpRequest { form: None, json: Some(_), body: Some(body), .. }) => mask_secrets(http_text(h, body), secrets),
        _ => redacted(request, secrets).0,
    }
}

/// Whether a header carries a credential (its value is masked).
fn credential_header(name: &str) -> bool {
    // Header names are lower case already (see `HttpRequest`): copy only one that is not.
    let lower;
    let k = if name.bytes().any(|b| b.is_ascii_uppercase()) {
        lower = name.to_ascii_lowercase();
        lower.as_str()
    } else {
        name
    };
    k == "authorization" || k == "proxy-authorization" || k.contains("api-key") || k.contains("token") || k.contains("secret")
}

/// The JSON form of an HTTP request, keys in order, with `body` as its `json`.
fn http_text(h: &HttpRequest, body: &str) -> String {
    let headers: std::collections::BTreeMap<&str, &str> =
        h.headers.iter().map(|(k, v)| (k.as_str(), if credential_header(k) { super::settings::MASK } else { v.as_str() })).collect();
    format!(
        "{{\"headers\":{},\"json\":{body},\"kind\":\"http\",\"method\":{},\"url\":{}}}",
        json_text(&headers),
        json_text(&h.method),
        json_text(&h.url)
    )
}

fn json_text<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn mask_secrets(mut text: String, secrets: &[String]) -> String {
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        if text.contains(s.as_str()) {
            text = text.replace(s.as_str(), super::settings::MASK);
        }
    }
    text
}

/// The masked request as text, and as a value before the secrets were replaced in the text.
fn redacted(request: &Request, secrets: &[String]) -> (String, Value) {
    let mut v = serde_json::to_value(request).unwrap_or_default();
    if let Some(h) = v.get_mut("headers").and_then(Value::as_object_mut) {
        for (k, val) in h.iter_mut() {
            if credential_header(k) {
                *val = Value::String(super::settings::MASK.into());
            }
        }
    }
    (mask_secrets(v.to_string(), secrets), v)
}

/// The values of the secret settings (production and test) and the passwords in URL settings.
pub fn secret_values(secrets: &Map<String, Value>, settings: &Map<String, Value>) -> Vec<String> {
    let mut out: Vec<String> = secrets.values().filter_map(Value::as_str).map(String::from).collect();
    let urls = settings.values().chain(settings.get("test_values").and_then(Value::as_object).into_iter().flat_map(|t| t.values()));
    out.extend(urls.filter_map(Value::as_str).filter_map(super::settings::url_secret).map(String::from));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request whose body was serialised already (a signed webhook) is logged as the same text
    /// as from its value: credential headers and secrets masked, keys in order.
    #[test]
    fn a_serialised_body_is_logged_as_its_value_would_be() {
        let json = serde_json::json!({"userId": "u-1", "properties": {"b": 2, "a": "sk_live_abcdef"}, "n": [1, 2.5, null]});
        let mut headers = std::collections::BTreeMap::new();
        headers.insert("authorization".to_string(), "Bearer tok-123456".to_string());
        headers.insert("content-type".to_string(), "application/json".to_string());
        headers.insert("webhook-id".to_string(), "m-1".to_string());
        headers.insert("X-Api-Key".to_string(), "key-98765".to_string());
        let signed = HttpRequest { method: "POST".into(), url: "https://h.example.com/in?key=sk_live_abcdef".into(), headers, body: Some(json.to_string()), json: Some(json), form: None };
        let secrets = vec!["sk_live_abcdef".to_string()];
        let fast = redact_text(&Request::Http(signed.clone()), &secrets);
        let from_value = redacted(&Request::Http(signed), &secrets).0;
        assert_eq!(fast, from_value);
        assert!(!fast.contains("sk_live_abcdef") && !fast.contains("tok-123456") && !fast.contains("key-98765"), "{fast}");
    }

    /// The attempt log's text and the API's value mask the same things: credential headers, and
    /// secret values wherever they appear (here in the URL and the body).
    #[test]
    fn redacted_text_and_value_mask_alike() {
        let mut headers = std::collections::BTreeMap::new();
        headers.insert("authorization".to_string(), "Bearer tok-123456".to_string());
        headers.insert("content-type".to_string(), "application/json".to_string());
        let request = Request::Http(HttpRequest {
            method: "POST".into(),
            url: "https://api.example.com/in?key=sk_live_abcdef".into(),
            headers,
            json: Some(serde_json::json!({"token": "sk_live_abcdef", "n": 1})),
            form: None,
            body: None,
        });
        let secrets = vec!["sk_live_abcdef".to_string(), "ab".to_string()];
        let text = redact_text(&request, &secrets);
        assert!(!text.contains("sk_live_abcdef") && !text.contains("tok-123456"), "{text}");
        assert_eq!(text.matches(super::super::settings::MASK).count(), 3, "{text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), redact(&request, &secrets));
        assert!(text.contains("application/json"), "other headers are kept: {text}");
    }
}
