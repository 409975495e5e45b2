//! An entry's JSON documents as the chain hashes them, straight from their stored text.
//!
//! The link hash covers each document in the form `serde_json` writes a parsed `Value`: compact, object keys in
//! sorted order, the last of repeated keys kept, numbers and strings as `serde_json` writes them. The stored text
//! need not be in that form (PostgreSQL's `jsonb` wrote its own spacing and key order). Parsing into a `Value`
//! gives that form, but builds a map and a string for every key and value, and sealing the log spent most of its
//! time there; this parses into a borrowed tree instead (strings without escapes are not copied, an object is one
//! vector sorted in place) and writes the same bytes.

use std::borrow::Cow;

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{self, MapAccess, SeqAccess, Visitor},
    ser::{SerializeMap, SerializeSeq},
};
use serde_json::Number;

/// A stored JSON document that serializes as the `Value` parsed from it would. Serializing fails if the text is not
/// JSON.
pub struct Canonical<'a>(pub &'a str);

/// The key by which `serde_json`'s `raw_value` feature (on in this build, through a dependency) marks a raw value:
/// a `Value` parsed from an object whose first key it is becomes the JSON its string holds. A task's inputs may
/// hold any key, so documents that mention it take the `Value` path itself.
const RAW_VALUE_MARK: &str = "$serde_json::private::";

impl Serialize for Canonical<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.contains(RAW_VALUE_MARK) {
            let value: serde_json::Value = serde_json::from_str(self.0).map_err(serde::ser::Error::custom)?;
            return value.serialize(serializer);
        }
        let node: Node = serde_json::from_str(self.0).map_err(serde::ser::Error::custom)?;
        node.serialize(serializer)
    }
}

/// A parsed JSON value that borrows from the text where it can.
enum Node<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    /// Sorted by key, one member per key.
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl Serialize for Node<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => serializer.serialize_unit(),
            Node::Bool(b) => serializer.serialize_bool(*b),
            Node::Number(n) => n.serialize(serializer),
            Node::String(s) => serializer.serialize_str(s),
            Node::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Node::Object(members) => {
                let mut map = serializer.serialize_map(Some(members.len()))?;
                for (key, value) in members {
                    map.serialize_entry(key.as_ref(), value)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(b))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Node<'de>, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Node<'de>, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Node<'de>, E> {
        // As `Value` does: a JSON number is never NaN or infinite, so this always holds one.
        Number::from_f64(n).map(Node::Number).ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut members: Vec<(Cow<'de, str>, Node<'de>)> = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(Key(key)) = map.next_key()? {
            members.push((key, map.next_value()?));
        }
        // A stable sort keeps repeated keys in document order, so the last of each run is the one a map keeps.
        members.sort_by(|a, b| a.0.cmp(&b.0));
        let mut unique: Vec<(Cow<'de, str>, Node<'de>)> = Vec::with_capacity(members.len());
        for member in members {
            match unique.last_mut() {
                Some(last) if last.0 == member.0 => *last = member,
                _ => unique.push(member),
            }
        }
        Ok(Node::Object(unique))
    }
}

/// An object key, borrowed from the text unless it holds escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }

            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }

            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    /// What the chain defines: the document parsed into a `Value`, written by `serde_json`.
    fn by_value(text: &str) -> String {
        serde_json::to_string(&serde_json::from_str::<Value>(text).unwrap()).unwrap()
    }

    fn canonical(text: &str) -> String {
        serde_json::to_string(&Canonical(text)).unwrap()
    }

    #[test]
    fn writes_what_a_parsed_value_writes() {
        for text in [
            r#"{"status": "running", "worker_id": "w-1", "attempt": 1, "concurrency_key": null}"#,
            r#"{"b":1,"a":2,"b":3}"#,
            r#"{ "z" : [ 1 , -2.5e-300 , 1.7976931348623157e308 , -0 , -0.0 , 18446744073709551615 , -9223372036854775808 ] }"#,
            r#"{"esc\"aped\u00e9": "tab\t\u0001 \ud83d\ude00 é", "": {}, "arr": [[], [{}], true, false, null]}"#,
            r#"{"ab": 1, "a": 2, "b": 3, "B": 4, "é": 5, "e": 6}"#,
            r#"[1.0, 1e2, 12345678901234567890123, 0.1, 2.5E+3]"#,
            r#"{"inputs": {"a": {"$serde_json::private::RawValue": "{\"b\": 2}"}}}"#,
            r#""just a string""#,
            "42",
            "null",
        ] {
            assert_eq!(canonical(text), by_value(text), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_json() {
        assert!(serde_json::to_string(&Canonical("{\"a\": }")).is_err());
        assert!(serde_json::to_string(&Canonical("")).is_err());
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec(("[a-cé\"\\\\]{0,3}", inner), 0..8)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any document, written compactly or pretty-printed (another spacing, as a stored `jsonb` had), and with
        /// its members in reverse order (as another writer might order them).
        #[test]
        fn any_document_hashes_as_its_value(value in any_value()) {
            let compact = serde_json::to_string(&value).unwrap();
            let pretty = serde_json::to_string_pretty(&value).unwrap();
            prop_assert_eq!(canonical(&compact), by_value(&compact));
            prop_assert_eq!(canonical(&pretty), by_value(&compact));
            let reversed = reverse_members(&value);
            prop_assert_eq!(canonical(&reversed), by_value(&compact));
        }
    }

    /// The document's text with every object's members written last to first.
    fn reverse_members(value: &Value) -> String {
        match value {
            Value::Object(map) => {
                let members: Vec<String> = map
                    .iter()
                    .rev()
                    .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), reverse_members(v)))
                    .collect();
                format!("{{{}}}", members.join(","))
            }
            Value::Array(items) => format!("[{}]", items.iter().map(reverse_members).collect::<Vec<_>>().join(",")),
            other => serde_json::to_string(other).unwrap(),
        }
    }
}
