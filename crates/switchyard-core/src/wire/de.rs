//! Deserialization in one pass for the typed request shapes the translating providers read.
//!
//! serde's derive buffers whenever it cannot tell from the first token what it is reading: a
//! struct with a `#[serde(flatten)]` catch-all map collects the whole object into a generic
//! tree of its own (every string copied) and deserializes the fields from that tree again, and
//! an untagged enum does the same to try each variant in turn. The shapes below (a struct whose
//! unknown members go to `extra`; a string or an array) are read straight from the input
//! instead. Serialization stays derived.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// `impl Deserialize` for a struct with named members and an `extra: Map<String, Value>` that
/// receives every other member, as `#[serde(flatten)] extra` would, without the buffering.
///
/// ```ignore
/// object_with_extra!(Message {
///     required: role;
///     optional: content, name, kind = "type";
/// });
/// ```
///
/// A `required` member missing is a `missing field` error; an `optional` one takes its type's
/// `Default` (`None` for an `Option`, as `#[serde(default)]` does), `null` included for an
/// `Option`. A member named twice is a `duplicate field` error, as with the derive. `field =
/// "name"` reads a member whose JSON name is not the field's.
macro_rules! object_with_extra {
    ($ty:ident {
        required: $($req:ident $(= $req_name:literal)?),* ;
        optional: $($opt:ident $(= $opt_name:literal)?),* $(;)?
    }) => {
        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                struct V;
                impl<'de> ::serde::de::Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        f.write_str(concat!("struct ", stringify!($ty)))
                    }
                    fn visit_map<A: ::serde::de::MapAccess<'de>>(self, mut map: A) -> ::std::result::Result<$ty, A::Error> {
                        use ::serde::de::Error as _;
                        $(let mut $req = None;)*
                        $(let mut $opt = None;)*
                        let mut extra = ::serde_json::Map::new();
                        while let Some($crate::wire::json::Str(key)) = map.next_key()? {
                            $(
                                if key == $crate::wire::de::member_name!($req $(, $req_name)?) {
                                    if $req.is_some() {
                                        return Err(A::Error::duplicate_field($crate::wire::de::member_name!($req $(, $req_name)?)));
                                    }
                                    $req = Some(map.next_value()?);
                                    continue;
                                }
                            )*
                            $(
                                if key == $crate::wire::de::member_name!($opt $(, $opt_name)?) {
                                    if $opt.is_some() {
                                        return Err(A::Error::duplicate_field($crate::wire::de::member_name!($opt $(, $opt_name)?)));
                                    }
                                    $opt = Some(map.next_value()?);
                                    continue;
                                }
                            )*
                            let value: ::serde_json::Value = map.next_value()?;
                            extra.insert(key.into_owned(), value);
                        }
                        Ok($ty {
                            $($req: $req.ok_or_else(|| A::Error::missing_field($crate::wire::de::member_name!($req $(, $req_name)?)))?,)*
                            $($opt: $opt.unwrap_or_default(),)*
                            extra,
                        })
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}
pub(crate) use object_with_extra;

/// A member's JSON name: the field's own, or the one given.
macro_rules! member_name {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident, $name:literal) => {
        $name
    };
}
pub(crate) use member_name;

/// A value that is a string or an array of `T` (message content, a system prompt).
pub enum StringOrSeq<T> {
    String(String),
    Seq(Vec<T>),
}

impl<T> StringOrSeq<T> {
    /// Reads one, with `expecting` naming it in errors. (An untagged enum of the two would first
    /// buffer the value whole, to try each variant.)
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D, expecting: &'static str) -> Result<Self, D::Error>
    where
        T: Deserialize<'de>,
    {
        struct V<T>(&'static str, PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = StringOrSeq<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StringOrSeq::String(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(StringOrSeq::String(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(item) = seq.next_element()? {
                    out.push(item);
                }
                Ok(StringOrSeq::Seq(out))
            }
        }
        d.deserialize_any(V(expecting, PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::*;

    #[derive(Debug, PartialEq)]
    struct Shape {
        name: String,
        kind: Option<String>,
        count: u32,
        extra: Map<String, Value>,
    }
    object_with_extra!(Shape {
        required: name;
        optional: kind = "type", count;
    });

    #[test]
    fn known_members_are_typed_and_the_rest_kept_in_order() {
        let s: Shape = serde_json::from_str(r#"{"zeta":[1,{"a":null}],"type":"x","name":"n\"q","count":3,"alpha":"\u00e9"}"#).unwrap();
        assert_eq!(s.name, "n\"q");
        assert_eq!(s.kind.as_deref(), Some("x"));
        assert_eq!(s.count, 3);
        assert_eq!(Value::Object(s.extra), json!({"zeta": [1, {"a": null}], "alpha": "é"}));
        // An escaped key is still recognised; from a `Value` as from text.
        let s: Shape = serde_json::from_str(r#"{"n\u0061me":"a"}"#).unwrap();
        assert_eq!((s.name.as_str(), s.kind, s.count), ("a", None, 0));
        let s: Shape = serde_json::from_value(json!({"name": "v", "type": null, "more": true})).unwrap();
        assert_eq!((s.name.as_str(), s.kind, s.extra.len()), ("v", None, 1));
    }

    #[test]
    fn missing_duplicate_and_mistyped_members_are_errors_that_name_them() {
        let e = serde_json::from_str::<Shape>(r#"{"type":"x"}"#).unwrap_err().to_string();
        assert!(e.contains("missing field `name`"), "{e}");
        let e = serde_json::from_str::<Shape>(r#"{"name":"a","type":"x","type":"y"}"#).unwrap_err().to_string();
        assert!(e.contains("duplicate field `type`"), "{e}");
        let e = serde_json::from_str::<Shape>(r#"{"name":"a","count":"3"}"#).unwrap_err().to_string();
        assert!(e.contains("invalid type: string \"3\", expected u32"), "{e}");
        let e = serde_json::from_str::<Shape>(r#"["a"]"#).unwrap_err().to_string();
        assert!(e.contains("expected struct Shape"), "{e}");
    }

    #[test]
    fn a_string_or_an_array() {
        let read = |v: &str| StringOrSeq::<u8>::deserialize(&mut serde_json::Deserializer::from_str(v), "text or bytes");
        assert!(matches!(read(r#""a\nb""#), Ok(StringOrSeq::String(s)) if s == "a\nb"));
        assert!(matches!(read("[1,2]"), Ok(StringOrSeq::Seq(v)) if v == [1, 2]));
        let e = read("{}").err().unwrap().to_string();
        assert!(e.contains("expected text or bytes"), "{e}");
        let e = read("[1,300]").err().unwrap().to_string();
        assert!(e.contains("expected u8"), "{e}");
    }
}
