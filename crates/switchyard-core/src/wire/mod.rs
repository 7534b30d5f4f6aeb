//! Wire formats: the OpenAI chat shapes that are Switchyard's canonical form, and stream framing.

pub mod json;
pub mod openai;
pub mod sse;
