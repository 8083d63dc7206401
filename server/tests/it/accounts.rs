//! Sign-in, sessions, roles, CSRF, the login rate limit, the setup link, the audit log.

use crate::both;
use crate::harness::Db;
use serde_json::{json, Value};

const PW: &str = "correct horse battery";

async fn users_sign_in_and_roles_are_enforced(db: Db) {
    let env = crate::env_or_skip!(db);
    env.add_user("owner@example.com", "owner", PW);
    env.add_user("viewer@example.com", "viewer", PW);
    let server = env.start().await;

    let anon = server.client();
    let res = anon.get(server.at("/api/sources")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["content-type"], "application/problem+json");

    let wrong = anon
        .post(server.at("/api/auth/login"))
        .json(&json!({"email": "owner@example.com", "password": "nope nope nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let p: Value = wrong.json().await.unwrap();
    assert_eq!(p["type"], "https://switchyard.dev/problems/bad-credentials");

    let owner = server.login("owner@example.com", PW).await;
    let me: Value = owner.get(server.at("/api/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["email"], "owner@example.com");
    assert_eq!(me["role"], "owner");
    assert_eq!(owner.get(server.at("/")).send().await.unwrap().status(), 200, "signed-in users see pages");

    let viewer = server.login("viewer@example.com", PW).await;
    assert_eq!(viewer.get(server.at("/api/sources")).send().await.unwrap().status(), 200);
    let denied = viewer
        .post(server.at("/api/users"))
        .json(&json!({"email": "x@example.com", "password": PW, "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let p: Value = denied.json().await.unwrap();
    assert_eq!(p["type"], "https://switchyard.dev/problems/forbidden");
    assert_eq!(viewer.get(server.at("/api/users")).send().await.unwrap().status(), 403);

    // Owners add, re-role and remove users; the new user can sign in at once.
    let created = owner
        .post(server.at("/api/users"))
        .json(&json!({"email": "Editor@Example.com", "password": PW, "role": "editor"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let editor: Value = created.json().await.unwrap();
    assert_eq!(editor["email"], "editor@example.com");
    let editor_id = editor["id"].as_str().unwrap();
    server.login("editor@example.com", PW).await;
    let patched = owner.patch(server.at(&format!("/api/users/{editor_id}"))).json(&json!({"role": "admin"})).send().await.unwrap();
    assert_eq!(patched.status(), 200);
    assert_eq!(patched.json::<Value>().await.unwrap()["role"], "admin");
    let dup = owner
        .post(server.at("/api/users"))
        .json(&json!({"email": "editor@example.com", "password": PW, "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), 409);
    assert_eq!(owner.delete(server.at(&format!("/api/users/{editor_id}"))).send().await.unwrap().status(), 204);

    // The last owner can be neither demoted nor removed.
    let owner_id = me["id"].as_str().unwrap();
    let demote = owner.patch(server.at(&format!("/api/users/{owner_id}"))).json(&json!({"role": "viewer"})).send().await.unwrap();
    assert_eq!(demote.status(), 409);

    // Validation problems list each failing field.
    let bad = owner
        .post(server.at("/api/users"))
        .json(&json!({"email": "not-an-email", "password": "short", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let p: Value = bad.json().await.unwrap();
    let fields: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["email", "password"], "{p}");

    // Logout ends the session.
    assert_eq!(viewer.post(server.at("/api/auth/logout")).send().await.unwrap().status(), 204);
    assert_eq!(viewer.get(server.at("/api/me")).send().await.unwrap().status(), 401);

    // Every change is in the audit log, with who did it.
    let audit: Value = owner.get(server.at("/api/audit")).send().await.unwrap().json().await.unwrap();
    let entries: Vec<(String, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap().to_string(), e["action"].as_str().unwrap().to_string()))
        .collect();
    for want in [
        ("cli", "user.create"),
        ("user:owner@example.com", "user.create"),
        ("user:owner@example.com", "user.update"),
        ("user:owner@example.com", "user.delete"),
    ] {
        assert!(entries.contains(&(want.0.to_string(), want.1.to_string())), "{want:?} missing from {entries:?}");
    }
}
both!(users_sign_in_and_roles_are_enforced);

#[tokio::test]
async fn quick_failures_are_rate_limited() {
    let env = crate::env_or_skip!(Db::Sqlite);
    env.add_user("ann@example.com", "admin", PW);
    let server = env.start().await;
    let c = server.client();
    let attempt = |password: &'static str| {
        let c = c.clone();
        let url = server.at("/api/auth/login");
        async move {
            c.post(url).json(&json!({"email": "ann@example.com", "password": password})).send().await.unwrap()
        }
    };
    for _ in 0..5 {
        assert_eq!(attempt("wrong password").await.status(), 401);
    }
    let limited = attempt("wrong password").await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(limited.headers()["content-type"], "application/problem+json");
    // Even the right password waits out the window.
    assert_eq!(attempt(PW).await.status(), 429);
}

#[tokio::test]
async fn cookie_requests_from_other_sites_are_refused() {
    let env = crate::env_or_skip!(Db::Sqlite);
    env.add_user("ann@example.com", "owner", PW);
    let server = env.start().await;
    let owner = server.login("ann@example.com", PW).await;
    let body = json!({"email": "x@example.com", "password": PW, "role": "viewer"});
    let forged = owner.post(server.at("/api/users")).header("Origin", "http://evil.example").json(&body).send().await.unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(forged.json::<Value>().await.unwrap()["type"], "https://switchyard.dev/problems/cross-origin");
    let forged = owner.post(server.at("/api/users")).header("Sec-Fetch-Site", "cross-site").json(&body).send().await.unwrap();
    assert_eq!(forged.status(), 403);
    let host = server.url.trim_start_matches("http://").to_string();
    let same = owner
        .post(server.at("/api/users"))
        .header("Origin", format!("http://{host}"))
        .header("Sec-Fetch-Site", "same-origin")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 201);
    // Bearer tokens need no CSRF protection: a browser never sends them by itself.
    let token = env.token("ci", "admin");
    let with_token = server
        .client()
        .post(server.at("/api/users"))
        .bearer_auth(&token)
        .header("Origin", "http://evil.example")
        .json(&json!({"email": "y@example.com", "password": PW, "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), 201);
}

async fn the_setup_link_creates_the_first_owner_once(db: Db) {
    let env = crate::env_or_skip!(db);
    let server = env.start().await;
    let log = server.log_text();
    let link = log.split_whitespace().find(|w| w.contains("/setup?token=")).expect("a setup link is printed").to_string();
    let link = link.trim_start_matches("link=").to_string();
    let token = link.split("token=").nth(1).unwrap().to_string();
    assert!(link.starts_with(&server.url), "{link}");
    let page = server.client().get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);

    let c = server.client();
    let bad = c.post(server.at("/api/setup")).json(&json!({"token": "guess", "email": "o@example.com", "password": PW})).send().await.unwrap();
    assert_eq!(bad.status(), 403);
    let ok = c.post(server.at("/api/setup")).json(&json!({"token": token, "email": "o@example.com", "password": PW})).send().await.unwrap();
    assert_eq!(ok.status(), 201, "{}", ok.text().await.unwrap());
    let me: Value = c.get(server.at("/api/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["role"], "owner");
    let again = server
        .client()
        .post(server.at("/api/setup"))
        .json(&json!({"token": token, "email": "p@example.com", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 403, "the link works once");
}
both!(the_setup_link_creates_the_first_owner_once);
