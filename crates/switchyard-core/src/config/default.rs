//! The built-in default configuration, used when `serve` runs without `--config`.
//!
//! Providers are discovered from the environment (API keys) and from a local Ollama, ordered
//! local-first then cheapest, behind the alias `default`. A `demo` alias served by two mock
//! providers (a flaky primary and a healthy backup) answers, and shows a failover, on a machine
//! with no keys at all.

use std::fmt::Write as _;
use std::time::Duration;

/// (environment variable, provider name and kind, model), cheapest first (list prices per 1M
/// input/output tokens when this table was written). Each kind knows its own base URL.
const CLOUD: &[(&str, &str, &str)] = &[
    ("OPENROUTER_API_KEY", "openrouter", "meta-llama/llama-3.1-8b-instruct"), // $0.02 / $0.05
    ("GROQ_API_KEY", "groq", "llama-3.1-8b-instant"),                          // $0.05 / $0.08
    ("GEMINI_API_KEY", "gemini", "gemini-2.5-flash-lite"),                     // $0.10 / $0.40
    ("MISTRAL_API_KEY", "mistral", "mistral-small-latest"),                    // $0.10 / $0.30
    ("OPENAI_API_KEY", "openai", "gpt-4o-mini"),                               // $0.15 / $0.60
    ("TOGETHER_API_KEY", "together", "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo"), // $0.18
    ("DEEPSEEK_API_KEY", "deepseek", "deepseek-chat"),                         // $0.27 / $1.10
    ("ANTHROPIC_API_KEY", "anthropic", "claude-haiku-4-5"),                    // $1 / $5
];

pub const OLLAMA_URL: &str = "http://127.0.0.1:11434";

/// The default config's TOML text, given which keys are set and the local Ollama model (if any).
pub fn default_toml(env: &dyn Fn(&str) -> Option<String>, ollama_model: Option<&str>) -> String {
    let mut providers = String::new();
    let mut targets: Vec<String> = Vec::new();
    if let Some(model) = ollama_model {
        let _ = write!(providers, "\n[providers.ollama]\nkind = \"openai\"\nbase_url = \"{OLLAMA_URL}/v1\"\n");
        targets.push(format!("ollama/{model}"));
    }
    for (var, name, model) in CLOUD {
        if env(var).is_some_and(|v| !v.is_empty()) {
            // `openai` needs its base URL; every other name is a kind with a default one.
            let url = if *name == "openai" { "base_url = \"https://api.openai.com/v1\"\n" } else { "" };
            let _ = write!(providers, "\n[providers.{name}]\nkind = \"{name}\"\n{url}api_key = \"${{{var}}}\"\n");
            targets.push(format!("{name}/{model}"));
        }
    }
    let mut out = String::from(
        "# Switchyard's built-in default configuration.\n\n[server]\nlisten = \"127.0.0.1:8080\"\n\n\
         # Demo: a flaky primary that fails half the time, and a healthy backup.\n\
         [providers.demo-flaky]\nkind = \"mock\"\nlatency = \"20ms\"\nfailure_rate = 0.5\nfailure = \"unavailable\"\n\
         reply = \"Hello from the flaky primary.\"\n\n\
         [providers.demo-backup]\nkind = \"mock\"\nlatency = \"40ms\"\nreply = \"Hello from the backup: the primary failed, so Switchyard failed over.\"\n\n\
         [models.demo]\ntargets = [\"demo-flaky/mock-1\", \"demo-backup/mock-1\"]\n\n\
         [models.demo.retry]\nattempts_per_target = 1\n\n\
         [models.demo.breaker]\ncooldown = \"5s\"\n",
    );
    out.push_str(&providers);
    if !targets.is_empty() {
        let quoted: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let _ = write!(out, "\n[models.default]\ntargets = [{}]\n", quoted.join(", "));
    }
    out
}

/// Asks a local Ollama (if one answers quickly) for its first model.
pub async fn discover_ollama() -> Option<String> {
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let uri: http::Uri = format!("{OLLAMA_URL}/v1/models").parse().ok()?;
    let resp = tokio::time::timeout(Duration::from_millis(500), client.get(uri)).await.ok()?.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let body = tokio::time::timeout(Duration::from_secs(2), resp.into_body().collect()).await.ok()?.ok()?.to_bytes();
    let v: serde_json::Value = crate::wire::json::from_slice(&body).ok()?;
    v["data"].as_array()?.first()?["id"].as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn without_keys_only_the_demo_alias_exists() {
        let toml = default_toml(&|_| None, None);
        let c = Config::from_toml_str_with_env(&toml, "<built-in default>", &|_| None).unwrap();
        assert_eq!(c.models.keys().collect::<Vec<_>>(), ["demo"]);
        assert_eq!(c.models["demo"].targets.len(), 2);
    }

    #[test]
    fn keys_and_ollama_make_a_local_first_cheapest_first_chain() {
        let env = |k: &str| {
            matches!(k, "OPENAI_API_KEY" | "GROQ_API_KEY" | "ANTHROPIC_API_KEY" | "GEMINI_API_KEY").then(|| "sk-test".to_owned())
        };
        let toml = default_toml(&env, Some("llama3.2"));
        let c = Config::from_toml_str_with_env(&toml, "<built-in default>", &env).unwrap();
        let chain: Vec<String> = c.models["default"].targets.iter().map(|t| t.label()).collect();
        assert_eq!(
            chain,
            ["ollama/llama3.2", "groq/llama-3.1-8b-instant", "gemini/gemini-2.5-flash-lite", "openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"]
        );
        assert_eq!(c.providers["anthropic"].kind, "anthropic");
        crate::Gateway::new(c).expect("the discovered providers build");
    }
}
