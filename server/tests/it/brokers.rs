//! Broker destinations against the real local brokers: a test delivery publishes, and the test
//! reads the message back from the broker. An unreachable broker fails the test.

use crate::harness::{hex_id, Db, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

fn event(id: &str) -> Value {
    json!({"type": "track", "event": "Order Completed", "userId": "u-42", "messageId": id, "properties": {"total": 12.5}})
}

/// Creates a destination and sends `event` through it; returns the one result.
async fn publish(server: &TestServer, token: &str, integration: &str, settings: Value, actions: Value, event: &Value) -> Value {
    let c = server.client();
    let body = json!({"name": format!("{integration}-{}", hex_id()), "integration": integration, "settings": settings, "actions": actions});
    let r = c.post(server.at("/api/destinations")).bearer_auth(token).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let d: Value = r.json().await.unwrap();
    let id = d["id"].as_str().unwrap();
    let conn: Value = c.post(server.at(&format!("/api/destinations/{id}/test-connection"))).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    assert_eq!(conn["ok"], true, "{integration} test-connection: {conn}");
    let out: Value = c.post(server.at(&format!("/api/destinations/{id}/test"))).bearer_auth(token).json(&json!({"event": event})).send().await.unwrap().json().await.unwrap();
    let result = out["results"][0].clone();
    assert_eq!(result["attempt"]["outcome"], "delivered", "{integration}: {out}");
    result
}

async fn start() -> (crate::harness::TestEnv, TestServer, String) {
    let env = crate::harness::TestEnv::new(Db::Sqlite).await.unwrap();
    let token = env.token("a", "admin");
    let server = env.start().await;
    (env, server, token)
}

#[tokio::test]
async fn nats_jetstream_publish_is_read_back() {
    let (_env, server, token) = start().await;
    let tag = hex_id();
    let (stream, subject) = (format!("SYTEST_{tag}"), format!("sytest.{tag}.track"));
    let settings = json!({"url": "nats://127.0.0.1:4222", "stream": stream, "stream_subjects": [format!("sytest.{tag}.>")]});
    let actions = json!({"publish": {"mapping": {"subject": format!("sytest.{tag}.{{{{ type }}}}")}}});
    let ev = event(&format!("m-{tag}"));
    publish(&server, &token, "nats", settings, actions, &ev).await;

    let client = async_nats::connect("127.0.0.1:4222").await.expect("NATS at 127.0.0.1:4222");
    let js = async_nats::jetstream::new(client);
    let s = js.get_stream(&stream).await.unwrap();
    let msg = s.get_last_raw_message_by_subject(&subject).await.unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&msg.payload).unwrap(), ev);
    assert_eq!(msg.headers.get("Nats-Msg-Id").unwrap().as_str(), format!("m-{tag}"));
    js.delete_stream(&stream).await.unwrap();
}

#[tokio::test]
async fn rabbitmq_publish_is_read_back() {
    use lapin::options::{BasicGetOptions, QueueDeleteOptions};
    let (_env, server, token) = start().await;
    let queue = format!("sytest-{}", hex_id());
    let settings = json!({"url": "amqp://guest:guest@127.0.0.1:5672/%2f", "declare_queue": queue});
    // The default exchange routes by queue name.
    let actions = json!({"publish": {"mapping": {"routing_key": queue}}});
    let ev = event("m-rabbit-1");
    publish(&server, &token, "rabbitmq", settings, actions, &ev).await;

    let conn = lapin::Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f", lapin::ConnectionProperties::default()).await.expect("RabbitMQ");
    let ch = conn.create_channel().await.unwrap();
    let got = ch.basic_get(&queue, BasicGetOptions { no_ack: true }).await.unwrap().expect("a message in the queue");
    assert_eq!(serde_json::from_slice::<Value>(&got.delivery.data).unwrap(), ev);
    assert_eq!(got.delivery.properties.message_id().as_ref().map(|s| s.as_str()), Some("m-rabbit-1"));
    assert_eq!(got.delivery.properties.delivery_mode(), &Some(2), "persistent");
    ch.queue_delete(&queue, QueueDeleteOptions::default()).await.unwrap();
}

#[tokio::test]
async fn mqtt_qos1_publish_is_read_back() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let (_env, server, token) = start().await;
    let tag = hex_id();
    let topic = format!("sytest/{tag}/track");
    let (client, mut events) = AsyncClient::new(MqttOptions::new(format!("sytest-{tag}"), "127.0.0.1", 1883), 10);
    client.subscribe(format!("sytest/{tag}/#"), QoS::AtLeastOnce).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(e) = events.poll().await {
            let _ = tx.send(e);
        }
    });
    loop {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("MQTT broker at 127.0.0.1:1883") {
            Some(Event::Incoming(Packet::SubAck(_))) => break,
            Some(_) => {}
            None => panic!("MQTT connection ended"),
        }
    }
    let ev = event("m-mqtt-1");
    let settings = json!({"url": "mqtt://127.0.0.1:1883"});
    let actions = json!({"publish": {"mapping": {"topic": format!("sytest/{tag}/{{{{ type }}}}")}}});
    publish(&server, &token, "mqtt", settings, actions, &ev).await;
    let got = loop {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("the message arrives") {
            Some(Event::Incoming(Packet::Publish(p))) => break p,
            Some(_) => {}
            None => panic!("MQTT connection ended"),
        }
    };
    assert_eq!(got.topic, topic);
    assert_eq!(got.qos, QoS::AtLeastOnce);
    assert_eq!(serde_json::from_slice::<Value>(&got.payload).unwrap(), ev);
}

