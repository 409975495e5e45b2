//! An entry's JSON documents as the chain hashes them, straight from their stored text.
//!
//! The link hash covers each document in the form `serde_json` writes a parsed `Value`: compact, object keys in
//! sorted order, the last of repeated keys kept, numbers and strings as `serde_json` writes them. The stored text
//! need not be in that form (PostgreSQL's `jsonb` wrote its own spacing and key order). Parsing into a `Value`
//! gives that form, but builds a map and a string for every key and value, and sealing the log spent most of its
//! time there; this parses into a borrowed tree instead (strings without escapes are not copied, an object is one
//! vector sorted in place) and writes the same bytes.
//!
//! Most stored documents are in that form already: the server writes its documents compactly from `Value`s, whose
//! keys are sorted. `write` checks for that in one pass over the text, without building anything, and copies such a
//! text as it is; only the others are parsed and written again.

use std::borrow::Cow;

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{self, MapAccess, SeqAccess, Visitor},
    ser::{SerializeMap, SerializeSeq},
};
use serde_json::Number;

/// Appends `text`, a stored JSON document, to `out` as the `Value` parsed from it would be written. Fails if the text
/// is not JSON.
pub fn write(out: &mut Vec<u8>, text: &str) -> serde_json::Result<()> {
    if is_canonical(text) {
        out.extend_from_slice(text.as_bytes());
        Ok(())
    } else {
        serde_json::to_writer(out, &Canonical(text))
    }
}

/// A stored JSON document that serializes as the `Value` parsed from it would. Serializing fails if the text is not
/// JSON.
struct Canonical<'a>(&'a str);

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

/// Whether `text` is exactly what `serde_json` writes for the `Value` parsed from it. Conservative: a text it cannot
/// vouch for cheaply (a fraction or an exponent, whose written form depends on float formatting; an escape in an
/// object key; deep nesting) is `false` and takes the parsing path, which decides.
fn is_canonical(text: &str) -> bool {
    if text.contains(RAW_VALUE_MARK) {
        return false;
    }
    let mut scan = Scan { bytes: text.as_bytes(), at: 0 };
    scan.value(0) && scan.at == scan.bytes.len()
}

/// Nesting that `is_canonical` follows; deeper documents take the parsing path. Well inside `serde_json`'s own
/// limit (128), so that a document the parser refuses is never accepted here.
const MAX_DEPTH: usize = 64;

/// A cursor over a document's bytes for `is_canonical`. Each method starts at the first byte of what it reads,
/// and answers whether the text there is in canonical form.
struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        self.at += usize::from(found);
        found
    }

    fn word(&mut self, word: &[u8]) -> bool {
        let found = self.bytes[self.at..].starts_with(word);
        if found {
            self.at += word.len();
        }
        found
    }

    /// No white space anywhere: `serde_json` writes none between tokens.
    fn value(&mut self, depth: usize) -> bool {
        match self.peek() {
            Some(b'{') => depth < MAX_DEPTH && self.object(depth + 1),
            Some(b'[') => depth < MAX_DEPTH && self.array(depth + 1),
            Some(b'"') => self.string().is_some(),
            Some(b't') => self.word(b"true"),
            Some(b'f') => self.word(b"false"),
            Some(b'n') => self.word(b"null"),
            Some(b'-' | b'0'..=b'9') => self.integer(),
            _ => false,
        }
    }

    fn array(&mut self, depth: usize) -> bool {
        self.at += 1;
        if self.eat(b']') {
            return true;
        }
        loop {
            if !self.value(depth) {
                return false;
            }
            if self.eat(b']') {
                return true;
            }
            if !self.eat(b',') {
                return false;
            }
        }
    }

    /// Keys in strictly increasing byte order, as a `Value`'s map keeps them (which also rules out repeated keys).
    fn object(&mut self, depth: usize) -> bool {
        self.at += 1;
        if self.eat(b'}') {
            return true;
        }
        let mut previous: Option<&[u8]> = None;
        loop {
            if self.peek() != Some(b'"') {
                return false;
            }
            // A key's raw bytes are its value's bytes unless it holds an escape; comparing those would need them
            // decoded.
            let Some(key) = self.string().filter(|key| !key.contains(&b'\\')) else { return false };
            if previous.is_some_and(|previous| previous >= key) {
                return false;
            }
            previous = Some(key);
            if !self.eat(b':') || !self.value(depth) {
                return false;
            }
            if self.eat(b'}') {
                return true;
            }
            if !self.eat(b',') {
                return false;
            }
        }
    }

    /// A string as `serde_json` writes it; its raw bytes between the quotes. The text is a `str`, so its bytes are
    /// UTF-8 already; `serde_json` writes every character other than the escaped ones as it is.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.at += 1;
        let start = self.at;
        loop {
            match *self.bytes.get(self.at)? {
                b'"' => {
                    self.at += 1;
                    return Some(&self.bytes[start..self.at - 1]);
                }
                b'\\' if self.escape() => {}
                b'\\' | 0x00..=0x1f => return None,
                _ => self.at += 1,
            }
        }
    }

    /// The escapes `serde_json` writes: `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, and `\u00xx` (lowercase) for the
    /// other control characters; any other escape of the same character is another spelling of it.
    fn escape(&mut self) -> bool {
        let rest = &self.bytes[self.at..];
        let length = match rest.get(1) {
            Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't') => 2,
            Some(b'u') => {
                let Some(&[b'0', b'0', high, low]) = rest.get(2..6) else { return false };
                let (Some(high), Some(low)) = (lowercase_hex(high), lowercase_hex(low)) else { return false };
                let code = high * 16 + low;
                if code >= 0x20 || matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                    return false;
                }
                6
            }
            _ => return false,
        };
        self.at += length;
        true
    }

    /// An integer that `serde_json` reads as one and writes back the same: no leading zero, not `-0` (read as the
    /// float -0.0), within `i64` when negative and `u64` otherwise (beyond them it is read as a float).
    fn integer(&mut self) -> bool {
        let start = self.at;
        let negative = self.eat(b'-');
        let digits = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return false;
        }
        let digits = &self.bytes[digits..self.at];
        if digits.is_empty() || (digits[0] == b'0' && digits.len() > 1) {
            return false;
        }
        // Signs and digits only, so ASCII.
        let Ok(number) = std::str::from_utf8(&self.bytes[start..self.at]) else { return false };
        if negative { number.parse::<i64>().is_ok_and(|n| n != 0) } else { number.parse::<u64>().is_ok() }
    }
}

