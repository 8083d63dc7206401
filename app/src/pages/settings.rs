//! Settings: owners and admins add users, change roles and remove users.

use super::layout::CurrentUser;
use crate::api;
use leptos::prelude::*;
use model::{ListOut, Role, UserOut};
use serde_json::json;

#[component]
pub fn Settings() -> impl IntoView {
    let CurrentUser(me) = expect_context::<CurrentUser>();
    view! {
        <section class="card">
            <h2>"Users"</h2>
            {move || match me.get() {
                None => view! { <p>"Loading…"</p> }.into_any(),
                Some(u) if !u.role.can_manage_users() => view! {
                    <p>"Only owners and admins manage users. You are signed in as " {u.role.to_string()} "."</p>
                }.into_any(),
                Some(u) => view! { <UserAdmin my_role=u.role my_id=u.id/> }.into_any(),
            }}
        </section>
    }
}

#[component]
fn UserAdmin(my_role: Role, my_id: String) -> impl IntoView {
    let version = RwSignal::new(0u32);
    let users = LocalResource::new(move || {
        version.get();
        api::get::<ListOut<UserOut>>("/api/users")
    });
    let error = RwSignal::new(None::<String>);
    let reload = move || version.update(|v| *v += 1);
    let roles: Vec<Role> = Role::ALL.into_iter().filter(|r| *r <= my_role).collect();
    let my_id = StoredValue::new(my_id);
    let row_roles = StoredValue::new(roles.clone());
    view! {
        {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        {move || match users.get() {
            None => view! { <p>"Loading users…"</p> }.into_any(),
            Some(Err(e)) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
            Some(Ok(page)) => view! {
                <table class="users">
                    <thead><tr><th>"Email"</th><th>"Role"</th><th></th></tr></thead>
                    <tbody>
                        {page.items.into_iter().map(|u| {
                            let id = u.id.clone();
                            let id2 = u.id.clone();
                            let is_me = my_id.with_value(|m| *m == u.id);
                            let editable = u.role <= my_role;
                            let change = move |ev: leptos::ev::Event| {
                                let role = event_target_value(&ev);
                                let id = id.clone();
                                leptos::task::spawn_local(async move {
                                    match api::send::<UserOut>("PATCH", &format!("/api/users/{id}"), Some(&json!({ "role": role }))).await {
                                        Ok(_) => error.set(None),
                                        Err(e) => error.set(Some(e.message)),
                                    }
                                    reload();
                                });
                            };
                            let remove = move |_| {
                                let id = id2.clone();
                                leptos::task::spawn_local(async move {
                                    match api::send::<serde_json::Value>("DELETE", &format!("/api/users/{id}"), None).await {
                                        Ok(_) => error.set(None),
                                        Err(e) => error.set(Some(e.message)),
                                    }
                                    reload();
                                });
                            };
                            let select_id = format!("role-{}", u.id);
                            view! {
                                <tr>
                                    <td>{u.email.clone()}{is_me.then_some(" (you)")}</td>
                                    <td>
                                        <label class="inline" for=select_id.clone()>{format!("Role of {}", u.email)}</label>
                                        <select id=select_id on:change=change disabled=!editable>
                                            {row_roles.get_value().into_iter().chain((!editable).then_some(u.role)).map(|r| view! {
                                                <option value=r.as_str() selected=r == u.role>{r.as_str()}</option>
                                            }).collect_view()}
                                        </select>
                                    </td>
                                    <td>
                                        <button type="button" class="danger" on:click=remove disabled=!editable || is_me>
                                            {format!("Remove {}", u.email)}
                                        </button>
                                    </td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            }.into_any(),
        }}
        <AddUser roles=roles on_added=reload/>
    }
}

#[component]
fn AddUser(roles: Vec<Role>, on_added: impl Fn() + Copy + Send + Sync + 'static) -> impl IntoView {
    let email = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let role = RwSignal::new("viewer".to_string());
    let error = RwSignal::new(None::<String>);
    let done = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body = json!({ "email": email.get_untracked(), "password": password.get_untracked(), "role": role.get_untracked() });
        leptos::task::spawn_local(async move {
            match api::post::<UserOut>("/api/users", &body).await {
                Ok(u) => {
                    error.set(None);
                    done.set(Some(format!("Added {} as {}.", u.email, u.role)));
                    email.set(String::new());
                    password.set(String::new());
                    on_added();
                }
                Err(e) => {
                    done.set(None);
                    error.set(Some(e.message));
                }
            }
        });
    };
    view! {
        <form class="add-user" on:submit=submit>
            <h3>"Add a user"</h3>
            <label for="new-email">"Email"</label>
            <input id="new-email" type="email" required bind:value=email/>
            <label for="new-password">"Password"</label>
            <input id="new-password" type="password" autocomplete="new-password" minlength="8" required bind:value=password/>
            <label for="new-role">"Role"</label>
            <select id="new-role" bind:value=role>
                {roles.into_iter().map(|r| view! { <option value=r.as_str()>{r.as_str()}</option> }).collect_view()}
            </select>
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            {move || done.get().map(|m| view! { <p class="ok" role="status">{m}</p> })}
            <button type="submit">"Add user"</button>
        </form>
    }
}
