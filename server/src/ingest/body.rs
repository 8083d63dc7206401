//! Reading a tracking request's body: JSON whatever the Content-Type says, gzip decompressed,
//! limits checked after decompression.

use super::Limits;
use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use futures_util::StreamExt;
use super::shallow::{Check, Shallow};
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use std::io::Read;

/// A refusal of the whole request: (code, message) for the Tracking API error shape.
#[derive(Debug)]
pub struct BodyError(pub &'static str, pub String);

/// A body over the limit is still read to its end, up to this much, before it is refused: a
/// client that is still sending then reads the answer instead of a reset connection.
const DRAIN_BYTES: usize = 64 << 20;

fn too_large(limits: &Limits) -> BodyError {
    BodyError("request_too_large", format!("the request is larger than the limit of {} bytes per request", limits.max_request_bytes))
}

/// The body as sent, at most `Limits::max_raw_bytes`.
pub async fn read(body: Body, limits: &Limits) -> Result<Bytes, BodyError> {
    let unreadable = |e: axum::Error| BodyError("invalid_body", format!("the body could not be read: {e}"));
    let mut stream = body.into_data_stream();
    let mut parts: Vec<Bytes> = Vec::new();
    let mut total = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(unreadable)?;
        total += chunk.len();
        if total > limits.max_raw_bytes() {
            while total <= DRAIN_BYTES {
                match stream.next().await {
                    Some(Ok(more)) => total += more.len(),
                    _ => break,
                }
            }
            return Err(too_large(limits));
        }
        parts.push(chunk);
    }
    Ok(match parts.len() {
        1 => parts.pop().expect("one part"),
        _ => Bytes::from(parts.concat()),
    })
}

/// The body after decompression (`Content-Encoding: gzip`), at most `max_request_bytes`.
pub fn decode(headers: &HeaderMap, raw: Bytes, limits: &Limits) -> Result<Bytes, BodyError> {
    let gzip = headers
        .get(axum::http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    let bytes = if gzip {
        let mut out = Vec::new();
        let cap = limits.max_request_bytes as u64 + 1;
        flate2::read::GzDecoder::new(&raw[..])
            .take(cap)
            .read_to_end(&mut out)
            .map_err(|e| BodyError("invalid_body", format!("the body is not valid gzip: {e}")))?;
        Bytes::from(out)
    } else {
        raw
    };
    if bytes.len() > limits.max_request_bytes {
        return Err(too_large(limits));
    }
    Ok(bytes)
}

/// The JSON object of a body, one level deep. A batch's messages (`batch: true`) are checked one
/// by one later, so that a bad one fails alone.
pub fn parse(bytes: &[u8], batch: bool) -> Result<Parsed<'_>, BodyError> {
    let invalid = |e: serde_json::Error| BodyError("invalid_json", format!("the body is not valid JSON: {e}"));
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(BodyError("invalid_body", "the body is empty; send a JSON object".into())),
        Some(b'{') => {}
        Some(_) => {
            serde_json::from_slice::<IgnoredAny>(bytes).map_err(invalid)?;
            return Err(BodyError("invalid_body", "the body must be a JSON object".into()));
        }
    }
    if batch {
        if let Some((fields, messages)) = Shallow::parse_batch(bytes) {
            return Ok(Parsed { fields, batch: Some(messages) });
        }
    }
    // A full parse names the position of an error found in a nested field.
    let fields = Shallow::parse_checking(bytes, if batch { Check::AllBut("batch") } else { Check::All })
        .map_err(|e| invalid(serde_json::from_slice::<serde_json::Value>(bytes).err().unwrap_or(e)))?;
    Ok(Parsed { fields, batch: None })
}

/// A request's body: its fields and, for a batch whose `batch` array was split into its messages
/// while the body was read, their texts (the field is then not among `fields`).
pub struct Parsed<'a> {
    pub fields: Shallow<'a>,
    pub batch: Option<Vec<&'a RawValue>>,
}
