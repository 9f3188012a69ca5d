//! [`Json`]: a step's input or output as JSON text.
//!
//! The journal keeps what a step was given and what it returned as JSON. The engine serializes
//! a step's result once, straight to text; stores keep that text and hand it back; a replay
//! deserializes the text into the step's type. No [`Value`] tree is built in between: building,
//! cloning, printing and dropping trees cost more than the text they describe.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// JSON text, checked to be one valid JSON value when it was made, and kept as it is.
///
/// - Make one with [`Json::encode`] (from any serializable value, without a [`Value`] in
///   between), [`Json::from_string`] (from text, which it checks) or `From<Value>`.
/// - Read it with [`Json::decode`], [`Json::field`] (one field of an object, skipping the
///   rest), [`Json::to_value`], or as text with [`Json::get`] and `Display`.
/// - It serializes as the JSON value itself, not as a string holding it: a serialized
///   [`StepRecord`](crate::StepRecord) has the same shape as when its fields were `Value`s.
///   It deserializes from any JSON value, whose text it keeps (see the note on
///   deserialization below).
///
/// **Equality compares the text.** Two texts of the same value compare unequal when they
/// differ in whitespace, key order or number spelling (`1.0` and `1e0`). The engine's own
/// texts are canonical for its uses: a value encodes to the same text every time, and a store
/// returns the text it was given, so a record read back equals the record written. To compare
/// JSON written by different hands, compare [`Json::to_value`]s.
///
/// Deserializing needs a deserializer that can hand over the raw text: `serde_json`'s
/// `from_str`, `from_slice`, `from_reader` and `from_value` can; formats other than JSON, and
/// serde's buffering (`#[serde(flatten)]`, internally tagged and untagged enums) cannot.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Json(Box<RawValue>);

impl Json {
    /// `value`'s JSON, serialized straight to text.
    ///
    /// Fails as `serde_json::to_string` does: a map with keys that are not strings or numbers,
    /// or a `Serialize` implementation that fails.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Json> {
        serde_json::value::to_raw_value(value).map(Json)
    }

    /// `text` as JSON, checked to hold exactly one JSON value. Whitespace around the value is
    /// trimmed; the value's own text is kept as it is.
    pub fn from_string(text: String) -> serde_json::Result<Json> {
        RawValue::from_string(text).map(Json)
    }

    /// The JSON `null`.
    pub fn null() -> Json {
        Json(RawValue::NULL.to_owned())
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The JSON text, owned (without a copy).
    pub fn into_string(self) -> String {
        let text: Box<str> = self.0.into();
        text.into()
    }

    /// The text deserialized as a `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_str(self.get())
    }

    /// Field `name` of a JSON object, deserialized as a `T`; `Ok(None)` when the object has no
    /// such field. The other fields are skipped, not deserialized. Fails when the text is not
    /// an object or the field is not a `T`. When a key appears twice, the last one counts (as
    /// in a [`Value`]).
    pub fn field<T: DeserializeOwned>(&self, name: &str) -> serde_json::Result<Option<T>> {
        let mut de = serde_json::Deserializer::from_str(self.get());
        let found = FieldSeed::<T> {
            name,
            field: std::marker::PhantomData,
        }
        .deserialize(&mut de)?;
        de.end()?;
        Ok(found)
    }

    /// The text as a [`Value`] tree, for code that wants one (step observers, say).
    ///
    /// The text is valid JSON, yet a `Value` cannot hold all of it: a number beyond `f64`'s
    /// range, such as `1e400`. Such text comes back as a string holding the text.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.get()).unwrap_or_else(|_| Value::String(self.get().to_owned()))
    }
}

impl From<&Value> for Json {
    /// The value's JSON text, as `Value`'s `Display` prints it.
    fn from(value: &Value) -> Self {
        // A `Value` always serializes: its map keys are strings and its numbers are finite.
        Json::encode(value).unwrap_or_else(|_| Json::null())
    }
}

impl From<Value> for Json {
    /// The value's JSON text, as `Value`'s `Display` prints it.
    fn from(value: Value) -> Self {
        Json::from(&value)
    }
}

impl From<Json> for String {
    fn from(json: Json) -> Self {
        json.into_string()
    }
}

impl PartialEq for Json {
    /// Whether the texts are the same (see the type's note on equality).
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Json {}

impl fmt::Debug for Json {
    /// `Json(` the text `)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Json")
            .field(&format_args!("{}", self.get()))
            .finish()
    }
}

