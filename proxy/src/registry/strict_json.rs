//! A check that a JSON document names no key twice in any object.
//!
//! JSON parsers disagree about repeated keys: `serde_json` keeps the last, others the first.
//! A manifest that says `"layers"` twice would be validated by Shoal on one copy while a
//! client that reads the stored bytes acts on the other, so such documents are refused.
//! The walk is a serde visitor over the raw bytes: nothing is kept but one object's keys at
//! a time, and `serde_json`'s recursion limit bounds the depth.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// `Err` with the repeated key when an object in `bytes` names a key twice; `Ok` otherwise
/// (including for bytes that are not JSON at all, which the caller's parse reports).
pub fn check_unique_keys(bytes: &[u8]) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match Unique::deserialize(&mut de) {
        Err(e) if e.is_data() => Err(e.to_string()),
        _ => Ok(()),
    }
}

struct Unique;

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Unique, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        while seq.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value::<Unique>()?;
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("the key {key:?} appears twice")));
            }
        }
        Ok(Unique)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(doc: &str, ok: bool) {
        assert_eq!(check_unique_keys(doc.as_bytes()).is_ok(), ok, "{doc}");
    }

    #[test]
    fn repeated_keys_anywhere_are_found() {
        check(r#"{"a":1,"b":{"c":[1,{"d":2}]}}"#, true);
        check(r#"{"a":1,"a":1}"#, false);
        check(r#"{"a":{"b":1,"b":2}}"#, false);
        check(r#"{"a":[{"x":1},{"x":1,"x":2}]}"#, false);
        // Escapes spell the same key.
        check(r#"{"layers":[],"\u006cayers":[]}"#, false);
        // The same key in sibling objects is fine.
        check(r#"[{"a":1},{"a":2}]"#, true);
        // Not JSON: reported by the real parse, not here.
        check("{nope", true);
    }
}
