//! The admin app: server-rendered Leptos pages that sign-in guards, and the hydrate bundle
//! (wasm, JS, CSS) embedded in the binary.

use super::auth::session_user;
use super::AppState;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use leptos_axum::{generate_route_list, LeptosRoutes};
use rust_embed::RustEmbed;

/// `target/site/pkg`, written by `cargo xtask build` (the folder comes from `build.rs`).
#[derive(RustEmbed)]
#[folder = "$SWITCHYARD_PKG_DIR"]
struct Pkg;

pub fn router(state: &AppState) -> Router<AppState> {
    let routes = generate_route_list(app::App);
    let options = state.leptos.clone();
    Router::new()
        .leptos_routes(state, routes, move || app::shell(options.clone()))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_login))
        .route("/pkg/{*path}", get(asset))
}

const PUBLIC_PAGES: [&str; 2] = ["/login", "/setup"];

/// Pages other than sign-in and setup need a signed-in user: others go to the sign-in page.
async fn require_login(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if PUBLIC_PAGES.contains(&path.as_str()) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    match session_user(&parts, &state).await {
        Ok(Some(_)) => next.run(Request::from_parts(parts, body)).await,
        Ok(None) => Redirect::to("/login").into_response(),
        Err(e) => e.into_response(),
    }
}

async fn asset(Path(path): Path<String>) -> Response {
    match Pkg::get(&path) {
        Some(file) => {
            let mime = mime_guess::from_path(&path).first_or_octet_stream();
            (
                [(header::CONTENT_TYPE, mime.as_ref().to_string()), (header::CACHE_CONTROL, "no-cache".to_string())],
                file.data.into_owned(),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, format!("no asset {path}; run `cargo xtask build` to build the admin app\n"))
            .into_response(),
    }
}
