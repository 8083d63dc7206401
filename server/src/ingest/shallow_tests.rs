use super::*;
use serde_json::json;

fn with_ip(text: &str) -> String {
    let mut m = Shallow::parse(text.as_bytes()).unwrap();
    m.add_to_object("context", "ip", json!("10.0.0.1"));
    m.to_json()
}

#[test]
fn keeps_the_text_as_sent_and_writes_what_is_set() {
    let text = r#"{"userId":"u1","properties":{"total":42.5, "items":[1,2]},"n":null,"num":1.50,"esc":"a\"b","tags":["a"]}"#;
    let mut m = Shallow::parse(text.as_bytes()).unwrap();
    assert_eq!(m.str_field("userId").unwrap(), "u1");
    assert_eq!(m.str_field("esc").unwrap(), "a\"b");
    assert_eq!(m.field("properties"), Some(Field::Object));
    assert_eq!(m.field("tags"), Some(Field::Array));
    assert_eq!(m.field("num"), Some(Field::Number));
    assert_eq!(m.field("n"), None, "null counts as absent");
    assert_eq!(m.raw("properties").unwrap().get(), r#"{"total":42.5, "items":[1,2]}"#);
    assert!(m.raw("userId").is_none(), "raw is for nested fields");
    m.set("messageId", json!("m-1"));
    m.set("userId", json!("u2"));
    m.add_to_object("context", "ip", json!("10.0.0.1"));
    assert_eq!(
        m.to_json(),
        r#"{"userId":"u2","properties":{"total":42.5, "items":[1,2]},"num":1.50,"esc":"a\"b","tags":["a"],"messageId":"m-1","context":{"ip":"10.0.0.1"}}"#,
        "fields keep their place and text; nulls are left out; new fields follow"
    );
    assert_eq!(m.id_text("userId").unwrap(), "u2");
}

#[test]
fn escaped_keys_and_numeric_ids() {
    let m = Shallow::parse(r#"{"user\u0049d":42,"a\nb":1}"#.as_bytes()).unwrap();
    assert_eq!(m.id_text("userId").unwrap(), "42");
    assert_eq!(m.to_json(), r#"{"userId":42,"a\nb":1}"#);
}

#[test]
fn a_given_context_ip_wins_and_a_new_context_is_written() {
    assert_eq!(with_ip(r#"{"context":{"ip":"1.1.1.1"}}"#), r#"{"context":{"ip":"1.1.1.1"}}"#);
    assert_eq!(with_ip(r#"{"a":1}"#), r#"{"a":1,"context":{"ip":"10.0.0.1"}}"#);
    assert_eq!(with_ip(r#"{"context":null,"a":1}"#), r#"{"context":{"ip":"10.0.0.1"},"a":1}"#);
}

#[test]
fn added_context_fields_follow_the_text_as_sent() {
    assert_eq!(with_ip(r#"{"context":{"z":1, "a":{"b":[1]}}}"#), r#"{"context":{"z":1, "a":{"b":[1]},"ip":"10.0.0.1"}}"#);
    assert_eq!(with_ip(r#"{"context":{ }}"#), r#"{"context":{ "ip":"10.0.0.1"}}"#);
    assert_eq!(with_ip(r#"{"context":{}}"#), r#"{"context":{"ip":"10.0.0.1"}}"#);
    assert_eq!(with_ip(r#"{"context":{"i\u0070":"1.1.1.1"}}"#), r#"{"context":{"i\u0070":"1.1.1.1"}}"#, "an escaped key is still the same key");
    assert_eq!(with_ip(r#"{"context":{"a":{"ip":"x"}}}"#), r#"{"context":{"a":{"ip":"x"},"ip":"10.0.0.1"}}"#, "a nested ip is another field");
    let out: Value = serde_json::from_str(&with_ip(r#"{"context":{"a":"x","ip":null}}"#)).unwrap();
    assert_eq!(out["context"]["ip"], Value::Null, "a given ip is kept, even null");
}

#[test]
fn refuses_what_a_full_parse_refuses() {
    assert!(Shallow::parse(r#"{"p":{"a":"\ud800"}}"#.as_bytes()).is_err(), "a lone surrogate");
    assert!(Shallow::parse(r#"{"p":"\ud800"}"#.as_bytes()).is_err(), "a lone surrogate in a top-level string");
    assert!(Shallow::parse(r#"{"p":"\\ud800"}"#.as_bytes()).is_ok(), "an escaped backslash");
    assert!(Shallow::parse(r#"{"p":{"a":"\ud83d\ude00"}}"#.as_bytes()).is_ok(), "a pair");
    assert!(Shallow::parse(r#"{"p":{"a":1,}}"#.as_bytes()).is_err());
    assert!(Shallow::parse(r#"{"n":1e400}"#.as_bytes()).is_err(), "a number out of range");
    assert!(Shallow::parse(r#"[1]"#.as_bytes()).is_err());
    assert!(Shallow::parse("{\"p\":{\"a\":\"x\u{1}\"}}".as_bytes()).is_err(), "a control character");
    assert!(Shallow::parse_checking(r#"{"p":{"a":"\ud800"}}"#.as_bytes(), Check::AllBut("p")).is_ok());
}

#[test]
fn the_last_of_a_repeated_key_wins() {
    let m = Shallow::parse(r#"{"p":{"a":1},"p":{"b":2},"s":1,"s":2}"#.as_bytes()).unwrap();
    assert_eq!(m.to_json(), r#"{"p":{"b":2},"s":2}"#);
}

#[test]
fn batch_defaults_fill_only_what_is_missing() {
    let batch = Shallow::parse(r#"{"context":{"x":1},"sentAt":"2026-01-01T00:00:00Z"}"#.as_bytes()).unwrap();
    let mut m = Shallow::parse(r#"{"context":null,"sentAt":"2026-02-02T00:00:00Z"}"#.as_bytes()).unwrap();
    m.default_raw("context", batch.raw("context").unwrap());
    m.default_raw("sentAt", batch.sent("sentAt").unwrap());
    assert_eq!(m.to_json(), r#"{"sentAt":"2026-02-02T00:00:00Z","context":{"x":1}}"#);
    assert!(m.size() >= m.to_json().len() - 4, "{} for {}", m.size(), m.to_json());
}

#[test]
fn unreadable_fields_are_shown_as_text() {
    let m = Shallow::parse_checking(r#"{"p":{"a":"\ud800"},"u":"x"}"#.as_bytes(), Check::None).unwrap();
    assert_eq!(m.into_value_unchecked(), json!({"p": r#"{"a":"\ud800"}"#, "u": "x"}));
}

/// A batch body read in one pass gives what the general parse and a second read of its `batch`
/// field give, and gives nothing where the general parse has something to say.
#[test]
fn a_batch_is_split_while_its_body_is_read() {
    let text = r#"{"writeKey":"k","batch":[{"type":"track","p":"\ud800"}, 3 ,{"a":[1]}],"context":{"x":1},"batch":[{"type":"identify"},[2]],"sentAt":"s"}"#;
    let (body, items) = Shallow::parse_batch(text.as_bytes()).expect("a batch");
    let texts: Vec<&str> = items.iter().map(|r| r.get()).collect();
    assert_eq!(texts, vec![r#"{"type":"identify"}"#, "[2]"], "the last batch array, each message as sent");
    assert_eq!(body.to_json(), r#"{"writeKey":"k","context":{"x":1},"sentAt":"s"}"#);
    let mut general = Shallow::parse_checking(text.as_bytes(), Check::AllBut("batch")).unwrap();
    let raw = general.take_raw("batch").unwrap();
    let again: Vec<&RawValue> = serde_json::from_str(raw.get()).unwrap();
    assert_eq!(again.iter().map(|r| r.get()).collect::<Vec<_>>(), texts);
    assert_eq!(general.to_json(), body.to_json());
    // The messages are checked one by one later: a lone surrogate in one does not refuse the body.
    assert!(Shallow::parse_batch(r#"{"batch":[{"p":"\ud800"}]}"#.as_bytes()).is_some());
    for text in [r#"{"batch":{"type":"track"}}"#, r#"{"batch":null}"#, r#"{"context":{"a":"\ud800"},"batch":[]}"#, r#"{"n":1e400,"batch":[]}"#, r#"{"batch":[1,]}"#, r#"{"sentAt":"s"}"#, "[]"] {
        assert!(Shallow::parse_batch(text.as_bytes()).is_none(), "{text}");
    }
}
