//! One OpenAI `chat.completion.chunk` as every provider adapter yields it and the ingress
//! relays it: its JSON, what the router needs to know about it, and, when the adapter wrote it
//! so, the SSE event it is sent as (`data: {json}\n\n`), so that relaying it copies nothing.

use bytes::Bytes;

use super::json::StringSlot;
use super::openai::Usage;

/// What precedes a chunk's JSON in its SSE event.
pub(crate) const EVENT_START: &[u8] = b"data: ";
/// What follows it.
pub(crate) const EVENT_END: &[u8] = b"\n\n";

/// One stream chunk in OpenAI's chunk JSON.
#[derive(Clone, Debug, Default)]
pub struct Chunk {
    /// The chunk's JSON (without SSE framing); empty for a chunk not to be sent (usage the
    /// gateway asked for, not the caller).
    pub data: Bytes,
    /// Carries model output (text, tool calls, a refusal, ...), as opposed to a role-only preamble.
    pub content: bool,
    /// Carries a `finish_reason`.
    pub finish: bool,
    pub usage: Option<Usage>,
    /// `data` as an SSE event (`data: {data}\n\n`), when the adapter wrote it that way and
    /// `data` is the bytes inside (empty otherwise): relayed without a copy. Used only while
    /// `data` still points into it, so code that replaces `data` needs not know about it.
    pub framed: Bytes,
}

/// Two chunks are equal when what they say is: `framed` is only how `data` is kept.
impl PartialEq for Chunk {
    fn eq(&self, other: &Chunk) -> bool {
        self.data == other.data && self.content == other.content && self.finish == other.finish && self.usage == other.usage
    }
}

impl Eq for Chunk {}

impl Chunk {
    /// A chunk of `data` as it is (framed when sent).
    pub fn new(data: Bytes, content: bool, finish: bool, usage: Option<Usage>) -> Chunk {
        Chunk { data, content, finish, usage, framed: Bytes::new() }
    }

    /// A chunk whose JSON `write` appends to the buffer it is given (about `size` bytes),
    /// written as its SSE event in the same buffer.
    pub fn written(size: usize, write: impl FnOnce(&mut Vec<u8>), content: bool, finish: bool, usage: Option<Usage>) -> Chunk {
        let mut out = Vec::with_capacity(EVENT_START.len() + size + EVENT_END.len());
        out.extend_from_slice(EVENT_START);
        write(&mut out);
        out.extend_from_slice(EVENT_END);
        let framed = Bytes::from(out);
        let data = framed.slice(EVENT_START.len()..framed.len() - EVENT_END.len());
        Chunk { data, content, finish, usage, framed }
    }

    /// A chunk of `value` serialized.
    pub fn serialized(value: &impl serde::Serialize, content: bool, finish: bool, usage: Option<Usage>) -> Chunk {
        Chunk::written(256, |out| serde_json::to_writer(out, value).expect("serializing a chunk to memory cannot fail"), content, finish, usage)
    }

    /// The content chunk of a text delta: a stream's text chunk template with `text` in it.
    pub fn text(slot: &StringSlot, text: &str) -> Chunk {
        Chunk::written(slot.filled_len(text), |out| slot.fill_into(out, text), true, false, None)
    }

    /// The chunk as an SSE event: the adapter's framed bytes when `data` is still the JSON
    /// inside them, a new frame otherwise.
    pub fn into_sse_event(self) -> Bytes {
        let inside = self.framed.len() == self.data.len() + EVENT_START.len() + EVENT_END.len()
            && self.framed.get(EVENT_START.len()..).is_some_and(|f| f.as_ptr() == self.data.as_ptr());
        if inside { self.framed } else { super::sse::data_event(&self.data) }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::Chunk;
    use crate::wire::json::StringSlot;

    #[test]
    fn an_sse_event_reuses_the_framed_bytes_only_while_data_is_inside_them() {
        let c = Chunk::serialized(&serde_json::json!({"a": 1}), false, false, None);
        let at = c.framed.as_ptr();
        assert_eq!(c.data, &b"{\"a\":1}"[..]);
        let event = c.into_sse_event();
        assert_eq!(event, &b"data: {\"a\":1}\n\n"[..]);
        assert_eq!(event.as_ptr(), at, "the adapter's bytes, not a copy");
        // Data replaced after framing (a recovery marker, a relabelled model): framed anew.
        let mut c = Chunk::serialized(&serde_json::json!({"a": 1}), false, false, None);
        c.data = Bytes::from_static(br#"{"b":22}"#);
        assert_eq!(c.into_sse_event(), &b"data: {\"b\":22}\n\n"[..]);
        // The same length and bytes, but not the bytes inside: still framed anew, correctly.
        let mut c = Chunk::serialized(&serde_json::json!({"a": 1}), false, false, None);
        c.data = Bytes::from_static(br#"{"a":2}"#);
        assert_eq!(c.into_sse_event(), &b"data: {\"a\":2}\n\n"[..]);
        // No framed bytes.
        assert_eq!(Chunk::new(Bytes::from_static(b"{}"), true, false, None).into_sse_event(), &b"data: {}\n\n"[..]);
    }

    #[test]
    fn a_text_chunk_is_its_template_filled_and_framed() {
        let slot = StringSlot::at_last(br#"{"delta":{"content":""},"n":1}"#, "content").expect("has the slot");
        for text in ["", "plain", "\"quoted\" \\ line\nbreak", "Zürich 🌤"] {
            let c = Chunk::text(&slot, text);
            assert_eq!(c.data, slot.fill(text), "{text:?}");
            assert!(c.content && !c.finish && c.usage.is_none());
            let at = c.framed.as_ptr();
            let event = c.into_sse_event();
            assert_eq!(event, [&b"data: "[..], &slot.fill(text), b"\n\n"].concat(), "{text:?}");
            assert_eq!(event.as_ptr(), at, "not copied");
        }
    }

    #[test]
    fn chunks_are_equal_by_what_they_say_however_kept() {
        let value = serde_json::json!({"choices": []});
        let framed = Chunk::serialized(&value, true, false, None);
        let plain = Chunk::new(Bytes::from(serde_json::to_vec(&value).unwrap()), true, false, None);
        assert_eq!(framed, plain);
        assert_ne!(framed, Chunk { content: false, ..plain.clone() });
        assert_ne!(framed, Chunk::new(Bytes::from_static(b"{}"), true, false, None));
    }
}
