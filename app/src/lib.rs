//! Switchyard's admin app: server-rendered by the `server` crate (`ssr`), hydrated in the browser
//! (`hydrate`). Pages talk to the JSON API under `/api` once hydrated.

pub mod api;
mod pages;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;
use pages::*;

/// The HTML document around the app.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" href="data:,"/>
                <link rel="stylesheet" href="/pkg/app.css"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Title formatter=|page: String| format!("{page} · Switchyard")/>
        <Router>
            <Routes fallback=|| view! { <NotFound/> }>
                <Route path=path!("/login") view=Login/>
                <Route path=path!("/setup") view=Setup/>
                <Route path=path!("/") view=|| view! { <Layout title="Overview"><Overview/></Layout> }/>
                <Route path=path!("/sources") view=|| view! { <Layout title="Sources"><Sources/></Layout> }/>
                <Route path=path!("/sources/:id") view=|| view! { <Layout title="Source"><SourceDetail/></Layout> }/>
                <Route path=path!("/destinations") view=|| view! { <Layout title="Destinations"><Destinations/></Layout> }/>
                <Route path=path!("/catalog") view=|| view! { <Layout title="Catalog"><Catalog/></Layout> }/>
                <Route path=path!("/debugger") view=|| view! { <Layout title="Debugger"><Debugger/></Layout> }/>
                <Route path=path!("/runs") view=|| view! { <Layout title="Runs"><Runs/></Layout> }/>
                <Route path=path!("/settings") view=|| view! { <Layout title="Settings"><Settings/></Layout> }/>
            </Routes>
        </Router>
    }
}

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
    // Lets tests (and curious people) see that the page is live.
    if let Some(window) = web_sys::window() {
        let _ = js_sys::Reflect::set(&window, &"__switchyard_hydrated".into(), &true.into());
    }
}
