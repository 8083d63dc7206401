//! Migrations embedded in the binary, one folder per dialect.

use super::{Backend, Store};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use std::borrow::Cow;

macro_rules! migrations {
    ($dialect:literal: $(($version:literal, $file:literal, $name:literal)),* $(,)?) => {
        vec![$(Migration::new(
            $version,
            Cow::Borrowed($name),
            MigrationType::Simple,
            Cow::Borrowed(include_str!(concat!("../../../migrations/", $dialect, "/", $file))),
            false,
        )),*]
    };
}

fn migrator(backend: Backend) -> Migrator {
    let migrations = match backend {
        Backend::Sqlite => migrations!("sqlite": (1, "0001_foundation.sql", "foundation"), (2, "0002_events.sql", "events"), (3, "0003_privacy.sql", "privacy"), (4, "0004_destination_config.sql", "destination config"), (5, "0005_delivery.sql", "delivery"), (6, "0006_queue_indexes.sql", "queue indexes"), (7, "0007_dedupe_in_log.sql", "dedupe in the log"), (8, "0008_lease_only_claims.sql", "lease-only claims"), (9, "0009_claim_room.sql", "claim room"), (10, "0010_bulk_attempts.sql", "bulk attempts"), (11, "0011_batch_rows.sql", "batch rows"), (13, "0013_replay_outcomes.sql", "replay outcomes"), (14, "0014_message_index.sql", "message index")),
        Backend::Postgres => migrations!("postgres": (1, "0001_foundation.sql", "foundation"), (2, "0002_events.sql", "events"), (3, "0003_privacy.sql", "privacy"), (4, "0004_destination_config.sql", "destination config"), (5, "0005_delivery.sql", "delivery"), (6, "0006_queue_indexes.sql", "queue indexes"), (7, "0007_dedupe_in_log.sql", "dedupe in the log"), (8, "0008_lease_only_claims.sql", "lease-only claims"), (9, "0009_claim_room.sql", "claim room"), (10, "0010_bulk_attempts.sql", "bulk attempts"), (11, "0011_batch_rows.sql", "batch rows"), (12, "0012_shared_rate.sql", "shared rate limits"), (13, "0013_replay_outcomes.sql", "replay outcomes")),
    };
    Migrator {
        migrations: Cow::Owned(migrations),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    }
}

pub async fn run(store: &Store) -> anyhow::Result<()> {
    migrator(store.backend)
        .run(&store.pool)
        .await
        .map_err(|e| anyhow::anyhow!("cannot apply database migrations: {e}"))
}

/// Fails unless the database answers and has every migration this binary knows.
pub async fn check_applied(store: &Store) -> anyhow::Result<()> {
    let want = migrator(store.backend).migrations.len() as i64;
    let have: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM _sqlx_migrations WHERE success = TRUE",
    )
    .fetch_one(&store.pool)
    .await?;
    anyhow::ensure!(have >= want, "{have} of {want} migrations applied");
    Ok(())
}
