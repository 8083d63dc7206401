use super::*;
use serde_json::json;

fn fields(toml_like: Value) -> Vec<Field> {
    serde_json::from_value(toml_like).unwrap()
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn messages(r: Result<Map<String, Value>, Vec<FieldError>>) -> Vec<(String, String)> {
    r.unwrap_err().into_iter().map(|e| (e.field, e.message)).collect()
}

#[test]
fn required_defaults_and_unknown_keys() {
    let f = fields(json!([
        {"key": "api_key", "type": "secret", "label": "API key", "required": true},
        {"key": "region", "type": "select", "label": "Region", "default": "us",
         "options": [{"value": "us", "label": "US"}, {"value": "eu", "label": "EU"}]}
    ]));
    let errs = messages(validate(&f, &obj(json!({"colour": "red"}))));
    assert!(errs.contains(&("api_key".into(), "is required".into())), "{errs:?}");
    assert!(errs.contains(&("colour".into(), "is not a setting of this integration".into())), "{errs:?}");
    let ok = validate(&f, &obj(json!({"api_key": "k"}))).unwrap();
    assert_eq!(ok["region"], "us");
    let errs = messages(validate(&f, &obj(json!({"api_key": "k", "region": "mars"}))));
    assert_eq!(errs, vec![("region".into(), "must be one of 'us', 'eu'".into())]);
}

#[test]
fn types_patterns_ranges_and_urls() {
    let f = fields(json!([
        {"key": "n", "type": "integer", "label": "N", "min": 1.0, "max": 10.0},
        {"key": "x", "type": "number", "label": "X"},
        {"key": "code", "type": "string", "label": "Code", "pattern": "[A-Z]{3}"},
        {"key": "url", "type": "url", "label": "URL", "schemes": ["https"]},
        {"key": "on", "type": "boolean", "label": "On"},
        {"key": "tags", "type": "string_list", "label": "Tags", "max_length": 2},
        {"key": "headers", "type": "key_value", "label": "Headers"}
    ]));
    let errs = messages(validate(&f, &obj(json!({
        "n": 1.5, "x": "7", "code": "abcd", "url": "http://example.com", "on": "yes",
        "tags": ["a", "b", "c"], "headers": {"a": 1}
    }))));
    let want = [
        ("n", "must be a whole number"),
        ("x", "must be a number"),
        ("code", "must match the pattern [A-Z]{3}"),
        ("url", "must start with https://"),
        ("on", "must be true or false"),
        ("tags", "must have at most 2 items"),
        ("headers", "must be an object of text values"),
    ];
    for (k, m) in want {
        assert!(errs.contains(&(k.into(), m.into())), "{k}: {errs:?}");
    }
    assert_eq!(messages(validate(&f, &obj(json!({"n": 11})))), vec![("n".into(), "must be at most 10".into())]);
    assert_eq!(messages(validate(&f, &obj(json!({"url": "https:///x"})))), vec![("url".into(), "must be a URL with a host and no spaces".into())]);
    assert!(validate(&f, &obj(json!({"n": 3, "code": "ABC", "url": "https://h.example/p?q=1", "tags": ["a"]}))).is_ok());
}

#[test]
fn conditional_visibility_and_requiredness() {
    let f = fields(json!([
        {"key": "auth", "type": "select", "label": "Auth", "default": "none",
         "options": [{"value": "none", "label": "None"}, {"value": "basic", "label": "Basic"}]},
        {"key": "username", "type": "string", "label": "User", "required_when": {"field": "auth", "equals": "basic"},
         "visible_when": {"field": "auth", "equals": "basic"}}
    ]));
    assert_eq!(messages(validate(&f, &obj(json!({"auth": "basic"})))), vec![("username".into(), "is required".into())]);
    // Hidden fields are dropped, not validated.
    let ok = validate(&f, &obj(json!({"auth": "none", "username": 5}))).unwrap();
    assert!(!ok.contains_key("username"));
}

#[test]
fn object_lists_and_test_values() {
    let f = fields(json!([
        {"key": "key", "type": "secret", "label": "Key", "test_value": true},
        {"key": "rules", "type": "object_list", "label": "Rules", "fields": [
            {"key": "from", "type": "string", "label": "From", "required": true},
            {"key": "to", "type": "string", "label": "To"}
        ]}
    ]));
    let errs = messages(validate(&f, &obj(json!({"rules": [{"to": "x"}, {"from": "a", "bad": 1}, 3], "test_values": {"rules": []}}))));
    for (k, m) in [
        ("rules[0].from", "is required"),
        ("rules[1].bad", "is not a field of this list"),
        ("rules[2]", "must be an object"),
        ("test_values.rules", "has no test value"),
    ] {
        assert!(errs.contains(&(k.into(), m.into())), "{k}: {errs:?}");
    }
    let ok = validate(&f, &obj(json!({"key": "live", "test_values": {"key": "test"}}))).unwrap();
    assert_eq!(ok["test_values"]["key"], "test");
}
