//! Presets: OpenAI-compatible services by name, so a config needs no base URL and gets the
//! right quirk handling. Each is `kind = "openai"` with defaults; every `openai` option still
//! applies (`base_url` overrides the default).

use std::sync::Arc;

use super::openai::{Flavor, build_flavor};
use super::{Kind, OptionError, Provider, Spec};

macro_rules! preset {
    ($id:ident, $name:literal, $url:literal, stream_usage: $usage:literal, headers: [$(($h:literal, $v:literal)),*]) => {
        pub const $id: Kind = Kind {
            name: $name,
            build: |spec: &Spec<'_>| -> Result<Arc<dyn Provider>, OptionError> {
                const FLAVOR: Flavor = Flavor {
                    kind: $name,
                    default_base_url: Some($url),
                    stream_usage: $usage,
                    default_headers: &[$(($h, $v)),*],
                };
                build_flavor(spec, &FLAVOR)
            },
        };
    };
}

preset!(GROQ, "groq", "https://api.groq.com/openai/v1", stream_usage: true, headers: []);
preset!(TOGETHER, "together", "https://api.together.xyz/v1", stream_usage: true, headers: []);
// OpenRouter attributes traffic to an app by these headers; set your own under `headers`.
preset!(OPENROUTER, "openrouter", "https://openrouter.ai/api/v1", stream_usage: true, headers: [("X-Title", "Switchyard")]);
// Mistral validates request fields strictly and reports stream usage on its own.
preset!(MISTRAL, "mistral", "https://api.mistral.ai/v1", stream_usage: false, headers: []);
preset!(DEEPSEEK, "deepseek", "https://api.deepseek.com/v1", stream_usage: true, headers: []);
preset!(FIREWORKS, "fireworks", "https://api.fireworks.ai/inference/v1", stream_usage: true, headers: []);
preset!(XAI, "xai", "https://api.x.ai/v1", stream_usage: true, headers: []);
preset!(VLLM, "vllm", "http://127.0.0.1:8000/v1", stream_usage: true, headers: []);

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(kind: &Kind, toml: &str) -> String {
        let options: toml::Table = toml::from_str(toml).unwrap();
        let spec = Spec { name: "p", options: &options, connect_timeout: std::time::Duration::from_secs(1) };
        match (kind.build)(&spec) {
            Ok(p) => p.describe(),
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn presets_default_their_base_url_and_quirks() {
        assert_eq!(describe(&GROQ, ""), "kind=groq base_url=https://api.groq.com/openai/v1 api_key=none");
        assert!(describe(&MISTRAL, "api_key = \"k\"").ends_with("api_key=<redacted> stream_usage=false"));
        assert!(describe(&OPENROUTER, "").contains("headers=[x-title]"));
        // The caller's own header of the same name wins.
        assert!(describe(&OPENROUTER, "headers = { \"x-title\" = \"mine\" }").contains("headers=[x-title]"));
        assert!(describe(&VLLM, "base_url = \"http://10.0.0.5:8000/v1\"").contains("base_url=http://10.0.0.5:8000/v1"));
    }
}
