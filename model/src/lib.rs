//! Pure domain types shared by the server and the admin app (compiles to wasm).
//!
//! Everything here is plain data: no I/O, no async, so the browser bundle stays small.

pub mod account;
pub mod api;
pub mod event;
pub mod integration;
#[cfg(feature = "engine")]
pub mod mapping;
pub mod workspace;

pub use account::{Role, UserOut, MeOut};
pub use api::{ListOut, Problem, FieldError};
