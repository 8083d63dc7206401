//! The overview and the pages whose features arrive in later releases: each says plainly what
//! will live there.

use leptos::prelude::*;

#[component]
pub fn Overview() -> impl IntoView {
    view! {
        <p class="lead">"Switchyard collects events from your websites, apps and servers and delivers them to the tools you use."</p>
        <section class="card">
            <h2>"What lives here"</h2>
            <p>"Event volume per source, delivery success per destination and recent failures will be summarised on this page once events flow."</p>
            <p>"Start with " <a href="/sources">"Sources"</a> " to see where events come from, and " <a href="/settings">"Settings"</a> " to invite your team."</p>
        </section>
    }
}

#[component]
pub fn Destinations() -> impl IntoView {
    view! {
        <section class="card">
            <p>"Destinations are the tools your events are delivered to: webhooks, analytics and marketing tools, and brokers such as NATS, RabbitMQ, MQTT, Redis and PostgreSQL."</p>
            <p>"Here you will add a destination from the catalog, fill in its settings, map fields with a live preview, send a test delivery and enable it. Until then, destinations can be declared in a workspace file with " <code>"switchyard workspace apply"</code> "."</p>
        </section>
    }
}

#[component]
pub fn Catalog() -> impl IntoView {
    view! {
        <section class="card">
            <p>"The catalog will list every integration Switchyard can deliver to, with its logo, categories and capabilities, and the settings it needs."</p>
        </section>
    }
}

#[component]
pub fn Debugger() -> impl IntoView {
    view! {
        <section class="card">
            <p>"The live event debugger will show events as they arrive, how each was mapped for every destination, and every delivery attempt with its request and response."</p>
        </section>
    }
}

#[component]
pub fn Runs() -> impl IntoView {
    view! {
        <section class="card">
            <p>"Runs will show onboarding, scheduled syncs, test deliveries and replays, each as a tree of streams you can follow, retry or continue after a crash."</p>
        </section>
    }
}
