//! AIP-158 pagination: page sizes and opaque page tokens that are only valid with the filters that produced them.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::error::{Error, Result};

/// 0 means `default`; larger than `max` is clamped; negative is an error.
pub fn page_size(raw: i32, default: u64, max: u64) -> Result<u64> {
    match raw {
        n if n < 0 => Err(Error::invalid("page_size", format!("must not be negative, got {n}"))),
        0 => Ok(default),
        n => Ok((n as u64).min(max)),
    }
}

/// A token naming the last item returned (any JSON key) and the filters of the request.
pub fn encode<F: Serialize>(after: &Json, filter: &F) -> String {
    let token = json!({ "after": after, "filter": filter });
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

/// The key a token continues after; refused if it was made for other filters.
pub fn decode<F: Serialize>(token: &str, filter: &F) -> Result<Option<Json>> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || Error::invalid("page_token", "is not a token returned by this list call");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let token: Json = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if token.get("filter") != Some(&serde_json::to_value(filter).unwrap_or(Json::Null)) {
        return Err(Error::invalid("page_token", "was issued for different filters; repeat the same filters"));
    }
    token.get("after").cloned().map(Some).ok_or_else(bad)
}

/// A page of `limit + 1` rows fetched: the first `limit` and whether there is more.
pub fn split_page<T>(mut rows: Vec<T>, limit: u64) -> (Vec<T>, bool) {
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    (rows, more)
}

/// The string form of an `after` key.
pub fn after_string(after: Option<Json>) -> Result<Option<String>> {
    match after {
        None => Ok(None),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::invalid("page_token", "is not a token returned by this list call")),
    }
}
