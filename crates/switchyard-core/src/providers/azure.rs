//! `kind = "azure"`: Azure OpenAI deployments. The upstream model of a target is the
//! deployment name: `azure/my-gpt4o-deployment` calls
//! `{base_url}/openai/deployments/my-gpt4o-deployment/chat/completions?api-version=...`
//! with the key in the `api-key` header. Answers are normalized like any OpenAI-compatible
//! service (Azure's `prompt_filter_results` / `content_filter_results` are dropped).

use std::collections::BTreeMap;
use std::sync::Arc;

use http::HeaderName;
use serde::Deserialize;

use super::http::extra_headers;
use super::openai::{Endpoint, OpenAi, parse_url, secret_header};
use super::{Kind, OptionError, Provider, Spec, options};

pub const KIND: Kind = Kind { name: "azure", build };

/// The GA API version used when the config names none.
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// The resource endpoint, e.g. `https://my-resource.openai.azure.com`.
    base_url: String,
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    stream_usage: Option<bool>,
}

/// The resource's model listing, `{base}/openai/models?api-version=...` (unbilled), which the
/// `models` health probe asks.
fn models_url(base: &str, version: &str) -> Result<http::Uri, OptionError> {
    parse_url(&format!("{base}/openai/models?api-version={version}"), base)
}

fn build(spec: &Spec<'_>) -> Result<Arc<dyn Provider>, OptionError> {
    let o: Options = options(spec.options)?;
    let base = o.base_url.trim_end_matches('/').to_owned();
    parse_url(&base, &o.base_url)?;
    let version = o.api_version.unwrap_or_else(|| DEFAULT_API_VERSION.to_owned());
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        return Err(("api_version".into(), format!("\"{version}\" is not an API version"), format!("use e.g. \"{DEFAULT_API_VERSION}\"")));
    }
    let secret = o.api_key.filter(|k| !k.is_empty());
    let auth = secret.as_deref().map(|k| secret_header(k).map(|v| (HeaderName::from_static("api-key"), v))).transpose()?;
    let endpoint = Endpoint::PerModel {
        prefix: format!("{base}/openai/deployments/"),
        suffix: format!("/chat/completions?api-version={version}"),
    };
    let models_url = models_url(&base, &version)?;
    Ok(Arc::new(OpenAi::custom(
        "azure",
        base,
        endpoint,
        models_url,
        auth,
        secret,
        extra_headers(&o.headers)?,
        o.stream_usage.unwrap_or(true),
        spec.connect_timeout,
    )))
}
