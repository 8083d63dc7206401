//! Broker transports: NATS JetStream, RabbitMQ (AMQP 0-9-1 with publisher confirms), Redis
//! Streams and a PostgreSQL table. Brokers are operator infrastructure: no SSRF guard. Each send
//! connects, publishes, waits for the broker's acknowledgement and disconnects; keeping
//! connections open per destination belongs to the delivery engine.

use super::{text, Attempt, Outcome, Transport};
use async_trait::async_trait;
use model::integration::{Manifest, Publish, Request};
use serde_json::{Map, Value};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);

fn as_publish(request: &Request) -> Result<&Publish, String> {
    match request {
        Request::Publish(p) => Ok(p),
        Request::Http(_) => Err("a broker destination got an HTTP request".into()),
    }
}

/// Runs a publish with a timeout; errors are retryable (the broker may come back).
async fn timed<F>(fut: F) -> Attempt
where
    F: std::future::Future<Output = Result<String, (Outcome, String)>>,
{
    let started = Instant::now();
    match tokio::time::timeout(TIMEOUT, fut).await {
        Ok(Ok(ack)) => Attempt::timed(started, Outcome::Delivered, None, ack),
        Ok(Err((outcome, e))) => Attempt::timed(started, outcome, None, e),
        Err(_) => Attempt::timed(started, Outcome::Retryable, None, format!("no acknowledgement within {} s", TIMEOUT.as_secs())),
    }
}

fn retry<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> (Outcome, String) {
    move |e| (Outcome::Retryable, format!("{what}: {e}"))
}

fn body(p: &Publish) -> Vec<u8> {
    serde_json::to_vec(&p.payload).unwrap_or_default()
}

pub struct Nats;

async fn nats_connect(settings: &Map<String, Value>) -> Result<async_nats::Client, String> {
    let url = text(settings, "url").ok_or("url is not set")?;
    let mut opts = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(5));
    if let Some(t) = text(settings, "token") {
        opts = opts.token(t.to_string());
    }
    if let (Some(u), Some(p)) = (text(settings, "username"), text(settings, "password")) {
        opts = opts.user_and_password(u.to_string(), p.to_string());
    }
    opts.connect(url).await.map_err(|e| format!("cannot connect to {url}: {e}"))
}

async fn nats_stream(js: &async_nats::jetstream::Context, settings: &Map<String, Value>) -> Result<(), String> {
    if let Some(name) = text(settings, "stream") {
        let subjects: Vec<String> = settings
            .get("stream_subjects")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
            .filter(|v: &Vec<String>| !v.is_empty())
            .unwrap_or_else(|| vec!["switchyard.>".into()]);
        let config = async_nats::jetstream::stream::Config { name: name.to_string(), subjects, ..Default::default() };
        js.get_or_create_stream(config).await.map_err(|e| format!("stream {name}: {e}"))?;
    }
    Ok(())
}

#[async_trait]
impl Transport for Nats {
    async fn send(&self, settings: &Map<String, Value>, request: &Request) -> Attempt {
        timed(async {
            let p = as_publish(request).map_err(|e| (Outcome::Permanent, e))?;
            let client = nats_connect(settings).await.map_err(|e| (Outcome::Retryable, e))?;
            let js = async_nats::jetstream::new(client.clone());
            nats_stream(&js, settings).await.map_err(|e| (Outcome::Retryable, e))?;
            let mut headers = async_nats::HeaderMap::new();
            for (k, v) in &p.headers {
                headers.insert(k.as_str(), v.as_str());
            }
            let ack = js
                .publish_with_headers(p.target.clone(), headers, body(p).into())
                .await
                .map_err(retry("publish"))?
                .await
                .map_err(|e| (Outcome::Retryable, format!("publish to {}: {e} (is there a stream for this subject?)", p.target)))?;
            let _ = client.drain().await;
            Ok(format!("stream {} sequence {}{}", ack.stream, ack.sequence, if ack.duplicate { " (duplicate)" } else { "" }))
        })
        .await
    }

