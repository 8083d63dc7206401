//! The mapping language: JSON in which objects with one `@` key are directives.
//!
//! | directive | meaning |
//! |---|---|
//! | `{"@path": "$.properties.price"}` | JSONPath (RFC 9535): one match gives the value, a query that can match several gives a list |
//! | `{"@template": "Hi {{ traits.name }}"}` | a MiniJinja template, rendered to a string |
//! | `{"@literal": …}` | the value as written (directives inside are not evaluated) |
//! | `{"@if": {"when": "<condition>" or "exists": <mapping>, "then": …, "else": …}}` | a choice |
//! | `{"@case": {"value": <mapping>, "cases": {"a": …}, "default": …}}` | pick by value |
//! | `{"@coalesce": [ … ]}` | the first that has a value |
//! | `{"@merge": [ … ]}` | the members of several objects, later ones winning |
//! | `{"@cast": {"value": …, "to": "string" / "number" / "integer" / "boolean"}}` | convert |
//! | `{"@map": {"over": <mapping to a list>, "each": <mapping over one item>}}` | map a list (e.g. products) |
//! | `{"@hash": {"value": …, "normalize": "email" / "phone" / "trim_lower" / "none"}}` | SHA-256, lower-case hex |
//! | `{"@date": {"value": …, "format": "unix" / "unix_ms" / "rfc3339" / "[year]-[month]-[day]"}}` | format a timestamp |
//!
//! Anything else is itself: objects and arrays are mapped member by member (members without a
//! value are left out), strings holding `{{` are templates, other values are literals.
//! Conditions are MiniJinja expressions over the same context (`type == "track" and properties.total > 10`).

mod compile;
mod eval;
mod request;

pub use compile::{compile, Mapping};
pub use eval::{Condition, Ctx};
pub use request::{check_manifest, effective_settings, encode, refused_positions, test_connection_request, Built, Prepared, Rejection};

/// A mapping that cannot be compiled, naming where in it the problem is.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingError {
    pub at: String,
    pub message: String,
}

impl std::fmt::Display for MappingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.at.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.at, self.message)
        }
    }
}

#[cfg(test)]
mod tests;
