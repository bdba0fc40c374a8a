//! A TOML document as a tree that remembers where every key and value came from.
//!
//! The `toml` crate parses; this module only asks it, through serde, for each value
//! wrapped in [`toml::Spanned`] and for each key's span, so the validator in
//! `parse.rs` can point at the exact token of every problem and keep going after the
//! first one (a typed `#[derive(Deserialize)]` stops at the first error).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::ops::Range;
use toml::Spanned;

/// A value and the byte range of its source text.
pub(crate) type Node = Spanned<Value>;

/// A TOML value whose children keep their spans.
#[derive(Debug)]
pub(crate) enum Value {
    String(String),
    Integer(i64),
    Float,
    Boolean(bool),
    /// A TOML date, time or date-time, in its TOML text form (`2021-03-31`).
    Datetime(String),
    Array(Vec<Node>),
    Table(Vec<(Key, Node)>),
}

impl Value {
    /// The TOML type name, for "expected X, found Y" messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Datetime(_) => "a date",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

/// A table key with its source span (absent only for keys `toml` gives none).
#[derive(Debug)]
pub(crate) struct Key {
    pub(crate) name: String,
    pub(crate) span: Option<Range<usize>>,
}

/// Parses a whole document. The error is `toml`'s own (syntax, duplicate key...).
pub(crate) fn parse_document(text: &str) -> Result<Node, toml::de::Error> {
    toml::from_str::<Node>(text)
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// Name under which `toml` hands a date-time to serde as a one-entry map.
const DATETIME_KEY: &str = "$__toml_private_datetime";

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Boolean(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Integer(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Integer(i64::try_from(v).unwrap_or(i64::MAX)))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Float)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if key.name == DATETIME_KEY && entries.is_empty() {
                let text: String = map.next_value()?;
                return Ok(Value::Datetime(text));
            }
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Value::Table(entries))
    }
}

/// Deserializes a key, asking for its span the way [`toml::Spanned`] does.
///
/// `toml` answers a spanned request with a three-field map (start, end, value) and
/// anything else (the marker key of a date-time) with a plain string, so this seed
/// accepts both. The field names are serde_spanned's protocol; the test
/// `tree::tests::keys_have_spans` fails if a `toml` upgrade changes it.
struct KeySeed;

const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
const SPANNED_START: &str = "$__serde_spanned_private_start";
const SPANNED_END: &str = "$__serde_spanned_private_end";
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";
const SPANNED_FIELDS: [&str; 3] = [SPANNED_START, SPANNED_END, SPANNED_VALUE];

impl<'de> de::DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_struct(SPANNED_NAME, &SPANNED_FIELDS, KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(Key {
            name: v.to_owned(),
            span: None,
        })
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Key, E> {
        Ok(Key {
            name: v,
            span: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
        let mut start = None;
        let mut end = None;
        let mut name = None;
        while let Some(field) = map.next_key::<String>()? {
            match field.as_str() {
                SPANNED_START => start = Some(map.next_value::<usize>()?),
                SPANNED_END => end = Some(map.next_value::<usize>()?),
                SPANNED_VALUE => name = Some(map.next_value::<String>()?),
                _ => return Err(de::Error::unknown_field(&field, &SPANNED_FIELDS)),
            }
        }
        let name = name.ok_or_else(|| de::Error::missing_field(SPANNED_VALUE))?;
        let span = match (start, end) {
            (Some(s), Some(e)) if s <= e => Some(s..e),
            _ => None,
        };
        Ok(Key { name, span })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(node: &Node) -> &[(Key, Node)] {
        match node.get_ref() {
            Value::Table(t) => t,
            other => panic!("not a table: {other:?}"),
        }
    }

    #[test]
    fn keys_have_spans() {
        let text = "alpha = 1\n[t]\nbeta = \"x\"\n";
        let doc = parse_document(text).unwrap();
        let top = table(&doc);
        assert_eq!(top[0].0.name, "alpha");
        assert_eq!(top[0].0.span, Some(0..5));
        assert_eq!(top[0].1.span(), 8..9);
        let inner = table(&top[1].1);
        let beta = inner[0].0.span.clone().unwrap();
        assert_eq!(&text[beta], "beta");
    }

    #[test]
    fn dates_and_nested_values_keep_spans() {
        let text = "d = 2021-03-31\na = [1, \"two\", { x = true }]\n";
        let doc = parse_document(text).unwrap();
        let top = table(&doc);
        assert!(matches!(top[0].1.get_ref(), Value::Datetime(s) if s == "2021-03-31"));
        let Value::Array(items) = top[1].1.get_ref() else {
            panic!("not an array")
        };
        assert_eq!(&text[items[1].span()], "\"two\"");
        let inner = table(&items[2]);
        assert_eq!(&text[inner[0].1.span()], "true");
    }
}
