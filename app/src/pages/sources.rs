//! Sources: where events come from.

use crate::api;
use leptos::prelude::*;
use model::ListOut;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
struct SourceItem {
    id: String,
    name: String,
    write_key: Option<String>,
}

#[component]
pub fn Sources() -> impl IntoView {
    let list = LocalResource::new(|| api::get::<ListOut<SourceItem>>("/api/sources"));
    view! {
        <p class="lead">"A source is a website, app or server that sends events with its write key through the Segment-compatible tracking API."</p>
        <section class="card">
            {move || match list.get() {
                None => view! { <p>"Loading sources…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                Some(Ok(page)) if page.items.is_empty() => view! {
                    <p>"No sources yet. Declare them in a workspace file and run " <code>"switchyard workspace apply FILE"</code> "; creating them here arrives with the tracking API."</p>
                }.into_any(),
                Some(Ok(page)) => view! {
                    <table>
                        <thead><tr><th>"Name"</th><th>"Id"</th><th>"Write key"</th></tr></thead>
                        <tbody>
                            {page.items.into_iter().map(|s| view! {
                                <tr><td>{s.name}</td><td><code>{s.id}</code></td><td><code>{s.write_key.unwrap_or_default()}</code></td></tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            }}
        </section>
    }
}