impl fmt::Display for Json {
    /// The JSON text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

/// Reads field `name` of an object as a `T` and skips the others.
struct FieldSeed<'n, T> {
    name: &'n str,
    field: std::marker::PhantomData<fn() -> T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for FieldSeed<'_, T> {
    type Value = Option<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for FieldSeed<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<Key<'_>>()? {
            if key.0 == self.name {
                found = Some(map.next_value::<T>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// An object key, borrowed from the text when it has no escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an object key")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(v.into()))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(v.to_owned().into()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(v.into()))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Reply {
        text: String,
        tokens: Option<u32>,
        tags: Vec<String>,
    }

    fn reply() -> Reply {
        Reply {
            text: "héllo \"✓\"\n".into(),
            tokens: Some(7),
            tags: vec!["a".into(), "b".into()],
        }
    }

    #[test]
    fn encode_writes_the_text_serde_json_writes() {
        let r = reply();
        let j = Json::encode(&r).unwrap();
        assert_eq!(j.get(), serde_json::to_string(&r).unwrap());
        assert_eq!(j.to_string(), j.get());
        assert_eq!(Json::encode("x").unwrap().get(), r#""x""#);
        assert_eq!(Json::encode(&()).unwrap(), Json::null());
        assert_eq!(Json::null().get(), "null");
    }

    #[test]
    fn decode_round_trips_a_struct() {
        let j = Json::encode(&reply()).unwrap();
        assert_eq!(j.decode::<Reply>().unwrap(), reply());
        assert_eq!(
            j.to_value(),
            json!({ "text": "héllo \"✓\"\n", "tokens": 7, "tags": ["a", "b"] })
        );
        assert!(j.decode::<Vec<u32>>().is_err(), "an object is not a list");
        // Through a `String` and back, the text is the same.
        let again = Json::from_string(j.clone().into_string()).unwrap();
        assert_eq!(again, j);
        assert_eq!(again.decode::<Reply>().unwrap(), reply());
    }

    #[test]
    fn from_string_checks_the_text() {
        for bad in [
            "",
            "   ",
            "{",
            "[1,]",
            "{\"a\":1} {\"b\":2}",
            "nul",
            "'x'",
            "1 2",
        ] {
            assert!(
                Json::from_string(bad.to_owned()).is_err(),
                "{bad:?} is not JSON"
            );
        }
        let j = Json::from_string("  {\"b\": 1,  \"a\": [true, null]}\n".to_owned()).unwrap();
        assert_eq!(
            j.get(),
            "{\"b\": 1,  \"a\": [true, null]}",
            "trimmed, else kept"
        );
        assert_eq!(j.to_value(), json!({ "a": [true, null], "b": 1 }));
    }

    #[test]
    fn serialize_embeds_the_raw_json() {
        #[derive(Serialize, Deserialize)]
        struct Holder {
            output: Json,
            input: Option<Json>,
        }
        let h = Holder {
            output: Json::from_string("{\"n\": [1, 2.5]}".to_owned()).unwrap(),
            input: Some(Json::encode("a \"b\"").unwrap()),
        };
        let text = serde_json::to_string(&h).unwrap();
        assert_eq!(text, r#"{"output":{"n": [1, 2.5]},"input":"a \"b\""}"#);
        // As a value, not a string holding it.
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["output"]["n"][1], json!(2.5));
        // Back again, each field keeps its text, from text or from a `Value`.
        let back: Holder = serde_json::from_str(&text).unwrap();
        assert_eq!(back.output, h.output);
        assert_eq!(back.input, h.input);
        let from_value: Holder = serde_json::from_value(v).unwrap();
        assert_eq!(from_value.output.to_value(), h.output.to_value());
        // Pretty printing leaves the embedded text as it is, so it reads back the same.
        let pretty = serde_json::to_string_pretty(&h).unwrap();
        let back: Holder = serde_json::from_str(&pretty).unwrap();
        assert_eq!(back.output, h.output);
    }

    #[test]
    fn equality_is_of_the_text() {
        let a = Json::from_string("{\"a\":1,\"b\":2}".to_owned()).unwrap();
        let b = Json::from_string("{\"b\":2,\"a\":1}".to_owned()).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.to_value(), b.to_value());
        assert_eq!(
            Json::from(json!({ "b": 2, "a": 1 })),
            a,
            "a `Value` prints keys sorted"
        );
    }

    #[test]
    fn field_reads_one_field_and_skips_the_rest() {
        let j = Json::encode(&json!({
            "parts": [{ "text": "x", "deep": { "usage": 0 } }],
            "usage": { "requests": 1 },
            "z": null,
        }))
        .unwrap();
        assert_eq!(
            j.field::<Value>("usage").unwrap(),
            Some(json!({ "requests": 1 }))
        );
        assert_eq!(j.field::<Value>("missing").unwrap(), None);
        assert!(j.field::<u32>("usage").is_err(), "not a u32");
        assert!(
            Json::encode(&[1, 2])
                .unwrap()
                .field::<Value>("usage")
                .is_err()
        );
        assert!(Json::null().field::<Value>("usage").is_err());
        let escaped = Json::from_string(r#"{"us\u0061ge": 3, "usage": 4}"#.to_owned()).unwrap();
        assert_eq!(
            escaped.field::<u32>("usage").unwrap(),
            Some(4),
            "the last one counts"
        );
    }

    #[test]
    fn to_value_keeps_text_a_value_cannot_hold() {
        let j = Json::from_string("1e400".to_owned()).unwrap();
        assert_eq!(j.to_value(), json!("1e400"));
    }

    #[test]
    fn debug_shows_the_text() {
        let j = Json::encode(&json!({ "a": "b" })).unwrap();
        assert_eq!(format!("{j:?}"), r#"Json({"a":"b"})"#);
    }
}
