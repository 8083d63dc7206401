//! One integration-test binary (one link step): modules per area.

mod harness;

mod accounts;
mod batch_rows;
mod batching;
mod brokers;
mod catalog;
mod delivery;
mod delivery_edges;
mod delivery_nodes;
mod receiver;
mod test_delivery;
mod api;
mod cli;
mod ingest;
mod ingest_edges;
mod live;
mod ops;
mod retention;
mod workspace;
