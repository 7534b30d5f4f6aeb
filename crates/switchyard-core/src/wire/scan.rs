//! A minimal JSON structure scanner for the hot path: it finds the byte ranges of an object's
//! members and an array's elements in one pass, skipping over values without decoding them, so
//! a response can be rewritten by splicing (keep a member, drop one, replace one) at the cost of
//! reading each byte about once. It checks structure (brackets, strings, separators); the
//! contents of numbers and literals are not validated, as they are relayed untouched.

use std::ops::Range;

/// A structural error, with the byte offset where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanError(pub usize, pub &'static str);

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid JSON at byte {}: {}", self.0, self.1)
    }
}

pub type Result<T> = std::result::Result<T, ScanError>;

/// An object member: the key's text between its quotes (still escaped), whether it contains
/// escapes, and the value's byte range in the input.
pub struct Member<'a> {
    pub key: &'a [u8],
    pub key_escaped: bool,
    pub value: Range<usize>,
}

const MAX_DEPTH: usize = 256;

fn ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// Skips the string starting at `i` (its opening quote); returns the index after the closing
/// quote and whether it had escapes.
fn string_end(s: &[u8], i: usize) -> Result<(usize, bool)> {
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        match quote_or_backslash(s, j) {
            None => return Err(ScanError(i, "unterminated string")),
            Some(at) => {
                if s[at] == b'"' {
                    return Ok((at + 1, escaped));
                }
                escaped = true;
                j = at + 2;
                if j > s.len() {
                    return Err(ScanError(at, "unterminated escape"));
                }
            }
        }
    }
}

/// The first `"` or `\` at or after `from`. Most strings in an answer are short (keys, ids,
/// enum values): the first 32 bytes are tested 16 at a time with SSE2 (every x86-64 has it;
/// elsewhere 8 at a time in a register), as setting up `memchr` costs more than such a string;
/// longer strings go to `memchr`.
#[inline]
#[cfg(target_arch = "x86_64")]
fn quote_or_backslash(s: &[u8], from: usize) -> Option<usize> {
    use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8};
    let rest = s.get(from..)?;
    let mut k = 0;
    while k < 32 && k + 16 <= rest.len() {
        // SAFETY: SSE2 is part of x86-64; the 16 bytes read are in `rest` (checked above) and
        // `_mm_loadu_si128` takes any alignment.
        let mask = unsafe {
            let v = _mm_loadu_si128(rest.as_ptr().add(k).cast::<__m128i>());
            let hits = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8)), _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8)));
            _mm_movemask_epi8(hits) as u32
        };
        if mask != 0 {
            return Some(from + k + mask.trailing_zeros() as usize);
        }
        k += 16;
    }
    swar_quote_or_backslash(rest, k).map(|p| from + p)
}

/// [`quote_or_backslash`] without SIMD.
#[inline]
#[cfg(not(target_arch = "x86_64"))]
fn quote_or_backslash(s: &[u8], from: usize) -> Option<usize> {
    swar_quote_or_backslash(s.get(from..)?, 0).map(|p| from + p)
}

