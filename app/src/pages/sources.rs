//! Sources: where events come from. The list with a create form, and a page per source with its
//! write keys, SDK snippets, recent events and rejected messages.

use super::layout::CurrentUser;
use crate::api;
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;
use model::{ListOut, Role};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Clone, Deserialize)]
struct WriteKey {
    id: String,
    key: String,
    expires_at: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
struct SourceItem {
    id: String,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    write_key: Option<String>,
    #[serde(default)]
    write_keys: Vec<WriteKey>,
}

fn can_edit() -> Signal<bool> {
    let CurrentUser(me) = expect_context::<CurrentUser>();
    Signal::derive(move || me.get().is_some_and(|u| u.role >= Role::Editor))
}

#[component]
pub fn Sources() -> impl IntoView {
    let version = RwSignal::new(0u32);
    let list = LocalResource::new(move || {
        version.get();
        api::get::<ListOut<SourceItem>>("/api/sources")
    });
    let editable = can_edit();
    view! {
        <p class="lead">"A source is a website, app or server that sends events with its write key through the Segment-compatible tracking API (" <code>"/v1/track"</code> ", " <code>"/v1/batch"</code> ", …)."</p>
        <section class="card">
            {move || match list.get() {
                None => view! { <p>"Loading sources…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                Some(Ok(page)) if page.items.is_empty() => view! { <p>"No sources yet."</p> }.into_any(),
                Some(Ok(page)) => view! {
                    <table>
                        <thead><tr><th>"Name"</th><th>"Type"</th><th>"Write key"</th></tr></thead>
                        <tbody>
                            {page.items.into_iter().map(|s| view! {
                                <tr>
                                    <td><A href=format!("/sources/{}", s.id)>{s.name}</A></td>
                                    <td>{s.kind}</td>
                                    <td><code>{s.write_key.unwrap_or_default()}</code></td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            }}
        </section>
        <Show when=move || editable.get()>
            <CreateSource on_created=move || version.update(|v| *v += 1)/>
        </Show>
    }
}

#[component]
fn CreateSource(on_created: impl Fn() + Copy + Send + Sync + 'static) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let kind = RwSignal::new("web".to_string());
    let error = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body = json!({ "name": name.get_untracked(), "type": kind.get_untracked() });
        leptos::task::spawn_local(async move {
            match api::post::<Value>("/api/sources", &body).await {
                Ok(_) => {
                    error.set(None);
                    name.set(String::new());
                    on_created();
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    view! {
        <form class="card add-user" on:submit=submit>
            <h2>"Create a source"</h2>
            <label for="source-name">"Name"</label>
            <input id="source-name" required bind:value=name placeholder="web-shop"/>
            <label for="source-type">"Type"</label>
            <select id="source-type" bind:value=kind>
                <option value="web">"web"</option>
                <option value="server">"server"</option>
                <option value="mobile">"mobile"</option>
            </select>
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            <button type="submit">"Create source"</button>
        </form>
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Snippets {
    recommended: Vec<String>,
    analytics_js: String,
    analytics_node: String,
    rudder_python: String,
    rudder_js: String,
}

#[derive(Debug, Clone, Deserialize)]
struct EventItem {
    #[serde(rename = "messageId")]
    message_id: String,
    #[serde(rename = "type")]
    kind: String,
    payload: Value,
}

#[derive(Debug, Clone, Deserialize)]
struct RejectionItem {
    #[serde(rename = "messageId")]
    message_id: Option<String>,
    reason: String,
}

#[component]
pub fn SourceDetail() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id").unwrap_or_default());
    let version = RwSignal::new(0u32);
    let source = LocalResource::new(move || {
        version.get();
        let id = id();
        async move { api::get::<SourceItem>(&format!("/api/sources/{id}")).await }
    });
    let snippets = LocalResource::new(move || {
        let id = id();
        async move { api::get::<Snippets>(&format!("/api/sources/{id}/snippets")).await }
    });
    let events = LocalResource::new(move || {
        version.get();
        let id = id();
        async move { api::get::<ListOut<EventItem>>(&format!("/api/sources/{id}/events?limit=20")).await }
    });
    let rejections = LocalResource::new(move || {
        version.get();
        let id = id();
        async move { api::get::<ListOut<RejectionItem>>(&format!("/api/sources/{id}/rejections?limit=20")).await }
    });
    let editable = can_edit();
    let error = RwSignal::new(None::<String>);
    let act = move |method: &'static str, url: String, body: Option<Value>| {
        leptos::task::spawn_local(async move {
            match api::send::<Value>(method, &url, body.as_ref()).await {
                Ok(_) => error.set(None),
                Err(e) => error.set(Some(e.message)),
            }
            version.update(|v| *v += 1);
        });
    };
    view! {
        {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        {move || match source.get() {
            None => view! { <p>"Loading…"</p> }.into_any(),
            Some(Err(e)) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
            Some(Ok(s)) => {
                let sid = s.id.clone();
                let sid2 = s.id.clone();
                view! {
                    <section class="card">
                        <h2>{s.name.clone()}</h2>
                        <p>"Type: " {s.kind.clone()} " · Id: " <code>{s.id.clone()}</code></p>
                        <h3>"Write keys"</h3>
                        <table>
                            <thead><tr><th>"Key"</th><th>"Expires"</th><th></th></tr></thead>
                            <tbody>
                                {s.write_keys.iter().map(|k| {
                                    let url = format!("/api/sources/{}/write-keys/{}", s.id, k.id);
                                    let label = format!("Revoke {}", k.key);
                                    view! {
                                        <tr>
                                            <td><code>{k.key.clone()}</code></td>
                                            <td>{k.expires_at.map(|_| "after the rotation overlap").unwrap_or("never")}</td>
                                            <td><Show when=move || editable.get()>
                                                <button type="button" class="danger" on:click={
                                                    let url = url.clone();
                                                    move |_| act("DELETE", url.clone(), None)
                                                }>{label.clone()}</button>
                                            </Show></td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                        <Show when=move || editable.get()>
                            <button type="button" on:click={
                                let sid = sid.clone();
                                move |_| act("POST", format!("/api/sources/{sid}/write-keys"), Some(json!({})))
                            }>"Add a write key"</button>
                            " "
                            <button type="button" on:click={
                                let sid = sid2.clone();
                                move |_| act("POST", format!("/api/sources/{sid}/write-keys"), Some(json!({"overlap_seconds": 86400})))
                            }>"Rotate (old keys stop in 24 h)"</button>
                        </Show>
                    </section>
                }.into_any()
            }
        }}
        <section class="card">
            <h2>"Send events"</h2>
            {move || snippets.get().and_then(Result::ok).map(|s| {
                let all = [
                    ("analytics_js", "analytics.js (browser)", s.analytics_js),
                    ("rudder_js", "RudderStack JS (browser)", s.rudder_js),
                    ("analytics_node", "Segment Node.js", s.analytics_node),
                    ("rudder_python", "RudderStack Python", s.rudder_python),
                ];
                let mut ordered: Vec<_> = all.into_iter().collect();
                ordered.sort_by_key(|(k, _, _)| !s.recommended.iter().any(|r| r == k));
                ordered.into_iter().map(|(_, title, code)| view! {
                    <h3>{title}</h3>
                    <pre><code>{code}</code></pre>
                }).collect_view()
            })}
        </section>
        <section class="card">
            <h2>"Recent events"</h2>
            {move || match events.get() {
                Some(Ok(page)) if !page.items.is_empty() => view! {
                    <table>
                        <thead><tr><th>"Type"</th><th>"Message id"</th><th>"Received"</th></tr></thead>
                        <tbody>{page.items.into_iter().map(|e| view! {
                            <tr><td>{e.kind}</td><td><code>{e.message_id}</code></td>
                            <td>{e.payload.get("receivedAt").and_then(Value::as_str).unwrap_or("").to_string()}</td></tr>
                        }).collect_view()}</tbody>
                    </table>
                }.into_any(),
                Some(Ok(_)) => view! { <p>"No events yet: send one with a snippet above."</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error">{e.message}</p> }.into_any(),
                None => view! { <p>"Loading…"</p> }.into_any(),
            }}
            <h3>"Rejected messages"</h3>
            {move || match rejections.get() {
                Some(Ok(page)) if !page.items.is_empty() => view! {
                    <ul>{page.items.into_iter().map(|r| view! {
                        <li><code>{r.message_id.unwrap_or_else(|| "(no id)".into())}</code>": " {r.reason}</li>
                    }).collect_view()}</ul>
                }.into_any(),
                Some(Ok(_)) => view! { <p>"None."</p> }.into_any(),
                _ => view! { <p></p> }.into_any(),
            }}
        </section>
    }
}
