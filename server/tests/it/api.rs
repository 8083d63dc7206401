//! API conventions: bearer tokens, list pages and cursors, problems, the OpenAPI document.

use crate::both;
use crate::harness::Db;
use serde_json::{json, Value};

async fn tokens_from_the_cli_work_at_once_and_can_be_revoked(db: Db) {
    let env = crate::env_or_skip!(db);
    env.add_user("owner@example.com", "owner", "correct horse battery");
    let server = env.start().await;
    // Made while the server runs on the same data dir and database.
    let viewer = env.token("dashboards", "viewer");
    assert!(viewer.starts_with("sy_") && !viewer.contains(char::is_whitespace), "{viewer:?}");
    let c = server.client();
    let res = c.get(server.at("/api/sources")).bearer_auth(&viewer).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let page: Value = res.json().await.unwrap();
    assert_eq!(page, json!({"items": [], "next": null}));
    let res = c.get(server.at("/api/users")).bearer_auth(&viewer).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(c.get(server.at("/api/sources")).bearer_auth("sy_not_a_token").send().await.unwrap().status(), 401);

    let admin = env.token("automation", "admin");
    let tokens: Value = c.get(server.at("/api/tokens")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    let items = tokens["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["name"], "automation", "newest first");
    assert!(items.iter().all(|t| t.get("secret").is_none() && t.get("token_hash").is_none()));
    let viewer_id = items[1]["id"].as_str().unwrap();
    assert_eq!(c.delete(server.at(&format!("/api/tokens/{viewer_id}"))).bearer_auth(&admin).send().await.unwrap().status(), 204);
    assert_eq!(c.get(server.at("/api/sources")).bearer_auth(&viewer).send().await.unwrap().status(), 401, "revoked");

    // A token cannot outrank its maker; an admin's token may create a viewer token.
    let res = c.post(server.at("/api/tokens")).bearer_auth(&admin).json(&json!({"name": "x", "role": "owner"})).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let res = c.post(server.at("/api/tokens")).bearer_auth(&admin).json(&json!({"name": "x", "role": "viewer"})).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let made: Value = res.json().await.unwrap();
    let secret = made["secret"].as_str().unwrap();
    assert_eq!(c.get(server.at("/api/me")).bearer_auth(secret).send().await.unwrap().status(), 200);
    let audit: Value = c.get(server.at("/api/audit")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    let actions: Vec<String> = audit["items"].as_array().unwrap().iter().map(|e| format!("{} {}", e["actor"].as_str().unwrap(), e["action"].as_str().unwrap())).collect();
    assert!(actions.contains(&"token:automation token.revoke".to_string()), "{actions:?}");
    assert!(actions.contains(&"cli token.create".to_string()), "{actions:?}");
}
both!(tokens_from_the_cli_work_at_once_and_can_be_revoked);

async fn lists_page_newest_first_with_cursors(db: Db) {
    let env = crate::env_or_skip!(db);
    let names: Vec<String> = (0..5).map(|i| format!("src-{i}")).collect();
    let file = env.dir.path().join("ws.toml");
    let body: String = names.iter().map(|n| format!("[[sources]]\nname = \"{n}\"\n")).collect();
    std::fs::write(&file, body).unwrap();
    let out = env.run(&["workspace", "apply", file.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = env.token("t", "viewer");
    let server = env.start().await;
    let c = server.client();
    let mut seen = Vec::new();
    let mut url = server.at("/api/sources?limit=2");
    loop {
        let page: Value = c.get(&url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|s| s["name"].as_str().unwrap().to_string()));
        match page["next"].as_str() {
            Some(cursor) => url = server.at(&format!("/api/sources?limit=2&before={cursor}")),
            None => break,
        }
    }
    let mut newest_first = names.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    for bad in ["limit=0", "limit=1001"] {
        let res = c.get(server.at(&format!("/api/sources?{bad}"))).bearer_auth(&token).send().await.unwrap();
        assert_eq!(res.status(), 422, "{bad}");
        let p: Value = res.json().await.unwrap();
        assert_eq!(p["errors"][0]["field"], "limit", "{p}");
    }
    let res = c.get(server.at("/api/sources?limit=many")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}
both!(lists_page_newest_first_with_cursors);

#[tokio::test]
async fn malformed_bodies_get_a_problem_naming_the_position() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let server = env.start().await;
    let res = server.client().post(server.at("/api/auth/login")).header("content-type", "text/plain").body("{\"email\": ").send().await.unwrap();
    assert_eq!(res.status(), 400);
    let p: Value = res.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("line 1 column"), "{p}");
}

#[tokio::test]
async fn the_openapi_document_covers_every_route() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let server = env.start().await;
    let res = server.client().get(server.at("/api/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/auth/login", "post"),
        ("/api/auth/logout", "post"),
        ("/api/me", "get"),
        ("/api/setup", "post"),
        ("/api/users", "get"),
        ("/api/users", "post"),
        ("/api/users/{id}", "patch"),
        ("/api/users/{id}", "delete"),
        ("/api/tokens", "get"),
        ("/api/tokens", "post"),
        ("/api/tokens/{id}", "delete"),
        ("/api/sources", "get"),
        ("/api/sources", "post"),
        ("/api/sources/{id}", "get"),
        ("/api/sources/{id}", "patch"),
        ("/api/sources/{id}", "delete"),
        ("/api/sources/{id}/write-keys", "post"),
        ("/api/sources/{id}/write-keys/{key_id}", "delete"),
        ("/api/sources/{id}/events", "get"),
        ("/api/sources/{id}/rejections", "get"),
        ("/api/sources/{id}/live", "get"),
        ("/api/sources/{id}/snippets", "get"),
        ("/api/privacy/deletions", "post"),
        ("/api/privacy/suppressions", "get"),
        ("/api/privacy/suppressions/{id}", "delete"),
        ("/api/audit", "get"),
    ] {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} missing from the OpenAPI document");
    }
    let params = &paths["/api/sources"]["get"]["parameters"];
    let names: Vec<&str> = params.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["limit", "before"]);
}
