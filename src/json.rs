//! Conversions between `google.protobuf.Struct`/`Value` and `serde_json::Value`.
//!
//! Free-form JSON (task inputs, metadata, results) travels as `Struct` on the wire so that grpcurl users write plain
//! JSON, and is stored as JSON in the database. Integral numbers come back as integers, so `{"n": 1}` round-trips
//! as `1` and not `1.0`.

use pbjson_types::{ListValue, Struct, Value, value::Kind};
use serde_json::{Map, Number, Value as Json};

/// The largest integer an f64 holds exactly (2^53).
pub(crate) const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0;

pub fn struct_to_json(s: Struct) -> Json {
    Json::Object(s.fields.into_iter().map(|(k, v)| (k, value_to_json(v))).collect())
}

pub fn value_to_json(v: Value) -> Json {
    match v.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(b),
        Some(Kind::StringValue(s)) => Json::String(s),
        Some(Kind::NumberValue(n)) => number_to_json(n),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(l)) => Json::Array(l.values.into_iter().map(value_to_json).collect()),
    }
}

fn number_to_json(n: f64) -> Json {
    if n.fract() == 0.0 && n.abs() <= MAX_EXACT_INT {
        Json::Number(Number::from(n as i64))
    } else {
        // NaN and infinities have no JSON form.
        Number::from_f64(n).map_or(Json::Null, Json::Number)
    }
}

/// A JSON object as a `Struct`; any other JSON value becomes a struct holding it under `"value"`.
pub fn json_to_struct(j: &Json) -> Struct {
    match j {
        Json::Object(map) => object_to_struct(map),
        other => Struct { fields: [("value".to_owned(), json_to_value(other))].into_iter().collect() },
    }
}

fn object_to_struct(map: &Map<String, Json>) -> Struct {
    Struct { fields: map.iter().map(|(k, v)| (k.clone(), json_to_value(v))).collect() }
}

pub fn json_to_value(j: &Json) -> Value {
    let kind = match j {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => Kind::ListValue(ListValue { values: items.iter().map(json_to_value).collect() }),
        Json::Object(map) => Kind::StructValue(object_to_struct(map)),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_nested_json_keeping_integers() {
        let original = json!({"n": 1, "x": 1.5, "s": "a", "b": true, "nil": null, "list": [1, {"k": [2]}]});
        let back = struct_to_json(json_to_struct(&original));
        assert_eq!(back, original);
    }

    #[test]
    fn non_object_json_is_wrapped() {
        let s = json_to_struct(&json!([1, 2]));
        assert_eq!(struct_to_json(s), json!({"value": [1, 2]}));
    }
}
