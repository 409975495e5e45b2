//! Request metadata: the trace id that ties a request to its task, audit entries and trace folder. It comes from
//! `x-trace-id`, or else from a W3C `traceparent` (its trace-id part), so that a caller already inside an
//! OpenTelemetry trace has its task, audit entries and the worker's logs filed under that trace.

use tonic::metadata::{MetadataMap, MetadataValue};

use crate::error::{Error, Result};

pub const TRACE_ID_HEADER: &str = "x-trace-id";
pub const TRACEPARENT_HEADER: &str = "traceparent";
const MAX_TRACE_ID_CHARS: usize = 128;

/// The caller's trace id, if it sent one; an `x-trace-id` is refused if it is not 1-128 printable ASCII
/// characters. A malformed `traceparent` is ignored, as the W3C recommendation asks.
pub fn trace_id(metadata: &MetadataMap) -> Result<Option<String>> {
    let Some(value) = metadata.get(TRACE_ID_HEADER) else {
        return Ok(metadata.get(TRACEPARENT_HEADER).and_then(|v| v.to_str().ok()).and_then(traceparent_trace_id));
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

/// The trace-id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), unless it is malformed or all zeros.
pub fn traceparent_trace_id(value: &str) -> Option<String> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, parent_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| s.len() == len && s.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'));
    let valid = hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && hex(trace_id, 32)
        && hex(parent_id, 16)
        && hex(flags, 2)
        && trace_id.chars().any(|c| c != '0')
        && parent_id.chars().any(|c| c != '0');
    valid.then(|| trace_id.to_owned())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_gives_its_trace_id_and_a_malformed_one_is_ignored() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(traceparent_trace_id(good).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f35-00f067aa0ba902b7-01",
            "",
        ] {
            assert_eq!(traceparent_trace_id(bad), None, "{bad}");
        }
        let mut metadata = MetadataMap::new();
        metadata.insert(TRACEPARENT_HEADER, good.parse().unwrap());
        assert_eq!(trace_id(&metadata).unwrap().as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        metadata.insert(TRACE_ID_HEADER, "mine".parse().unwrap());
        assert_eq!(trace_id(&metadata).unwrap().as_deref(), Some("mine"), "x-trace-id wins");
    }
}