/// The first `"` or `\` in `rest` at or after `k`: up to 32 bytes 8 at a time in a register
/// (and the last few of a short input), the rest by `memchr`.
#[inline]
fn swar_quote_or_backslash(rest: &[u8], mut k: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Marks the bytes of `w` equal to `b` (exactly for the lowest one; bytes above a match may
    // be marked falsely, which the lowest-match search never looks at).
    fn matches(w: u64, b: u8) -> u64 {
        let x = w ^ (ONES * u64::from(b));
        x.wrapping_sub(ONES) & !x & HIGHS
    }
    while k < 32 && k + 8 <= rest.len() {
        let w = u64::from_le_bytes(rest[k..k + 8].try_into().expect("8 bytes"));
        let m = matches(w, b'"') | matches(w, b'\\');
        if m != 0 {
            return Some(k + (m.trailing_zeros() / 8) as usize);
        }
        k += 8;
    }
    memchr::memchr2(b'"', b'\\', &rest[k..]).map(|p| k + p)
}

/// Skips one value starting at `i` (no leading whitespace); returns the index after it.
fn value_end(s: &[u8], i: usize, depth: usize) -> Result<usize> {
    if depth > MAX_DEPTH {
        return Err(ScanError(i, "nested too deeply"));
    }
    match s.get(i) {
        None => Err(ScanError(i, "expected a value")),
        Some(b'"') => string_end(s, i).map(|(e, _)| e),
        Some(b'{') => members_from(s, i, depth, &mut |m: MemberAt<'_>| value_end(s, m.start, m.depth)),
        Some(b'[') => elements_from(s, i, depth, &mut |j, d| value_end(s, j, d)),
        Some(b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
            let mut j = i + 1;
            while j < s.len() && !matches!(s[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                j += 1;
            }
            Ok(j)
        }
        Some(_) => Err(ScanError(i, "unexpected character")),
    }
}

/// An object member met before its value is read: the key (as in [`Member`]), where the value
/// starts and its nesting depth. The callback of [`members_at`] reads the value from `start`
/// itself ([`skip`], [`members_at`], [`elements_at`], passing `depth` on) and returns its end,
/// so a value the caller looks into is read once, not skipped first and then read again.
pub struct MemberAt<'a> {
    pub key: &'a [u8],
    pub key_escaped: bool,
    pub start: usize,
    pub depth: usize,
}

/// Walks the object starting at `i` (its `{`), calling `f` per member, which returns the end of
/// the member's value; returns the index after the closing `}`.
fn members_from<F: FnMut(MemberAt<'_>) -> Result<usize> + ?Sized>(s: &[u8], i: usize, depth: usize, f: &mut F) -> Result<usize> {
    let j = ws(s, i + 1);
    if s.get(j) == Some(&b'}') {
        return Ok(j + 1);
    }
    members_loop(s, j, depth, f)
}

/// The member loop of [`members_from`], from `j`, the opening quote of a member's name.
fn members_loop<F: FnMut(MemberAt<'_>) -> Result<usize> + ?Sized>(s: &[u8], mut j: usize, depth: usize, f: &mut F) -> Result<usize> {
    loop {
        if s.get(j) != Some(&b'"') {
            return Err(ScanError(j, "expected a member name"));
        }
        let (key_end, key_escaped) = string_end(s, j)?;
        let key = &s[j + 1..key_end - 1];
        j = ws(s, key_end);
        if s.get(j) != Some(&b':') {
            return Err(ScanError(j, "expected ':'"));
        }
        let start = ws(s, j + 1);
        let end = f(MemberAt { key, key_escaped, start, depth: depth + 1 })?;
        match after_member(s, end)? {
            Ok(next) => j = next,
            Err(close) => return Ok(close),
        }
    }
}

/// After a member's value ending at `end`: `Ok(the next member's name)` or `Err(the index
/// after the closing brace)`.
fn after_member(s: &[u8], end: usize) -> Result<std::result::Result<usize, usize>> {
    let j = ws(s, end);
    match s.get(j) {
        Some(b',') => Ok(Ok(ws(s, j + 1))),
        Some(b'}') => Ok(Err(j + 1)),
        _ => Err(ScanError(j, "expected ',' or '}'")),
    }
}

/// Walks the array starting at `i` (its `[`), calling `f(start, depth)` per element, which
/// returns the element's end; returns the index after the closing `]`.
fn elements_from<F: FnMut(usize, usize) -> Result<usize> + ?Sized>(s: &[u8], i: usize, depth: usize, f: &mut F) -> Result<usize> {
    let mut j = ws(s, i + 1);
    if s.get(j) == Some(&b']') {
        return Ok(j + 1);
    }
    loop {
        let end = f(j, depth + 1)?;
        j = ws(s, end);
        match s.get(j) {
            Some(b',') => j = ws(s, j + 1),
            Some(b']') => return Ok(j + 1),
            _ => return Err(ScanError(j, "expected ',' or ']'")),
        }
    }
}

/// Calls `f` for each member of the object that is the whole of `s[range]` (surrounding
/// whitespace allowed). Value ranges are absolute offsets into `s`.
pub fn members(s: &[u8], range: Range<usize>, f: &mut dyn FnMut(Member<'_>) -> Result<()>) -> Result<()> {
    let s = &s[..range.end];
    members_walk(s, range, &mut |m| {
        let end = value_end(s, m.start, m.depth)?;
        f(Member { key: m.key, key_escaped: m.key_escaped, value: m.start..end })?;
        Ok(end)
    })
}

/// [`members`] with the callback reading each value itself (see [`MemberAt`]).
pub fn members_walk(s: &[u8], range: Range<usize>, f: &mut dyn FnMut(MemberAt<'_>) -> Result<usize>) -> Result<()> {
    let start = ws(s, range.start);
    let end = members_at(&s[..range.end], start, 0, f)?;
    if ws(s, end) < range.end {
        return Err(ScanError(end, "trailing characters"));
    }
    Ok(())
}

/// Resumes [`members_walk`] over the object that is the whole of `s` after one of its
/// top-level members whose value ends at `end`: calls `f` for each member after it and checks
/// the rest of the object. For a caller that read the members before from elsewhere (a prefix
/// it has seen before) and then read that member itself.
pub fn members_walk_after(s: &[u8], end: usize, f: &mut dyn FnMut(MemberAt<'_>) -> Result<usize>) -> Result<()> {
    let close = match after_member(s, end)? {
        Ok(next) => members_loop(s, next, 0, f)?,
        Err(close) => close,
    };
    if ws(s, close) < s.len() {
        return Err(ScanError(close, "trailing characters"));
    }
    Ok(())
}

/// Walks the object starting at `start` (no leading whitespace) at nesting `depth`, as
/// [`members_walk`] does; returns the index after it.
pub fn members_at(s: &[u8], start: usize, depth: usize, f: &mut dyn FnMut(MemberAt<'_>) -> Result<usize>) -> Result<usize> {
    if depth > MAX_DEPTH {
        return Err(ScanError(start, "nested too deeply"));
    }
    if s.get(start) != Some(&b'{') {
        return Err(ScanError(start, "expected an object"));
    }
    members_from(s, start, depth, f)
}

/// Calls `f` for each element of the array `s[range]`.
pub fn elements(s: &[u8], range: Range<usize>, f: &mut dyn FnMut(Range<usize>) -> Result<()>) -> Result<()> {
    let s = &s[..range.end];
    let start = ws(s, range.start);
    elements_at(s, start, 0, &mut |j, depth| {
        let end = value_end(s, j, depth)?;
        f(j..end)?;
        Ok(end)
    })
    .map(|_| ())
}

/// Walks the array starting at `start` (no leading whitespace) at nesting `depth`, calling
/// `f(element start, element depth)`, which reads the element and returns its end; returns
/// the index after the array.
pub fn elements_at(s: &[u8], start: usize, depth: usize, f: &mut dyn FnMut(usize, usize) -> Result<usize>) -> Result<usize> {
    if depth > MAX_DEPTH {
        return Err(ScanError(start, "nested too deeply"));
    }
    if s.get(start) != Some(&b'[') {
        return Err(ScanError(start, "expected an array"));
    }
    elements_from(s, start, depth, f)
}

/// Skips the value starting at `start` (no leading whitespace) at nesting `depth`; returns the
/// index after it.
pub fn skip(s: &[u8], start: usize, depth: usize) -> Result<usize> {
    value_end(s, start, depth)
}

/// The bytes of a JSON text around one string value, learned from one text and matched against
/// others: the events of a stream that differ only in that string (the text of a text delta)
/// are recognised by two comparisons and one scan for the string's end instead of being parsed.
/// Texts of the same bytes around another string have the same structure, as nothing in a
/// string's bytes but its end is structure.
#[derive(Clone, Debug, Default)]
pub struct TextShape {
    /// From where the shape starts up to the string's opening quote, included.
    before: Vec<u8>,
    /// From after its closing quote to where the shape ends.
    after: Vec<u8>,
}

/// Where a [`TextShape`] matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shaped {
    /// The string's contents, between its quotes (still escaped).
    pub text: Range<usize>,
    /// The contents have escapes.
    pub escaped: bool,
    /// The index after the shape.
    pub end: usize,
}

impl TextShape {
    /// Learns the shape of `s[start..end]` around the string whose contents (between its
    /// quotes) are `s[text]`.
    pub fn learn(&mut self, s: &[u8], start: usize, text: Range<usize>, end: usize) {
        debug_assert!(text.start > start && s[text.start - 1] == b'"' && s.get(text.end) == Some(&b'"'));
        self.before.clear();
        self.before.extend_from_slice(&s[start..text.start]);
        self.after.clear();
        self.after.extend_from_slice(&s[text.end + 1..end]);
    }

    /// Nothing learned yet.
    pub fn is_empty(&self) -> bool {
        self.before.is_empty()
    }

    /// The bytes before the string's contents (its opening quote included) and after them
    /// (its closing quote included).
    pub fn parts(&self) -> (&[u8], Vec<u8>) {
        (&self.before, [&b"\""[..], &self.after].concat())
    }

    /// When `s` has this shape at `at`: where its string is and where the shape ends.
    pub fn matches_at(&self, s: &[u8], at: usize) -> Option<Shaped> {
        if self.before.is_empty() || !s.get(at..)?.starts_with(&self.before) {
            return None;
        }
        let quote = at + self.before.len() - 1;
        let (end, escaped) = string_end(s, quote).ok()?;
        s[end..].starts_with(&self.after).then(|| Shaped { text: quote + 1..end - 1, escaped, end: end + self.after.len() })
    }
}

/// True for `null`, `""`, `[]` and `{}` (inner whitespace allowed).
pub fn is_empty(v: &[u8]) -> bool {
    match v {
        b"null" | b"\"\"" | b"[]" | b"{}" => true,
        [open @ (b'[' | b'{'), inner @ .., close] => {
            matches!((open, close), (b'[', b']') | (b'{', b'}')) && inner.iter().all(|b| b.is_ascii_whitespace())
        }
        _ => false,
    }
}

/// The text of a JSON string value without escapes (`None` if it is not a string or has
/// escapes: decode those with serde_json).
pub fn plain_str(v: &[u8]) -> Option<&str> {
    if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' && !v[1..v.len() - 1].contains(&b'\\') {
        std::str::from_utf8(&v[1..v.len() - 1]).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(json: &str) -> Result<Vec<(String, String)>> {
        let s = json.as_bytes();
        let mut out = Vec::new();
        members(s, 0..s.len(), &mut |m| {
            out.push((String::from_utf8_lossy(m.key).into_owned(), json[m.value].to_owned()));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn quotes_and_backslashes_are_found_wherever_they_are() {
        let naive = |s: &[u8], from: usize| s.get(from..).and_then(|r| r.iter().position(|b| matches!(b, b'"' | b'\\'))).map(|p| from + p);
        for len in 0..80 {
            for at in (0..len).map(Some).chain([None]) {
                for mark in [b'"', b'\\'] {
                    // High bytes (UTF-8) and bytes one off the marks around it.
                    let mut s: Vec<u8> = (0..len).map(|i| [b'a', 0xe2, b'!', b'#', b'[', b']'][i % 6]).collect();
                    if let Some(at) = at {
                        s[at] = mark;
                    }
                    for from in [0, 1, 7, 15, 16, 17, 31, 33, len, len + 1] {
                        assert_eq!(quote_or_backslash(&s, from), naive(&s, from), "len {len} at {at:?} from {from}");
                        if from <= len {
                            assert_eq!(swar_quote_or_backslash(&s[from..], 0).map(|p| from + p), naive(&s, from), "swar: len {len} at {at:?} from {from}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn finds_members_without_decoding_values() {
        let got = collect(r#" { "a" : [1, {"x": "}"}], "b\"c":"q\\\"uote", "d":-1.5e3 ,"e":true,"f":null,"g":{} } "#).unwrap();
        let want = [("a", r#"[1, {"x": "}"}]"#), (r#"b\"c"#, r#""q\\\"uote""#), ("d", "-1.5e3"), ("e", "true"), ("f", "null"), ("g", "{}")];
        assert_eq!(got.len(), want.len());
        for ((k, v), (wk, wv)) in got.iter().zip(want) {
            assert_eq!((k.as_str(), v.as_str()), (wk, wv));
        }
    }

    #[test]
    fn structural_errors_are_caught() {
        for bad in [r#"{"a":1"#, r#"{"a" 1}"#, r#"{"a":"x}"#, r#"{"a":[1,}"#, "[1]", r#"{"a":1} x"#, r#"{a:1}"#, r#"{"a":1,}"#] {
            assert!(collect(bad).is_err(), "{bad}");
        }
        assert_eq!(collect("{}").unwrap(), vec![]);
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(1000), "]".repeat(1000));
        assert!(collect(&deep).is_err());
    }

    #[test]
    fn elements_and_helpers() {
        let s = br#"[ {"i":0} , "two", 3 ]"#;
        let mut got = Vec::new();
        elements(s, 0..s.len(), &mut |r| {
            got.push(std::str::from_utf8(&s[r]).unwrap().to_owned());
            Ok(())
        })
        .unwrap();
        assert_eq!(got, [r#"{"i":0}"#, r#""two""#, "3"]);
        assert!(is_empty(b"[ ]") && is_empty(b"null") && !is_empty(b"\"a\""));
        assert_eq!(plain_str(br#""stop""#), Some("stop"));
        assert_eq!(plain_str(br#""a\"b""#), None);
    }
}

