//! Externally tagged enums — `{"respond": {…}}`, `{"pause_ms": 5}` or a bare `"close"` —
//! whose object form takes exactly one key, and says so at the path of the key that is one
//! too many, as a struct says "unknown field" at the path of the field. serde's own enum
//! deserialization rejects `{"respond": {…}, "typo": 1}` as a whole ("expected map with a
//! single key") without naming the key; the derived code (`#[serde(remote = "Self")]`) still
//! reads the one variant, this wrapper reads everything around it.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{MapAccessDeserializer, StrDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

/// An enum whose serde-derived deserializer is an inherent function (`remote = "Self"`).
pub(super) trait Derived<'de>: Sized {
    /// The derived deserializer.
    fn derived<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error>;
}

/// Implements `Serialize` and `Deserialize` of an enum declared with
/// `#[serde(remote = "Self")]`: serialization as derived, deserialization through
/// [`deserialize`].
macro_rules! one_key_enum {
    ($ty:ident) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                $ty::serialize(self, serializer)
            }
        }

        impl<'de> $crate::scenario::tagged::Derived<'de> for $ty {
            fn derived<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
                $ty::deserialize(de)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
                $crate::scenario::tagged::deserialize(de)
            }
        }
    };
}
pub(super) use one_key_enum;

/// Reads a string (a unit variant) or an object of exactly one key (any variant).
pub(super) fn deserialize<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Derived<'de>,
{
    de.deserialize_any(OneKey(PhantomData))
}

struct OneKey<T>(PhantomData<T>);

impl<'de, T: Derived<'de>> Visitor<'de> for OneKey<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a string or an object with one key, one of {}",
            variant_list::<T>()
        )
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        T::derived(StrDeserializer::new(text))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut counted = Counted {
            map: &mut map,
            keys: 0,
            variants: PhantomData::<T>,
        };
        let value = T::derived(MapAccessDeserializer::new(&mut counted))?;
        // Any key after the variant is one too many; the error is raised while the key is
        // read, so that its path names the key.
        if map.next_key_seed(SecondKey(PhantomData::<T>))?.is_some() {
            unreachable!("SecondKey never reads a key successfully");
        }
        Ok(value)
    }
}

/// Passes a map through, turning "no key at all" into an error that lists the variants.
struct Counted<'a, A, T> {
    map: &'a mut A,
    keys: usize,
    variants: PhantomData<T>,
}

impl<'de, A: MapAccess<'de>, T: Derived<'de>> MapAccess<'de> for Counted<'_, A, T> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let key = self.map.next_key_seed(seed)?;
        if key.is_none() && self.keys == 0 {
            return Err(de::Error::custom(format!(
                "an empty object: give exactly one key, one of {}",
                variant_list::<T>()
            )));
        }
        self.keys += 1;
        Ok(key)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// A key after the variant's: always an error, at that key.
struct SecondKey<T>(PhantomData<T>);

impl<'de, T: Derived<'de>> DeserializeSeed<'de> for SecondKey<T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de, T: Derived<'de>> Visitor<'de> for SecondKey<T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no second key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<(), E> {
        Err(E::custom(format!(
            "unexpected second key `{key}`: this object takes exactly one key, one of {}",
            variant_list::<T>()
        )))
    }
}

/// The variant names of `T`, as serde knows them, quoted and comma-separated.
fn variant_list<'de, T: Derived<'de>>() -> String {
    let names = match T::derived(VariantsProbe) {
        Err(Probed(names)) => names,
        Ok(_) => &[],
    };
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A deserializer that only learns the variant names a derived enum asks for.
struct VariantsProbe;

#[derive(Debug)]
struct Probed(&'static [&'static str]);

impl fmt::Display for Probed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("variant names")
    }
}

impl std::error::Error for Probed {}

impl de::Error for Probed {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Probed(&[])
    }
}

impl<'de> Deserializer<'de> for VariantsProbe {
    type Error = Probed;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        Err(Probed(&[]))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Probed> {
        Err(Probed(variants))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}
