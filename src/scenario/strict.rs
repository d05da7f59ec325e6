//! Reading a parsed JSON document as the scenario format means it. serde_json's own
//! deserializer of a [`Value`] also reads an *array* where a struct is expected, field by
//! field in declaration order, so that `"ca": ["my CA", "ed25519", true]` or
//! `"hosts": [[["a.test"], "a"]]` would load — a form the schema does not allow, and one whose
//! problems no error path could point into (`hosts[0].names[0]` of an array). [`Strict`] is
//! serde_json's `&Value` deserializer less that one form; every message is serde_json's.

use serde::Deserialize;
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, VariantAccess, Visitor,
};
use serde_json::{Error, Map, Value};

/// A JSON document to deserialize strictly: structs only from objects.
#[derive(Clone, Copy)]
pub(super) struct Strict<'a>(pub(super) &'a Value);

fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Unexpected::Unsigned(u),
            (None, Some(i)) => Unexpected::Signed(i),
            (None, None) => Unexpected::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

impl<'de> Strict<'de> {
    fn invalid_type(self, expected: &dyn de::Expected) -> Error {
        de::Error::invalid_type(unexpected(self.0), expected)
    }
}

impl<'de> Deserializer<'de> for Strict<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => visitor.visit_u64(u),
                (None, Some(i)) => visitor.visit_i64(i),
                (None, None) => visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => visit_array(items, visitor),
            Value::Object(map) => visit_object(map, visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(map) => visit_object(map, visitor),
            // The one difference from serde_json: no struct from an array.
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::String(variant) => visitor.visit_enum(variant.as_str().into_deserializer()),
            Value::Object(map) => {
                let mut entries = map.iter();
                match (entries.next(), entries.next()) {
                    (Some((variant, value)), None) => {
                        visitor.visit_enum(Variant { variant, value })
                    }
                    _ => Err(de::Error::invalid_value(
                        Unexpected::Map,
                        &"map with a single key",
                    )),
                }
            }
            _ => Err(self.invalid_type(&"string or map")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map identifier
    }
}

fn visit_array<'de, V: Visitor<'de>>(items: &'de [Value], visitor: V) -> Result<V::Value, Error> {
    let mut seq = Items(items.iter());
    let value = visitor.visit_seq(&mut seq)?;
    if seq.0.len() == 0 {
        Ok(value)
    } else {
        Err(de::Error::invalid_length(
            items.len(),
            &"fewer elements in array",
        ))
    }
}

fn visit_object<'de, V: Visitor<'de>>(
    map: &'de Map<String, Value>,
    visitor: V,
) -> Result<V::Value, Error> {
    let mut entries = Entries {
        iter: map.iter(),
        value: None,
    };
    let value = visitor.visit_map(&mut entries)?;
    if entries.iter.len() == 0 {
        Ok(value)
    } else {
        Err(de::Error::invalid_length(
            map.len(),
            &"fewer elements in map",
        ))
    }
}

struct Items<'a>(std::slice::Iter<'a, Value>);

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0
            .next()
            .map(|item| seed.deserialize(Strict(item)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Entries<'a> {
    iter: serde_json::map::Iter<'a>,
    value: Option<&'a Value>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.iter.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(BorrowedStrDeserializer::new(key))
                    .map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(Strict(value)),
            None => Err(de::Error::custom("value is missing")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

/// The one entry of an object read as an enum: `{"variant": value}`.
struct Variant<'a> {
    variant: &'a str,
    value: &'a Value,
}

impl<'de> EnumAccess<'de> for Variant<'de> {
    type Error = Error;
    type Variant = Strict<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Strict<'de>), Error> {
        let variant = seed.deserialize(BorrowedStrDeserializer::new(self.variant))?;
        Ok((variant, Strict(self.value)))
    }
}

impl<'de> VariantAccess<'de> for Strict<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        <()>::deserialize(self)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(items) => visit_array(items, visitor),
            _ => Err(self.invalid_type(&"tuple variant")),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(map) => visit_object(map, visitor),
            _ => Err(self.invalid_type(&"struct variant")),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Deserialize, Strict};
    use crate::scenario::{CaSpec, HostSpec, KeyType};

    #[test]
    fn a_struct_is_read_from_an_object_only() {
        let ca = CaSpec::deserialize(Strict(&json!({"key": "ed25519"}))).expect("an object");
        assert_eq!(ca.key, KeyType::Ed25519);
        // serde_json itself reads the array by position.
        let array = json!(["my CA", "ed25519", true]);
        assert!(CaSpec::deserialize(&array).is_ok());
        let err = CaSpec::deserialize(Strict(&array)).expect_err("an array");
        assert_eq!(
            err.to_string(),
            "invalid type: sequence, expected struct CaSpec"
        );
        let err = HostSpec::deserialize(Strict(&json!([["a.test"]]))).expect_err("an array");
        assert_eq!(
            err.to_string(),
            "invalid type: sequence, expected struct HostSpec"
        );
    }

    #[test]
    fn messages_are_serde_jsons() {
        for (value, as_what) in [
            (json!({"seed": null, "hosts": []}), "null"),
            (json!({"seed": -1, "hosts": []}), "negative"),
            (json!({"seed": 1.5, "hosts": []}), "float"),
            (json!({"seed": "1", "hosts": []}), "string"),
            (json!({"hosts": {}}), "map for a list"),
            (
                json!({"hosts": [], "listeners": [{"name": "m", "alpn": ["h3"]}]}),
                "unknown unit variant",
            ),
            (
                json!({"hosts": [], "listeners": [{"name": "m", "alpn": [{"h2": 1}]}]}),
                "unit variant with a value",
            ),
            (
                json!({"hosts": [], "listeners": [{"name": "m", "alpn": [{"h2": null, "x": 1}]}]}),
                "two keys",
            ),
            (
                json!({"hosts": [], "listeners": [{"name": "m", "alpn": [7]}]}),
                "a number for an enum",
            ),
            (
                json!({"hosts": [], "ca": {"common_name": 7}}),
                "a number for a string",
            ),
            (json!({"hosts": [], "nope": 1}), "unknown field"),
        ] {
            let ours = crate::scenario::Scenario::deserialize(Strict(&value))
                .expect_err(as_what)
                .to_string();
            let theirs = crate::scenario::Scenario::deserialize(&value)
                .expect_err(as_what)
                .to_string();
            assert_eq!(ours, theirs, "{as_what}");
        }
        let fine = json!({"hosts": [], "listeners": [{"name": "m", "alpn": [{"h2": null}]}]});
        assert!(crate::scenario::Scenario::deserialize(Strict(&fine)).is_ok());
    }
}
