//! The frame of every signed-in page: navigation, who is signed in, sign-out.

use crate::api;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use model::MeOut;

/// The signed-in user, once known (after hydration).
#[derive(Clone, Copy)]
pub struct CurrentUser(pub RwSignal<Option<MeOut>>);

const NAV: [(&str, &str); 7] = [
    ("/", "Overview"),
    ("/sources", "Sources"),
    ("/destinations", "Destinations"),
    ("/catalog", "Catalog"),
    ("/debugger", "Debugger"),
    ("/runs", "Runs"),
    ("/settings", "Settings"),
];

#[component]
pub fn Layout(title: &'static str, children: Children) -> impl IntoView {
    let me = RwSignal::new(None::<MeOut>);
    provide_context(CurrentUser(me));
    let loaded = LocalResource::new(|| api::get::<MeOut>("/api/me"));
    Effect::new(move || match loaded.get() {
        Some(Ok(user)) => me.set(Some(user)),
        Some(Err(e)) if e.status == 401 => api::go("/login"),
        _ => {}
    });
    let sign_out = move |_| {
        leptos::task::spawn_local(async {
            let _ = api::post::<serde_json::Value>("/api/auth/logout", &serde_json::json!({})).await;
            api::go("/login");
        });
    };
    view! {
        <Title text=title/>
        <div class="frame">
            <nav class="side" aria-label="Main">
                <p class="brand">"Switchyard"</p>
                <ul>
                    {NAV.iter().map(|(href, label)| view! { <li><A href=*href exact=true>{*label}</A></li> }).collect_view()}
                </ul>
                <div class="who">
                    {move || me.get().map(|u| view! {
                        <p><span class="email">{u.email}</span>" "<span class="role">{u.role.to_string()}</span></p>
                    })}
                    <button type="button" class="link" on:click=sign_out>"Sign out"</button>
                </div>
            </nav>
            <main class="page">
                <h1>{title}</h1>
                {children()}
            </main>
        </div>
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    view! {
        <Title text="Not found"/>
        <main class="auth">
            <div class="card">
                <h1>"Page not found"</h1>
                <p><a href="/">"Back to the overview"</a></p>
            </div>
        </main>
    }
}
