//! Zero-copy helpers over raw JSON: walk an object's top-level entries without building a tree.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::scan::TextShape;

/// `serde_json::from_slice`, faster: the input is checked as UTF-8 once, whole, and read as a
/// `str`, where `from_slice` checks each string it reads on its own (a third of the time of
/// an event of short keys and values: criterion, Gemini stream events). The same value, or
/// the same error: input that is not UTF-8 is left to `from_slice`.
pub fn from_slice<'a, T: de::Deserialize<'a>>(data: &'a [u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(data) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(data),
    }
}

/// A JSON string (an object key, a text), borrowed from the input unless it contained escapes.
/// (serde fills a `Cow<str>` borrowed only as a field of its own, not inside an `Option`.)
pub struct Str<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> de::Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// The entries of a JSON object, in order, values kept raw.
pub type Entries<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

/// Splits a JSON object into its top-level entries without parsing the values.
pub fn entries(json: &str) -> Result<Entries<'_>, serde_json::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Entries<'de>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
            while let Some(Str(k)) = map.next_key::<Str<'de>>()? {
                out.push((k, map.next_value::<&'de RawValue>()?));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(json);
    let out = de.deserialize_map(V)?;
    de.end()?;
    Ok(out)
}

/// Splits a JSON array into its raw elements.
pub fn elements(json: &str) -> Result<Vec<&RawValue>, serde_json::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<&'de RawValue>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1));
            while let Some(v) = seq.next_element::<&'de RawValue>()? {
                out.push(v);
            }
            Ok(out)
        }
    }
    serde_json::Deserializer::from_str(json).deserialize_seq(V)
}

/// A raw value's string, borrowed when it has no escapes; `None` if it is not a string.
pub fn as_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let s = raw.get();
    if s.len() >= 2 && s.starts_with('"') && !s.contains('\\') {
        return Some(Cow::Borrowed(&s[1..s.len() - 1]));
    }
    if s.starts_with('"') { serde_json::from_str::<String>(s).ok().map(Cow::Owned) } else { None }
}

/// True for `null`, `""`, `[]` and `{}` (ignoring whitespace).
pub fn is_empty(raw: &RawValue) -> bool {
    let s = raw.get();
    if matches!(s, "null" | "\"\"" | "[]" | "{}") {
        return true;
    }
    let inner: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    matches!(inner.as_str(), "[]" | "{}")
}

/// Appends `"key":` to `out` (a JSON object member name).
pub fn write_key(out: &mut Vec<u8>, key: &str) {
    write_str(out, key);
    out.push(b':');
}

/// Appends `s` as a JSON string.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("writing a string to a Vec cannot fail");
    }
}

/// The string of `doc` when `shape` matches the whole of it, as serde_json would read it;
/// `None` when it does not match, or where serde_json would fail (a raw control character,
/// bad UTF-8, a bad escape): then parse `doc`. Without escapes, borrowed from `doc`.
pub fn shaped_str<'a>(shape: &TextShape, doc: &'a [u8]) -> Option<Cow<'a, str>> {
    let m = shape.matches_at(doc, 0).filter(|m| m.end == doc.len())?;
    if m.escaped {
        return from_slice::<Str<'_>>(&doc[m.text.start - 1..m.text.end + 1]).ok().map(|s| s.0);
    }
    let raw = &doc[m.text];
    if raw.iter().any(|&b| b < 0x20) {
        return None;
    }
    std::str::from_utf8(raw).ok().map(Cow::Borrowed)
}

/// Teaches `shape` the bytes of `doc` around `text`, a string value read in place from `doc`
/// (serde_json borrows a string without escapes): the next documents of the same bytes around
/// another string are read by [`shaped_str`]. Nothing is learned from an empty string or one
/// that is not inside `doc` (decoded from escapes).
pub fn learn_shape(shape: &mut TextShape, doc: &[u8], t: &str) {
    let at = (t.as_ptr() as usize).wrapping_sub(doc.as_ptr() as usize);
    if !t.is_empty() && at > 0 && at < doc.len() && doc[at - 1] == b'"' && doc.get(at + t.len()) == Some(&b'"') {
        shape.learn(doc, 0, at..at + t.len(), doc.len());
    }
}

/// A serialized JSON document with one string value left open, for writing it again and again
/// with different strings there: what serializing the whole document would give, for two copies
/// and the string's escaping (the translation of a stream's text deltas).
#[derive(Clone, Debug)]
pub struct StringSlot {
    before: Vec<u8>,
    after: Vec<u8>,
}

