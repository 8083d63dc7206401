//! Switchyard's server: configuration, storage, the HTTP API and admin app host, and the CLI.

pub mod cli;
pub mod config;
pub mod deliver;
pub mod http;
pub mod ingest;
pub mod integrations;
pub mod keys;
pub mod password;
pub mod secrets;
pub mod snippets;
pub mod transport;
pub mod store;
pub mod workspace;
