//! Request metadata: the `x-trace-id` that ties a request to its task, audit entries and trace folder.

use tonic::metadata::{MetadataMap, MetadataValue};

use crate::error::{Error, Result};

pub const TRACE_ID_HEADER: &str = "x-trace-id";
const MAX_TRACE_ID_CHARS: usize = 128;

/// The caller's trace id, if it sent one; refused if it is not 1-128 printable ASCII characters.
pub fn trace_id(metadata: &MetadataMap) -> Result<Option<String>> {
    let Some(value) = metadata.get(TRACE_ID_HEADER) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| Error::invalid(TRACE_ID_HEADER, "must be printable ASCII"))?.trim();
    if value.is_empty() || value.len() > MAX_TRACE_ID_CHARS || !value.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Error::invalid(
            TRACE_ID_HEADER,
            format!("must be 1-{MAX_TRACE_ID_CHARS} printable ASCII characters without spaces"),
        ));
    }
    Ok(Some(value.to_owned()))
}

pub fn new_trace_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Echoes the trace id to the caller.
pub fn set_trace_id(metadata: &mut MetadataMap, trace_id: &str) {
    if let Ok(value) = MetadataValue::try_from(trace_id) {
        metadata.insert(TRACE_ID_HEADER, value);
    }
}
