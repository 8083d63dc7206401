//! Sign-in and the one-time setup of the first owner.

use crate::api;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use model::MeOut;
use serde_json::json;

/// Posts credentials; on success the whole page goes to the overview, else the error shows.
fn post_then_home(url: &'static str, body: serde_json::Value, error: RwSignal<Option<String>>, busy: RwSignal<bool>) {
    busy.set(true);
    error.set(None);
    leptos::task::spawn_local(async move {
        match api::post::<MeOut>(url, &body).await {
            Ok(_) => api::go("/"),
            Err(e) => {
                error.set(Some(e.message));
                busy.set(false);
            }
        }
    });
}

#[component]
pub fn Login() -> impl IntoView {
    let email = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body = json!({ "email": email.get_untracked(), "password": password.get_untracked() });
        post_then_home("/api/auth/login", body, error, busy);
    };
    view! {
        <Title text="Sign in"/>
        <main class="auth">
            <form class="card" on:submit=submit>
                <h1>"Sign in to Switchyard"</h1>
                <label for="login-email">"Email"</label>
                <input id="login-email" type="email" name="email" autocomplete="username" required bind:value=email/>
                <label for="login-password">"Password"</label>
                <input id="login-password" type="password" name="password" autocomplete="current-password" required bind:value=password/>
                {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
                <button type="submit" disabled=move || busy.get()>"Sign in"</button>
                <p class="hint">"First start? Open the setup link the server printed to create the owner."</p>
            </form>
        </main>
    }
}

#[component]
pub fn Setup() -> impl IntoView {
    let query = use_query_map();
    let email = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let token = query.with_untracked(|q| q.get("token").unwrap_or_default());
        let body = json!({ "token": token, "email": email.get_untracked(), "password": password.get_untracked() });
        post_then_home("/api/setup", body, error, busy);
    };
    view! {
        <Title text="Create the owner"/>
        <main class="auth">
            <form class="card" on:submit=submit>
                <h1>"Create the owner"</h1>
                <p>"This account can do everything, including adding the rest of your team."</p>
                <label for="setup-email">"Email"</label>
                <input id="setup-email" type="email" name="email" autocomplete="username" required bind:value=email/>
                <label for="setup-password">"Password"</label>
                <input id="setup-password" type="password" name="password" autocomplete="new-password" minlength="8" required bind:value=password/>
                {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
                <button type="submit" disabled=move || busy.get()>"Create owner"</button>
            </form>
        </main>
    }
}