fn lowercase_hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
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

    /// What `write` appends, which must be what the chain defines whichever path it takes.
    fn written(text: &str) -> String {
        let mut out = Vec::new();
        write(&mut out, text).unwrap();
        String::from_utf8(out).unwrap()
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
            assert_eq!(written(text), by_value(text), "{text}");
        }
    }

    #[test]
    fn a_text_already_in_canonical_form_is_recognised() {
        for text in [
            r#"{"a":{"b":[1,-2,true,false,null,"x"]},"c":"tab\t\u001f\"\\ é 😀","d":{}}"#,
            r#"{"":0,"A":18446744073709551615,"a":-9223372036854775808}"#,
            r#"[[],[{}],"\b\f\n\r"]"#,
            "0",
            "-1",
            r#""""#,
        ] {
            assert!(is_canonical(text), "{text}");
            assert_eq!(by_value(text), text);
        }
    }

    #[test]
    fn every_other_spelling_takes_the_parsing_path() {
        for text in [
            r#"{"a": 1}"#,
            " 1",
            "1 ",
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"\u0061":1}"#,
            r#""\u0041""#,
            r#""\u001F""#,
            r#""\u000a""#,
            r#""\/""#,
            "1.0",
            "1e2",
            "-0",
            "01",
            "18446744073709551616",
            "-9223372036854775809",
            "\"tab\there\"",
            "nul",
            "[1,]",
            "{\"a\":1,}",
            r#"{"inputs":{"$serde_json::private::RawValue":"{}"}}"#,
        ] {
            assert!(!is_canonical(text), "{text}");
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(!is_canonical(&deep));
        assert_eq!(written(&deep), by_value(&deep));
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
            for text in [&compact, &pretty, &reversed] {
                prop_assert_eq!(written(text), by_value(&compact));
            }
        }

        /// Whatever text the scan vouches for is exactly the defined form of itself (and so JSON): documents'
        /// compact texts with a token put in somewhere, most of them no longer canonical or no longer JSON.
        #[test]
        fn a_text_recognised_as_canonical_is_its_own_canonical_form(
            value in any_value(),
            at in any::<prop::sample::Index>(),
            token in prop::sample::select(vec![
                "", " ", ",", ":", "\"", "\\", "\\u0041", "\\u001f", "\\u001F", "\\n", "\\/", "0", "-", ".", "e",
                "]", "}", "[", "{", "é", "null", "\"a\":1,", ",\"a\":1",
            ]),
        ) {
            let compact = serde_json::to_string(&value).unwrap();
            // Only fractions, exponents and escaped keys are left to the parser.
            prop_assert!(is_canonical(&compact) || compact.contains(['.', 'e', '\\']), "{}", compact);
            let boundaries: Vec<usize> = (0..=compact.len()).filter(|&i| compact.is_char_boundary(i)).collect();
            let at = boundaries[at.index(boundaries.len())];
            let text = format!("{}{token}{}", &compact[..at], &compact[at..]);
            if is_canonical(&text) {
                prop_assert_eq!(by_value(&text), text);
            }
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
