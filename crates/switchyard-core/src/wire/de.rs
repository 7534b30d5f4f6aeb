//! Deserialization in one pass for the typed request shapes the translating providers read.
//!
//! serde's derive buffers whenever it cannot tell from the first token what it is reading: a
//! struct with a `#[serde(flatten)]` catch-all map collects the whole object into a generic
//! tree of its own (every string copied) and deserializes the fields from that tree again, and
//! an untagged enum does the same to try each variant in turn, an internally tagged one to find
//! its tag. The shapes below (a struct whose unknown members go to `extra`; a string or an
//! array; a content part or block whose `type` comes first) are read straight from the input
//! instead. Serialization stays derived.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::json::Str;

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

/// An internally tagged enum (`"type"` names the variant) with a catch-all for the rest, as
/// `#[serde(tag = "type")]` with an `#[serde(untagged)] Other(Value)` variant derives it.
pub trait Tagged: Sized {
    /// The `type`s with a variant of their own.
    const TAGS: &'static [&'static str];
    /// The variant of `tag` (one of [`Self::TAGS`]) read from the object's other members.
    fn variant<'de, D: Deserializer<'de>>(tag: &str, rest: D) -> Result<Self, D::Error>;
    /// Anything else, kept as it came.
    fn other(value: Value) -> Self;
}

/// Reads a [`Tagged`] enum. The derive buffers every such object whole before it looks at the
/// tag; here an object whose first member is `type`, as every SDK writes it, has its variant read
/// straight from the members that follow. An object with `type` later (or none) is collected
/// and read as the derive reads it: a known tag's variant if its members fit, else
/// [`Tagged::other`]. The one difference: a first-member `type` whose variant's members do not
/// fit is an error naming them, where the derive would keep the object as the catch-all.
pub fn tag_first<'de, D: Deserializer<'de>, T: Tagged>(d: D) -> Result<T, D::Error> {
    d.deserialize_any(TagFirst(PhantomData))
}

struct TagFirst<T>(PhantomData<T>);

impl<'de, T: Tagged> Visitor<'de> for TagFirst<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut members = Map::new();
        match map.next_key::<Str<'de>>()? {
            None => return Ok(T::other(Value::Object(members))),
            Some(Str(key)) if key == "type" => {
                let tag: Value = map.next_value()?;
                if let Some(tag) = tag.as_str().filter(|t| T::TAGS.contains(t)) {
                    return T::variant(tag, MapAccessDeserializer::new(map));
                }
                members.insert("type".to_owned(), tag);
            }
            Some(Str(key)) => {
                let value = map.next_value()?;
                members.insert(key.into_owned(), value);
            }
        }
        while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
            let value = map.next_value()?;
            members.insert(key.into_owned(), value);
        }
        let whole = Value::Object(members);
        match whole.get("type").and_then(Value::as_str).filter(|t| T::TAGS.contains(t)) {
            Some(tag) => {
                let mut rest = whole.clone();
                rest.as_object_mut().map(|m| m.remove("type"));
                Ok(T::variant(tag, rest).unwrap_or_else(|_| T::other(whole)))
            }
            None => Ok(T::other(whole)),
        }
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        Value::deserialize(SeqAccessDeserializer::new(seq)).map(T::other)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        Ok(T::other(Value::from(v)))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        Ok(T::other(Value::from(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Ok(T::other(Value::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Ok(T::other(Value::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        Ok(T::other(Value::from(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok(T::other(Value::Null))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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

    #[derive(Debug, PartialEq)]
    enum Part {
        Text(Shape),
        Other(Value),
    }
    impl Tagged for Part {
        const TAGS: &'static [&'static str] = &["text"];
        fn variant<'de, D: Deserializer<'de>>(_: &str, rest: D) -> Result<Self, D::Error> {
            Shape::deserialize(rest).map(Part::Text)
        }
        fn other(value: Value) -> Self {
            Part::Other(value)
        }
    }
    impl<'de> Deserialize<'de> for Part {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            tag_first(d)
        }
    }

    #[test]
    fn a_tagged_enum_reads_as_the_derive_reads_it() {
        let text = |v: &str| serde_json::from_str::<Part>(v);
        let shape = Part::Text(Shape { name: "a".into(), kind: None, count: 0, extra: Map::from_iter([("x".to_owned(), json!(1))]) });
        // `type` first (the fast way) or later (collected first): the same variant, `type` not in `extra`.
        assert_eq!(text(r#"{"type":"text","name":"a","x":1}"#).unwrap(), shape);
        assert_eq!(text(r#"{"name":"a","type":"text","x":1}"#).unwrap(), shape);
        assert_eq!(serde_json::from_value::<Part>(json!({"x": 1, "name": "a", "type": "text"})).unwrap(), shape);
        // Unknown types, no type, a later type whose members do not fit, and non-objects: kept whole.
        for v in [r#"{"type":"image","url":"u"}"#, r#"{"name":"a"}"#, r#"{"name":5,"type":"text"}"#, "{}", r#""hi""#, "[1,{}]", "3", "null", "true"] {
            assert_eq!(text(v).unwrap(), Part::Other(serde_json::from_str(v).unwrap()), "{v}");
        }
        // The one difference from the derive: a first-member type whose members do not fit.
        let e = text(r#"{"type":"text","name":5}"#).unwrap_err().to_string();
        assert!(e.contains("invalid type: integer `5`, expected a string"), "{e}");
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