#[tokio::test]
async fn redis_stream_entry_is_read_back() {
    use redis::AsyncCommands;
    let (_env, server, token) = start().await;
    let key = format!("sytest:{}", hex_id());
    let ev = event("m-redis-1");
    let actions = json!({"publish": {"mapping": {"stream": key}}});
    publish(&server, &token, "redis", json!({"url": "redis://127.0.0.1:6379", "max_length": 1000}), actions, &ev).await;

    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut con = client.get_multiplexed_async_connection().await.expect("Redis at 127.0.0.1:6379");
    let reply: redis::streams::StreamRangeReply = con.xrange_all(&key).await.unwrap();
    assert_eq!(reply.ids.len(), 1);
    let entry = &reply.ids[0];
    let field = |k: &str| -> String { redis::from_redis_value(entry.map.get(k).unwrap()).unwrap() };
    assert_eq!(field("message_id"), "m-redis-1");
    assert_eq!(field("type"), "track");
    assert_eq!(serde_json::from_str::<Value>(&field("payload")).unwrap(), ev);
    let _: () = con.del(&key).await.unwrap();
}

/// Through the queue: an enabled Redis destination gets the source's events (routed, delivered,
/// recorded) like an HTTP one.
#[tokio::test]
async fn redis_destination_gets_routed_events_through_the_queue() {
    use redis::AsyncCommands;
    let (_env, server, token) = start().await;
    let c = server.client();
    let src: Value = c.post(server.at("/api/sources")).bearer_auth(&token).json(&json!({"name": "web"})).send().await.unwrap().json().await.unwrap();
    let key = format!("sytest:{}", hex_id());
    let body = json!({"name": "stream", "integration": "redis", "enabled": true, "sources": ["web"],
        "settings": {"url": "redis://127.0.0.1:6379", "max_length": 1000}, "actions": {"publish": {"mapping": {"stream": key}}}});
    let r = c.post(server.at("/api/destinations")).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let dest: Value = r.json().await.unwrap();
    for i in 0..3 {
        let r = c.post(server.at("/v1/track")).basic_auth(src["write_key"].as_str().unwrap(), Some(""))
            .json(&json!({"userId": "u-42", "event": "Order Completed", "messageId": format!("m-q-{i}")})).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let url = server.at(&format!("/api/destinations/{}/deliveries?state=succeeded", dest["id"].as_str().unwrap()));
    for _ in 0..300 {
        let done: Value = c.get(&url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        if done["items"].as_array().unwrap().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut con = client.get_multiplexed_async_connection().await.expect("Redis at 127.0.0.1:6379");
    let reply: redis::streams::StreamRangeReply = con.xrange_all(&key).await.unwrap();
    let mut ids: Vec<String> = reply.ids.iter().map(|e| redis::from_redis_value(e.map.get("message_id").unwrap()).unwrap()).collect();
    let _: () = con.del(&key).await.unwrap();
    ids.sort();
    assert_eq!(ids, ["m-q-0", "m-q-1", "m-q-2"], "each event once");
}

#[tokio::test]
async fn postgres_table_row_is_read_back() {
    use sqlx::Connection;
    let (_env, server, token) = start().await;
    // The destination database: a fresh PostgreSQL database of its own.
    let target = crate::env_or_skip!(Db::Postgres);
    let table = format!("sytest_{}", hex_id());
    let ev = event("m-pg-1");
    let settings = json!({"url": target.database_url, "table": table});
    publish(&server, &token, "postgres", settings.clone(), json!({}), &ev).await;
    // The same message again is ignored (the message id is the key).
    publish(&server, &token, "postgres", settings, json!({}), &ev).await;

    let mut conn = sqlx::PgConnection::connect(&target.database_url).await.unwrap();
    let rows: Vec<(String, String, String, String)> =
        sqlx::query_as(&format!("SELECT message_id, type, user_id, payload::text FROM {table}")).fetch_all(&mut conn).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].0.as_str(), rows[0].1.as_str(), rows[0].2.as_str()), ("m-pg-1", "track", "u-42"));
    assert_eq!(serde_json::from_str::<Value>(&rows[0].3).unwrap(), ev);
}
