//! Workspace as code: apply, export, apply again changes nothing; secrets stay references.

use crate::both;
use crate::harness::Db;
use serde_json::Value;

const FILE: &str = r#"
[[sources]]
name = "web"
write_key = "wk_web_example"

[[sources]]
name = "backend"

[[destinations]]
name = "orders-hook"
integration = "webhook"
sources = ["web", "backend"]
enabled = true
[destinations.settings]
url = "http://93.184.216.34/hook"
signing_secret = { env = "SY_TEST_HOOK_TOKEN" }
method = "POST"
[destinations.delivery]
max_attempts = 5
schedule = [1.0, 10.0]
"#;

const SECRET: &str = "whsec_c2VjcmV0LXZhbHVlLWZvci10ZXN0cw==";

async fn apply_export_apply_is_idempotent(db: Db) {
    let env = crate::env_or_skip!(db);
    let file = env.dir.path().join("workspace.toml");
    std::fs::write(&file, FILE).unwrap();
    let apply = |path: &std::path::Path| {
        let mut cmd = env.cli();
        let out = cmd.env("SY_TEST_HOOK_TOKEN", SECRET).args(["workspace", "apply", path.to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let first = apply(&file);
    assert!(first.contains("3 created, 0 updated, 0 unchanged"), "{first}");

    let export = env.run(&["workspace", "export"], None);
    assert!(export.status.success());
    let exported = String::from_utf8(export.stdout).unwrap();
    assert!(!exported.contains(SECRET), "secrets are never exported:\n{exported}");
    assert!(exported.contains("SY_TEST_HOOK_TOKEN"), "{exported}");
    assert!(exported.contains("wk_web_example"), "{exported}");
    let parsed: toml::Value = toml::from_str(&exported).unwrap();
    let dest = &parsed["destinations"][0];
    assert_eq!(dest["settings"]["signing_secret"]["env"].as_str(), Some("SY_TEST_HOOK_TOKEN"));
    assert_eq!(dest["sources"].as_array().unwrap().len(), 2);
    assert_eq!(dest["delivery"]["max_attempts"].as_integer(), Some(5));

    let again = env.dir.path().join("exported.toml");
    std::fs::write(&again, &exported).unwrap();
    let second = apply(&again);
    assert!(second.contains("0 created, 0 updated, 3 unchanged"), "{second}");
    let second = apply(&file);
    assert!(second.contains("0 created, 0 updated, 3 unchanged"), "{second}");
    let export2 = String::from_utf8(env.run(&["workspace", "export"], None).stdout).unwrap();
    assert_eq!(exported, export2);

    // A change is applied and audited; the API sees the sources.
    std::fs::write(&file, FILE.replace("method = \"POST\"", "method = \"PUT\"")).unwrap();
    let third = apply(&file);
    assert!(third.contains("0 created, 1 updated, 2 unchanged"), "{third}");
    let token = env.token("t", "admin");
    let server = env.start().await;
    let c = server.client();
    let sources: Value = c.get(server.at("/api/sources")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = sources["items"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["backend", "web"]);
    assert_eq!(sources["items"][1]["write_key"], "wk_web_example");
    let audit: Value = c.get(server.at("/api/audit")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "destination.update").count(), 1, "{actions:?}");
    assert_eq!(actions.iter().filter(|a| **a == "source.create").count(), 2, "{actions:?}");
    assert!(!audit.to_string().contains(SECRET), "the audit log holds no secret values");
}
both!(apply_export_apply_is_idempotent);

#[tokio::test]
async fn bad_files_exit_2_naming_the_problem() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let cases = [
        ("[[sources]]\nname = \"web\"\ncolour = \"red\"\n", "colour"),
        ("[[destinations]]\nname = \"d\"\nintegration = \"webhook\"\nsources = [\"nope\"]\n", "source 'nope'"),
        ("[[destinations]]\nname = \"d\"\nintegration = \"webhook\"\n[destinations.settings]\nkey = { env = \"SY_TEST_UNSET_VAR\" }\n", "SY_TEST_UNSET_VAR"),
        ("[[sources]]\nname = \"has space\"\n", "has space"),
        ("[[destinations]]\nname = \"d\"\nintegration = \"webhook\"\n[destinations.settings]\nmethod = \"GET\"\n", "destination 'd': settings.url is required"),
        ("[[destinations]]\nname = \"d\"\nintegration = \"no-such-thing\"\n", "'no-such-thing' is not in the catalog"),
        ("[[sources]]\nname = \"s\"\n[[destinations]]\nname = \"d\"\nintegration = \"slack\"\n[destinations.settings]\nwebhook_url = \"http://x.example\"\n", "settings.webhook_url must start with https://"),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let file = env.dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let out = env.run(&["workspace", "apply", file.to_str().unwrap()], None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(needle), "{text}: {err}");
    }
    let export = String::from_utf8(env.run(&["workspace", "export"], None).stdout).unwrap();
    assert!(!export.contains("[[sources]]"), "a refused file applies nothing: {export}");
}

#[tokio::test]
async fn private_destination_urls_are_refused_unless_allowed() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let file = env.dir.path().join("private.toml");
    let text = "[[sources]]\nname = \"s\"\n[[destinations]]\nname = \"local\"\nintegration = \"webhook\"\nsources = [\"s\"]\n[destinations.settings]\nurl = \"http://127.0.0.1:9000/hook\"\n";
    std::fs::write(&file, text).unwrap();
    let out = env.run(&["workspace", "apply", file.to_str().unwrap()], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("destination 'local': settings.url 127.0.0.1 is a private address"), "{err}");
    let export = String::from_utf8(env.run(&["workspace", "export"], None).stdout).unwrap();
    assert!(!export.contains("[[sources]]"), "a refused file applies nothing: {export}");
    // The environment variable allows it (tests and local development).
    let out = env.cli().env("SWITCHYARD_ALLOW_PRIVATE_DESTINATIONS", "true").args(["workspace", "apply", file.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn serve_applies_a_workspace_before_listening_and_refuses_a_bad_one() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let good = env.dir.path().join("good.toml");
    std::fs::write(&good, "[[sources]]\nname = \"web\"\nwrite_key = \"wk_web_example\"\n").unwrap();
    let server = env.start_with(&["--workspace", good.to_str().unwrap()]).await;
    let token = env.token("t", "viewer");
    let sources: Value = server.client().get(server.at("/api/sources")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(sources["items"][0]["name"], "web");
    drop(server);

    let bad = env.dir.path().join("bad.toml");
    std::fs::write(&bad, "[[sources]]\nnam = \"web\"\n").unwrap();
    let out = env.run(&["serve", "--listen", "127.0.0.1:0", "--workspace", bad.to_str().unwrap()], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("nam"), "{err}");
    assert!(!err.contains("listening on"), "nothing was bound: {err}");
}
