//! Wire formats: the OpenAI chat shapes that are Switchyard's canonical form, the other chat APIs
//! translated to and from it, and stream framing.

pub mod anthropic;
pub mod bedrock;
pub mod chunk;
pub mod de;
pub mod gemini;
pub mod h1;
pub mod json;
pub mod ndjson;
pub mod openai;
#[cfg(test)]
mod proptests;
pub mod scan;
pub mod sse;

/// A chat API's wire format. OpenAI's is the canonical form every provider answers in; a request
/// that arrived in another format keeps its original body ([`openai::NativeBody`]) so a provider
/// speaking that format can take it without a lossy round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `POST /v1/chat/completions`.
    OpenAiChat,
    /// Anthropic's `POST /v1/messages`.
    AnthropicMessages,
}