impl StringSlot {
    /// `doc` split at the empty string value of its last `"name":""` member, `None` if it has
    /// none. The slot must be the last such member; names and strings before it cannot match
    /// by accident, as their quotes are escaped.
    pub fn at_last(doc: &[u8], name: &str) -> Option<StringSlot> {
        let mut member = Vec::with_capacity(name.len() + 5);
        write_key(&mut member, name);
        member.extend_from_slice(b"\"\"");
        let at = memchr::memmem::rfind(doc, &member)? + member.len() - 2;
        Some(StringSlot { before: doc[..at].to_vec(), after: doc[at + 2..].to_vec() })
    }

    /// The document with `text`, escaped as serde_json escapes it, in the slot.
    pub fn fill(&self, text: &str) -> bytes::Bytes {
        let mut out = Vec::with_capacity(self.filled_len(text));
        self.fill_into(&mut out, text);
        bytes::Bytes::from(out)
    }

    /// Appends what [`StringSlot::fill`] gives to `out`.
    pub fn fill_into(&self, out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(&self.before);
        write_str(out, text);
        out.extend_from_slice(&self.after);
    }

    /// About the length of the document with `text` in the slot (exact unless `text` needs
    /// more than a few escapes).
    pub fn filled_len(&self, text: &str) -> usize {
        self.before.len() + text.len() + 8 + self.after.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_slice_gives_what_serde_json_gives() {
        type V = serde_json::Value;
        let inputs: [&[u8]; 7] = [
            b"{\"a\":\"\\u00e9 \\\" x\",\"b\":[1,2.5,null,true],\"c\":{\"d\":\"Z\xc3\xbcrich\"}}",
            b"  [] ",
            br#"{"a":1,}"#,
            b"{\"a\":\"\xff\"}",
            b"\xff",
            br#"{"a":"x"} trailing"#,
            b"",
        ];
        for input in inputs {
            let ours = from_slice::<V>(input).map_err(|e| e.to_string());
            let theirs = serde_json::from_slice::<V>(input).map_err(|e| e.to_string());
            assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(input));
        }
        let borrowed: Str<'_> = from_slice(br#""plain""#).unwrap();
        assert!(matches!(borrowed.0, Cow::Borrowed("plain")));
    }

    #[test]
    fn a_string_slot_filled_is_the_document_serialized_whole() {
        let doc = |text: &str| serde_json::to_vec(&serde_json::json!({"model": "a \"content\":\"\" b", "delta": {"content": text}, "n": 1})).unwrap();
        let slot = StringSlot::at_last(&doc(""), "content").expect("has the member");
        for text in ["", "plain", "\"quoted\" \\ / back", "line\nbreak\ttab\r", "\u{0}\u{1f}\u{7f}", "Zürich 🌤 \u{2028}"] {
            assert_eq!(slot.fill(text).to_vec(), doc(text), "{text:?}");
        }
        assert!(StringSlot::at_last(br#"{"content":"x"}"#, "content").is_none(), "only an empty value is a slot");
        assert!(StringSlot::at_last(br#"{"text":""}"#, "content").is_none());
    }

    #[test]
    fn a_str_borrows_unless_escaped_even_inside_an_option() {
        #[derive(serde::Deserialize)]
        struct Peek<'a> {
            #[serde(borrow)]
            plain: Option<Str<'a>>,
            #[serde(borrow)]
            escaped: Option<Str<'a>>,
        }
        let p: Peek<'_> = serde_json::from_str(r#"{"plain":"a b","escaped":"a\"b"}"#).unwrap();
        assert!(matches!(p.plain, Some(Str(Cow::Borrowed("a b")))));
        assert!(matches!(p.escaped, Some(Str(Cow::Owned(ref s))) if s == "a\"b"));
    }

    #[test]
    fn entries_keep_raw_values_and_order() {
        let e = entries(r#"{"b": [1, 2], "a\u0041": {"x": "y"}, "c": null}"#).unwrap();
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["b", "aA", "c"]);
        assert_eq!(e[0].1.get(), "[1, 2]");
        assert!(entries("[1]").is_err());
        assert!(entries(r#"{"a":1} x"#).is_err());
    }

    #[test]
    fn strings_and_emptiness() {
        let raw: &RawValue = serde_json::from_str(r#""he said \"hi\"""#).unwrap();
        assert_eq!(as_str(raw).unwrap(), "he said \"hi\"");
        let raw: &RawValue = serde_json::from_str("12").unwrap();
        assert!(as_str(raw).is_none());
        for s in ["null", "\"\"", "[ ]", "{}"] {
            assert!(is_empty(serde_json::from_str(s).unwrap()), "{s}");
        }
        assert!(!is_empty(serde_json::from_str("\"a\"").unwrap()));
        let mut out = Vec::new();
        write_str(&mut out, "a\"b\n");
        assert_eq!(out, br#""a\"b\n""#);
    }
}
