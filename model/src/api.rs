//! The shapes every `/api` route shares: list pages and RFC 7807 problems.

use serde::{Deserialize, Serialize};

/// One page of a list: `next` is the cursor to pass as `?before=` for the following page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListOut<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// One failing field of a validation problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// An RFC 7807 problem document as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    /// The text a person should read: the detail, else the title, then each field error.
    pub fn message(&self) -> String {
        let mut out = self.detail.clone().unwrap_or_else(|| self.title.clone());
        for e in &self.errors {
            out.push_str(&format!("; {}: {}", e.field, e.message));
        }
        out
    }
}
