//! One integration-test binary (one link step): modules per area.

mod harness;

mod accounts;
mod batch_rows;
mod batching;
mod brokers;
mod catalog;
mod delivery;
mod delivery_nodes;
mod receiver;
mod test_delivery;
mod api;
mod cli;
mod ingest;
mod live;
mod ops;
mod retention;
mod workspace;