    async fn test_connection(&self, _m: &Manifest, settings: &Map<String, Value>) -> Result<String, String> {
        let client = nats_connect(settings).await?;
        let js = async_nats::jetstream::new(client.clone());
        nats_stream(&js, settings).await?;
        let info = client.server_info();
        let _ = client.drain().await;
        Ok(format!("connected to NATS {} ({})", info.version, info.server_name))
    }
}

pub struct Rabbit;

async fn amqp_channel(settings: &Map<String, Value>) -> Result<(lapin::Connection, lapin::Channel), String> {
    use lapin::options::{ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let url = text(settings, "url").ok_or("url is not set")?;
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .map_err(|e| format!("cannot connect to the AMQP broker: {e}"))?;
    let ch = conn.create_channel().await.map_err(|e| format!("cannot open a channel: {e}"))?;
    ch.confirm_select(ConfirmSelectOptions::default()).await.map_err(|e| format!("publisher confirms: {e}"))?;
    if let Some(q) = text(settings, "declare_queue") {
        ch.queue_declare(q, QueueDeclareOptions { durable: true, ..Default::default() }, FieldTable::default())
            .await
            .map_err(|e| format!("declare queue {q}: {e}"))?;
        if let Some(x) = text(settings, "exchange") {
            let key = text(settings, "bind_key").unwrap_or("#");
            ch.queue_bind(q, x, key, QueueBindOptions::default(), FieldTable::default())
                .await
                .map_err(|e| format!("bind queue {q} to {x}: {e}"))?;
        }
    }
    Ok((conn, ch))
}

#[async_trait]
impl Transport for Rabbit {
    async fn send(&self, settings: &Map<String, Value>, request: &Request) -> Attempt {
        use lapin::options::BasicPublishOptions;
        use lapin::types::{AMQPValue, FieldTable, ShortString};
        timed(async {
            let p = as_publish(request).map_err(|e| (Outcome::Permanent, e))?;
            let (conn, ch) = amqp_channel(settings).await.map_err(|e| (Outcome::Retryable, e))?;
            let mut headers = FieldTable::default();
            for (k, v) in &p.headers {
                headers.insert(ShortString::from(k.clone()), AMQPValue::LongString(v.clone().into()));
            }
            let mut props = lapin::BasicProperties::default()
                .with_content_type("application/json".into())
                .with_delivery_mode(2)
                .with_headers(headers);
            if let Some(id) = &p.key {
                props = props.with_message_id(id.clone().into());
            }
            let exchange = text(settings, "exchange").unwrap_or("");
            let confirm = ch
                .basic_publish(exchange, &p.target, BasicPublishOptions::default(), &body(p), props)
                .await
                .map_err(retry("publish"))?
                .await
                .map_err(retry("confirm"))?;
            let _ = conn.close(200, "done").await;
            if confirm.is_nack() {
                return Err((Outcome::Retryable, "the broker refused the message (nack)".into()));
            }
            Ok(format!("confirmed by the broker (exchange '{exchange}', routing key '{}')", p.target))
        })
        .await
    }

    async fn test_connection(&self, _m: &Manifest, settings: &Map<String, Value>) -> Result<String, String> {
        let (conn, _ch) = amqp_channel(settings).await?;
        let _ = conn.close(200, "test").await;
        Ok("connected to the AMQP broker".into())
    }
}

pub struct Redis;

async fn redis_conn(settings: &Map<String, Value>) -> Result<redis::aio::MultiplexedConnection, String> {
    let url = text(settings, "url").ok_or("url is not set")?;
    let client = redis::Client::open(url).map_err(|e| format!("'{url}': {e}"))?;
    client.get_multiplexed_async_connection().await.map_err(|e| format!("cannot connect to Redis: {e}"))
}

#[async_trait]
impl Transport for Redis {
    async fn send(&self, settings: &Map<String, Value>, request: &Request) -> Attempt {
        timed(async {
            let p = as_publish(request).map_err(|e| (Outcome::Permanent, e))?;
            let mut con = redis_conn(settings).await.map_err(|e| (Outcome::Retryable, e))?;
            let mut cmd = redis::cmd("XADD");
            cmd.arg(&p.target);
            if let Some(n) = settings.get("max_length").and_then(Value::as_u64) {
                cmd.arg("MAXLEN").arg("~").arg(n);
            }
            cmd.arg("*");
            if let Some(id) = &p.key {
                cmd.arg("message_id").arg(id);
            }
            for (k, v) in &p.headers {
                cmd.arg(k).arg(v);
            }
            cmd.arg("payload").arg(body(p));
            let id: String = cmd.query_async(&mut con).await.map_err(retry("XADD"))?;
            Ok(format!("added to stream {} as {id}", p.target))
        })
        .await
    }

    async fn test_connection(&self, _m: &Manifest, settings: &Map<String, Value>) -> Result<String, String> {
        let mut con = redis_conn(settings).await?;
        let pong: String = redis::cmd("PING").query_async(&mut con).await.map_err(|e| e.to_string())?;
        Ok(format!("Redis answered {pong}"))
    }
}

pub struct Postgres;

async fn pg_conn(settings: &Map<String, Value>) -> Result<sqlx::PgConnection, String> {
    use sqlx::Connection;
    let url = text(settings, "url").ok_or("url is not set")?;
    let mut opts: sqlx::postgres::PgConnectOptions = url.parse().map_err(|e| format!("the URL is not valid: {e}"))?;
    if let Some(p) = text(settings, "password") {
        opts = opts.password(p);
    }
    sqlx::PgConnection::connect_with(&opts).await.map_err(|e| format!("cannot connect to PostgreSQL: {e}"))
}

/// The table name, checked (the manifest's pattern) and quoted.
fn table(target: &str) -> Result<String, String> {
    let ok = !target.is_empty()
        && target.len() <= 63
        && target.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && target.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(format!("\"{target}\""))
    } else {
        Err(format!("'{target}' is not a plain table name"))
    }
}

