//! The catalog API, and destinations checked against their integration's schema: 422 per field,
//! secrets masked everywhere and sealed at rest, reveal and rotate audited, SSRF refused on save.

use crate::both;
use crate::harness::Db;
use serde_json::{json, Value};

const MASK: &str = "••••••";

#[tokio::test]
async fn catalog_lists_branded_integrations_with_logos() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let token = env.token("t", "viewer");
    let server = env.start().await;
    let c = server.client();
    let list: Value = c.get(server.at("/api/catalog")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let items = list["items"].as_array().unwrap();
    assert!(items.len() >= 13, "{} integrations", items.len());
    let names: Vec<String> = items.iter().map(|i| i["name"].as_str().unwrap().to_lowercase()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "sorted by name");
    for slug in ["webhook", "slack", "mixpanel", "amplitude", "google-analytics-4", "hubspot", "facebook-conversions", "segment", "customerio", "nats", "rabbitmq", "mqtt", "redis", "postgres"] {
        let it = items.iter().find(|i| i["slug"] == slug).unwrap_or_else(|| panic!("{slug} missing"));
        assert!(it["color"].as_str().unwrap().starts_with('#'), "{slug}");
        assert!(!it["categories"].as_array().unwrap().is_empty(), "{slug}");
        assert!(it["capabilities"]["event_types"].as_array().is_some(), "{slug}");
        // Logos are served from the binary, without credentials.
        let logo = c.get(server.at(it["logo"].as_str().unwrap())).send().await.unwrap();
        assert_eq!(logo.status(), 200, "{slug}");
        assert_eq!(logo.headers()["content-type"], "image/svg+xml");
        assert!(logo.text().await.unwrap().contains("<svg"), "{slug}");
    }
    let found: Value = c.get(server.at("/api/catalog?q=slack")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    let brokers: Value = c.get(server.at("/api/catalog?category=Broker")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let slugs: Vec<&str> = brokers["items"].as_array().unwrap().iter().map(|i| i["slug"].as_str().unwrap()).collect();
    assert!(slugs.contains(&"nats") && !slugs.contains(&"slack"), "{slugs:?}");
    let whole: Value = c.get(server.at("/api/catalog/webhook")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert!(whole["settings"].as_array().unwrap().iter().any(|f| f["key"] == "signing_secret" && f["type"] == "secret"));
    assert_eq!(c.get(server.at("/api/catalog/nope")).bearer_auth(&token).send().await.unwrap().status(), 404);
}

async fn destinations_are_validated_and_secrets_masked(db: Db) {
    let env = crate::env_or_skip!(db);
    let admin = env.token("a", "admin");
    let server = env.start_with(&["--allow-private-destinations"]).await;
    let c = server.client();
    let post = |body: Value| c.post(server.at("/api/destinations")).bearer_auth(&admin).json(&body).send();

    // A missing required setting: 422 naming the field.
    let r = post(json!({"name": "hook", "integration": "webhook", "settings": {"method": "PUT"}})).await.unwrap();
    assert_eq!(r.status(), 422);
    let p: Value = r.json().await.unwrap();
    assert!(p["errors"].as_array().unwrap().iter().any(|e| e["field"] == "settings.url" && e["message"] == "is required"), "{p}");
    let r = post(json!({"name": "s", "integration": "slack", "settings": {"webhook_url": "http://hooks.example"}})).await.unwrap();
    assert_eq!(r.status(), 422);
    let r = post(json!({"name": "x", "integration": "nope"})).await.unwrap();
    assert_eq!(r.status(), 422);
    let r = post(json!({"name": "h2", "integration": "webhook", "settings": {"url": "https://h.example"}, "actions": {"send": {"mapping": {"body": {"@nope": 1}}}}})).await.unwrap();
    assert_eq!(r.status(), 422, "a broken mapping is refused");

    // Valid: the signing secret is generated, sealed at rest and masked in every answer.
    let r = post(json!({"name": "hook", "integration": "webhook", "settings": {"url": "https://hooks.example.com/in"}})).await.unwrap();
    assert_eq!(r.status(), 201);
    let d: Value = r.json().await.unwrap();
    let id = d["id"].as_str().unwrap().to_string();
    assert_eq!(d["settings"]["signing_secret"], MASK);
    assert_eq!(d["enabled"], false);
    let reveal = |c: &reqwest::Client| c.post(server.at(&format!("/api/destinations/{id}/secrets/signing_secret/reveal"))).bearer_auth(&admin).send();
    let secret: Value = reveal(&c).await.unwrap().json().await.unwrap();
    let secret = secret["value"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_") && secret.len() > 20, "{secret}");
    let everything = [
        c.get(server.at("/api/destinations")).bearer_auth(&admin).send().await.unwrap().text().await.unwrap(),
        c.get(server.at(&format!("/api/destinations/{id}"))).bearer_auth(&admin).send().await.unwrap().text().await.unwrap(),
        String::from_utf8(env.run(&["workspace", "export"], None).stdout).unwrap(),
        server.log_text(),
    ];
    for text in &everything {
        assert!(!text.contains(&secret), "a secret leaked: {text}");
    }
    // Not in the database in plain text either.
    let stored: String = {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&env.database_url).await.unwrap();
        sqlx::query_scalar("SELECT settings || secrets FROM destinations").fetch_one(&mut conn).await.unwrap()
    };
    assert!(!stored.contains(&secret) && stored.contains("v1:"), "{stored}");

    // Enable at runtime; a PATCH with the masked value keeps the secret.
    let patch = json!({"enabled": true, "settings": {"url": "https://hooks.example.com/v2", "signing_secret": MASK}});
    let r = c.patch(server.at(&format!("/api/destinations/{id}"))).bearer_auth(&admin).json(&patch).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let d: Value = r.json().await.unwrap();
    assert_eq!((d["enabled"].as_bool(), d["settings"]["url"].as_str()), (Some(true), Some("https://hooks.example.com/v2")));
    let again: Value = reveal(&c).await.unwrap().json().await.unwrap();
    assert_eq!(again["value"], secret.as_str());
    // Rotation makes a new one; editors can do neither.
    let rotated: Value = c.post(server.at(&format!("/api/destinations/{id}/secrets/signing_secret/rotate"))).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    assert_ne!(rotated["value"], secret.as_str());
    let editor = env.token("e", "editor");
    let r = c.post(server.at(&format!("/api/destinations/{id}/secrets/signing_secret/reveal"))).bearer_auth(&editor).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let audit: Value = c.get(server.at("/api/audit")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"destination.secret.reveal") && actions.contains(&"destination.secret.rotate"), "{actions:?}");
    assert!(!audit.to_string().contains("whsec_"), "no secret in the audit log");

    // A password inside a URL setting is a secret too: masked, kept when sent back masked.
    let body = json!({"name": "mq", "integration": "rabbitmq", "settings": {"url": "amqp://guest:guest@127.0.0.1:5672/%2f"}});
    let d: Value = post(body).await.unwrap().json().await.unwrap();
    assert_eq!(d["settings"]["url"], format!("amqp://guest:{MASK}@127.0.0.1:5672/%2f"));
    let mq = d["id"].as_str().unwrap();
    let patch = json!({"settings": d["settings"].clone()});
    let r = c.patch(server.at(&format!("/api/destinations/{mq}"))).bearer_auth(&admin).json(&patch).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let conn: Value = c.post(server.at(&format!("/api/destinations/{mq}/test-connection"))).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(conn["ok"], true, "the stored password was kept: {conn}");
    let export = String::from_utf8(env.run(&["workspace", "export"], None).stdout).unwrap();
    assert!(export.contains(&format!("guest:{MASK}@")), "{export}");

    let r = c.delete(server.at(&format!("/api/destinations/{id}"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = c.get(server.at(&format!("/api/destinations/{id}"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), 404);
}
both!(destinations_are_validated_and_secrets_masked);

#[tokio::test]
async fn private_addresses_are_refused_unless_allowed() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let admin = env.token("a", "admin");
    let server = env.start().await;
    let c = server.client();
    for url in ["http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://[::1]:9/x", "http://169.254.169.254/latest"] {
        let body = json!({"name": "h", "integration": "webhook", "settings": {"url": url}});
        let r = c.post(server.at("/api/destinations")).bearer_auth(&admin).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 422, "{url}");
        let p: Value = r.json().await.unwrap();
        assert!(p.to_string().contains("private address"), "{url}: {p}");
    }
    // A host that does not resolve is not private: it is saved (and checked again at send time).
    let body = json!({"name": "h", "integration": "webhook", "settings": {"url": "https://no-such-host.invalid/x"}});
    let r = c.post(server.at("/api/destinations")).bearer_auth(&admin).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
}
