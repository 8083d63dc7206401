use super::*;
use serde_json::{json, Value};

fn run(mapping: Value, event: Value) -> Option<Value> {
    compile(&mapping).unwrap().eval(&Ctx::new(&event)).unwrap()
}

fn order() -> Value {
    json!({
        "type": "track", "event": "Order Completed", "userId": "u1",
        "timestamp": "2026-11-25T10:00:00.000Z",
        "context": {"traits": {"email": "  Ada@Example.COM "}, "phone": "+1 (555) 010-9999"},
        "properties": {"total": "42.5", "currency": "EUR", "coupon": "",
            "products": [{"sku": "a", "price": 10}, {"sku": "b", "price": 32.5}]}
    })
}

#[test]
fn paths_templates_literals() {
    assert_eq!(run(json!({"@path": "$.properties.currency"}), order()), Some(json!("EUR")));
    assert_eq!(run(json!({"@path": "$.properties.missing"}), order()), None);
    assert_eq!(run(json!({"@path": "$.properties.products[*].sku"}), order()), Some(json!(["a", "b"])));
    assert_eq!(run(json!("{{ event }} by {{ userId }}"), order()), Some(json!("Order Completed by u1")));
    assert_eq!(run(json!({"@literal": {"@path": "x"}}), order()), Some(json!({"@path": "x"})));
    // Members without a value are left out.
    assert_eq!(
        run(json!({"a": {"@path": "$.nope"}, "b": 1, "c": [{"@path": "$.userId"}, {"@path": "$.nope"}]}), order()),
        Some(json!({"b": 1, "c": ["u1"]}))
    );
}

#[test]
fn choices_casts_maps_hashes_dates() {
    let m = json!({"@if": {"when": "properties.currency == 'EUR'", "then": "euro", "else": "other"}});
    assert_eq!(run(m, order()), Some(json!("euro")));
    let m = json!({"@if": {"exists": {"@path": "$.properties.nope"}, "then": 1}});
    assert_eq!(run(m, order()), None);
    let m = json!({"@case": {"value": {"@path": "$.type"}, "cases": {"track": "T", "page": "P"}, "default": "?"}});
    assert_eq!(run(m, order()), Some(json!("T")));
    let m = json!({"@coalesce": [{"@path": "$.properties.coupon"}, {"@path": "$.properties.currency"}]});
    assert_eq!(run(m, order()), Some(json!("EUR")));
    assert_eq!(run(json!({"@cast": {"value": {"@path": "$.properties.total"}, "to": "number"}}), order()), Some(json!(42.5)));
    assert_eq!(run(json!({"@cast": {"value": "7.9", "to": "integer"}}), order()), Some(json!(7)));
    let m = json!({"@map": {"over": {"@path": "$.properties.products"}, "each": {"id": {"@path": "$.sku"}, "p": {"@path": "$.price"}}}});
    assert_eq!(run(m, order()), Some(json!([{"id": "a", "p": 10}, {"id": "b", "p": 32.5}])));
    // SHA-256 of "ada@example.com" and of "15550109999".
    let h = run(json!({"@hash": {"value": {"@path": "$.context.traits.email"}, "normalize": "email"}}), order()).unwrap();
    assert_eq!(h, json!("b5fc85e55755f9e0d030a10ab4429b6b2944855f9a0d60077fe832becbc41d72"));
    let again = run(json!({"@hash": {"value": "ada@example.com"}}), order()).unwrap();
    assert_eq!(h, again, "normalised e-mail hashes like the plain lower-case one");
    let phone = run(json!({"@hash": {"value": {"@path": "$.context.phone"}, "normalize": "phone"}}), order()).unwrap();
    assert_eq!(phone, run(json!({"@hash": {"value": "15550109999"}}), order()).unwrap());
    let hashed_twice = run(json!({"@hash": {"value": h.clone()}}), order()).unwrap();
    assert_eq!(hashed_twice, h, "a digest is not hashed again");
    assert_eq!(run(json!({"@date": {"value": {"@path": "$.timestamp"}, "format": "unix"}}), order()), Some(json!(1_795_600_800)));
    assert_eq!(run(json!({"@date": {"value": 1_795_600_800_000u64, "format": "[year]-[month]-[day]"}}), order()), Some(json!("2026-11-25")));
}

#[test]
fn compile_errors_name_the_place() {
    let e = compile(&json!({"body": {"x": {"@nope": 1}}})).unwrap_err();
    assert_eq!(e.at, "body.x.@nope");
    let e = compile(&json!({"@path": "properties.x"})).unwrap_err();
    assert!(e.message.contains("not a valid JSONPath"), "{e}");
    let e = compile(&json!({"@cast": {"value": 1, "to": "float"}})).unwrap_err();
    assert_eq!(e.at, "@cast.to");
    assert!(compile(&json!("{{ unclosed")).is_err());
    assert!(Condition::compile("type ==").is_err());
}

#[test]
fn conditions() {
    let ev = order();
    let ctx = Ctx::new(&ev);
    assert!(Condition::compile("type == 'track' and event in ['Order Completed']").unwrap().holds(&ctx).unwrap());
    assert!(Condition::compile("properties.total | float > 40").unwrap().holds(&ctx).unwrap());
    assert!(!Condition::compile("properties.nothing.deeper == 1").unwrap().holds(&ctx).unwrap());
}

#[test]
fn refused_positions_read_batch_answers() {
    use crate::integration::{PartialFailures, PartialOthers};
    let amplitude = PartialFailures {
        status: vec![400],
        failed: vec!["$.events_with_invalid_fields.*[*]".into(), "$.events_with_missing_fields.*[*]".into()],
        others: PartialOthers::Retry,
    };
    let body = json!({"code": 400, "events_with_invalid_fields": {"time": [3, 1], "event_type": [1]}, "events_with_missing_fields": {"user_id": [7, 40]}});
    assert_eq!(refused_positions(&amplitude, &body, 10), [1, 3, 7], "once each, in order, within the batch");
    assert!(refused_positions(&amplitude, &json!({"code": 400, "missing_field": "api_key"}), 10).is_empty());
    let mixpanel = PartialFailures { status: vec![400], failed: vec!["$.failed_records[*].index".into()], others: PartialOthers::Delivered };
    let body = json!({"failed_records": [{"index": 0, "message": "bad time"}, {"index": 2}], "num_records_imported": 1});
    assert_eq!(refused_positions(&mixpanel, &body, 3), [0, 2]);
}