async fn pg_ensure_table(conn: &mut sqlx::PgConnection, settings: &Map<String, Value>, t: &str) -> Result<(), String> {
    if settings.get("create_table").and_then(Value::as_bool).unwrap_or(true) {
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {t} (message_id TEXT PRIMARY KEY, type TEXT, user_id TEXT, payload JSONB NOT NULL, \
             published_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        );
        sqlx::query(&ddl).execute(&mut *conn).await.map_err(|e| format!("create table {t}: {e}"))?;
    }
    Ok(())
}

#[async_trait]
impl Transport for Postgres {
    async fn send(&self, settings: &Map<String, Value>, request: &Request) -> Attempt {
        timed(async {
            let p = as_publish(request).map_err(|e| (Outcome::Permanent, e))?;
            let t = table(&p.target).map_err(|e| (Outcome::Permanent, e))?;
            let mut conn = pg_conn(settings).await.map_err(|e| (Outcome::Retryable, e))?;
            pg_ensure_table(&mut conn, settings, &t).await.map_err(|e| (Outcome::Retryable, e))?;
            let sql = format!("INSERT INTO {t} (message_id, type, user_id, payload) VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (message_id) DO NOTHING");
            let done = sqlx::query(&sql)
                .bind(p.key.clone().unwrap_or_default())
                .bind(p.headers.get("type").cloned())
                .bind(p.headers.get("user_id").cloned().filter(|u| !u.is_empty()))
                .bind(p.payload.to_string())
                .execute(&mut conn)
                .await
                .map_err(retry("insert"))?;
            Ok(if done.rows_affected() == 1 { format!("inserted into {t}") } else { format!("already in {t} (duplicate ignored)") })
        })
        .await
    }

    async fn test_connection(&self, _m: &Manifest, settings: &Map<String, Value>) -> Result<String, String> {
        let mut conn = pg_conn(settings).await?;
        let t = table(text(settings, "table").unwrap_or("switchyard_events"))?;
        pg_ensure_table(&mut conn, settings, &t).await?;
        let v: String = sqlx::query_scalar("SELECT version()").fetch_one(&mut conn).await.map_err(|e| e.to_string())?;
        Ok(format!("connected: {}", v.split(" on ").next().unwrap_or(&v)))
    }
}
