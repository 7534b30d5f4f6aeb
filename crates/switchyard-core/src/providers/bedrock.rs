//! `kind = "bedrock"`: AWS Bedrock's Converse and ConverseStream APIs
//! (`POST {base}/model/{modelId}/converse` and `/converse-stream`), signed with AWS Signature
//! Version 4 (service `bedrock`).
//!
//! The caller's OpenAI request is translated into a Converse body and the answer back into
//! OpenAI's JSON and chunks ([`crate::wire::bedrock`]). ConverseStream answers in the AWS
//! event-stream binary framing, decoded incrementally. Credentials come from the provider's
//! options or, at start-up, from the standard AWS environment variables; they and the signature
//! never appear in a log line, a description or an answer.
//!
//! Failures the chain must see as transient: HTTP 429 `ThrottlingException`, 503
//! `ServiceUnavailableException`, `ModelNotReadyException`, and an exception frame in the stream
//! before any content (`throttlingException`, `serviceUnavailableException`,
//! `modelStreamErrorException`, `internalServerException`, ...); a `validationException` is the
//! caller's fault (HTTP 400), unless it says the input is too long for the model.
//!
//! Health checks: the runtime host has no unbilled endpoint (listing models is on the separate
//! control-plane host, under other IAM permissions), so `probe = "models"` leaves Bedrock
//! targets to passive health (breakers and stats); `probe = "completion"` sends a minimal
//! Converse call through [`Provider::chat`] (the trait's default probe).

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use futures_util::Stream;
use futures_util::future::BoxFuture;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Body;
use super::http::UpstreamBody;
use serde::Deserialize;

use super::http::{HttpClient, MAX_BODY, client, extra_headers, read_body, send_checked, redact, upstream_status};
use super::{Call, Chunk, Completion, Kind, OptionError, Provider, ProviderError, Reply, Spec, UpstreamStatus, options};
use crate::wire::bedrock::stream::{StreamError, StreamTranslator};
use crate::wire::bedrock::{AnswerMeta, TranslateError, completion, to_converse};
use crate::wire::openai::types::ChatCompletionRequest;

pub const KIND: Kind = Kind { name: "bedrock", build };

const SERVICE: &str = "bedrock";
const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// e.g. `us-east-1`; else `AWS_REGION` / `AWS_DEFAULT_REGION`.
    #[serde(default)]
    region: Option<String>,
    /// Default `https://bedrock-runtime.{region}.amazonaws.com`.
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    access_key_id: Option<String>,
    #[serde(default)]
    secret_access_key: Option<String>,
    #[serde(default)]
    session_token: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

pub struct Bedrock {
    base_url: String,
    region: String,
    identity: Identity,
    /// The credentials, for redaction.
    secrets: Vec<String>,
    /// Where the credentials came from: `config` or `environment`.
    credential_source: &'static str,
    has_session_token: bool,
    headers: Vec<(HeaderName, HeaderValue)>,
    client: HttpClient,
}

fn build(spec: &Spec<'_>) -> Result<Arc<dyn Provider>, OptionError> {
    build_with_env(spec, &|name| std::env::var(name).ok())
}

fn option_error(key: &str, message: String, fix: String) -> OptionError {
    (key.to_owned(), message, fix)
}

/// Builds the adapter, reading the AWS environment variables through `env`.
fn build_with_env(spec: &Spec<'_>, env: &dyn Fn(&str) -> Option<String>) -> Result<Arc<dyn Provider>, OptionError> {
    let o: Options = options(spec.options)?;
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let nonempty = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let base_option = nonempty(o.base_url).map(|b| b.trim_end_matches('/').to_owned());
    let region = match nonempty(o.region).or_else(|| env("AWS_REGION")).or_else(|| env("AWS_DEFAULT_REGION")) {
        Some(r) => r,
        None => match &base_option {
            Some(b) => region_of_host(b).unwrap_or_else(|| "us-east-1".to_owned()),
            None => {
                return Err(option_error(
                    "region",
                    "no AWS region: not configured and AWS_REGION is not set".into(),
                    "set region = \"us-east-1\" (or the region of your Bedrock models), or export AWS_REGION".into(),
                ));
            }
        },
    };
    if region.is_empty() || !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(option_error("region", format!("\"{region}\" is not an AWS region name"), "write it like \"us-east-1\"".into()));
    }
    let base_url = base_option.unwrap_or_else(|| format!("https://bedrock-runtime.{region}.amazonaws.com"));
    super::openai::parse_url(&base_url, &base_url)?;

    let (access_key_id, credential_source) = match nonempty(o.access_key_id) {
        Some(k) => (k, "config"),
        None => match env("AWS_ACCESS_KEY_ID") {
            Some(k) => (k, "environment"),
            None => {
                return Err(option_error(
                    "access_key_id",
                    "no AWS access key id: not configured and AWS_ACCESS_KEY_ID is not set".into(),
                    "set access_key_id = \"${AWS_ACCESS_KEY_ID}\" and secret_access_key, or export AWS_ACCESS_KEY_ID".into(),
                ));
            }
        },
    };
    let secret_access_key = nonempty(o.secret_access_key).or_else(|| env("AWS_SECRET_ACCESS_KEY")).ok_or_else(|| {
        option_error(
            "secret_access_key",
            "no AWS secret access key: not configured and AWS_SECRET_ACCESS_KEY is not set".into(),
            "set secret_access_key = \"${AWS_SECRET_ACCESS_KEY}\", or export AWS_SECRET_ACCESS_KEY".into(),
        )
    })?;
    // A session token from the environment belongs to the environment's key, not a configured one.
    let session_token = match nonempty(o.session_token) {
        Some(t) => Some(t),
        None if credential_source == "environment" => env("AWS_SESSION_TOKEN"),
        None => None,
    };
    for (key, value) in [("access_key_id", Some(&access_key_id)), ("secret_access_key", Some(&secret_access_key)), ("session_token", session_token.as_ref())] {
        if value.is_some_and(|v| HeaderValue::from_str(v).is_err() || v.chars().any(char::is_whitespace)) {
            return Err(option_error(key, "contains characters not allowed in a credential".into(), "check it for stray whitespace or quotes".into()));
        }
    }
    let mut secrets = vec![secret_access_key.clone(), access_key_id.clone()];
    secrets.extend(session_token.clone());
    let has_session_token = session_token.is_some();
    let identity: Identity = Credentials::new(access_key_id, secret_access_key, session_token, None, "switchyard-config").into();
    Ok(Arc::new(Bedrock {
        base_url,
        region,
        identity,
        secrets,
        credential_source,
        has_session_token,
        headers: extra_headers(&o.headers)?,
        client: client(spec.connect_timeout),
    }))
}

/// The region of a `bedrock-runtime.{region}.amazonaws.com` (or `...-fips.`) base URL.
fn region_of_host(base: &str) -> Option<String> {
    let uri: Uri = base.parse().ok()?;
    let host = uri.host()?;
    let rest = host.strip_prefix("bedrock-runtime.").or_else(|| host.strip_prefix("bedrock-runtime-fips."))?;
    let (region, _) = rest.split_once('.')?;
    Some(region.to_owned())
}

/// Percent-encodes a model id or inference-profile ARN as one path segment (`:` and `/`
/// included), as the AWS SDKs do.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Signs a request with SigV4: the headers to add (`x-amz-date`, `authorization` and, with a
/// session token, `x-amz-security-token`). `headers` are the request headers to sign besides
/// `host`, which is taken from the URL.
#[allow(clippy::too_many_arguments)]
fn sign_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    identity: &Identity,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let signable = SignableRequest::new(method, url, headers.iter().copied(), SignableBody::Bytes(body)).map_err(|e| e.to_string())?;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let (instructions, _signature) = sign(signable, &params).map_err(|e| e.to_string())?.into_parts();
    instructions
        .headers()
        .map(|(name, value)| {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
            let mut value = HeaderValue::from_str(value).map_err(|e| e.to_string())?;
            if name != "x-amz-date" {
                value.set_sensitive(true);
            }
            Ok((name, value))
        })
        .collect()
}

impl Bedrock {
    fn secrets(&self) -> Vec<&str> {
        self.secrets.iter().map(String::as_str).collect()
    }

    fn translate(&self, call: &Call<'_>) -> Result<Bytes, ProviderError> {
        let req: ChatCompletionRequest = crate::wire::json::from_slice(&call.request.body)
            .map_err(|e| ProviderError::Unsupported(format!("the request does not fit the chat schema: {e}")))?;
        let body = to_converse(&req).map_err(|e| match e {
            TranslateError::Unsupported(m) => ProviderError::Unsupported(m),
            TranslateError::Invalid(m) => caller_error(m),
        })?;
        Ok(Bytes::from(serde_json::to_vec(&body).expect("serializing a request to memory cannot fail")))
    }

    fn request(&self, model: &str, stream: bool, body: Bytes) -> Result<Request<Full<Bytes>>, ProviderError> {
        let op = if stream { "converse-stream" } else { "converse" };
        let url = format!("{}/model/{}/{op}", self.base_url, encode_segment(model));
        let uri: Uri = url.parse().map_err(|_| ProviderError::Unsupported(format!("the model id \"{model}\" does not fit in a URL")))?;
        let accept = if stream { EVENT_STREAM } else { "application/json" };
        let signed = sign_headers(
            "POST",
            &url,
            &[("content-type", "application/json"), ("accept", accept)],
            &body,
            &self.identity,
            &self.region,
            SERVICE,
            SystemTime::now(),
        )
        .map_err(|e| ProviderError::Protocol(format!("signing the request: {}", redact(&e, &self.secrets()))))?;
        let mut req = Request::post(uri).header(CONTENT_TYPE, "application/json").header(ACCEPT, accept);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        for (k, v) in signed {
            req = req.header(k, v);
        }
        req.body(Full::new(body)).map_err(|e| ProviderError::Protocol(format!("building the request: {e}")))
    }
}

/// A Bedrock error response: `{"message": ...}` with the error's name in `x-amzn-errortype`
/// (or a `__type` field).
fn error_status(secrets: &[&str], status: StatusCode, headers: &HeaderMap, body: &[u8]) -> UpstreamStatus {
    let mut s = upstream_status(status, headers, body, secrets);
    let kind = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(':').next().unwrap_or(v).trim().to_owned())
        .filter(|v| !v.is_empty())
        .or_else(|| crate::wire::json::from_slice::<serde_json::Value>(body).ok()?.get("__type")?.as_str().map(|t| t.rsplit('#').next().unwrap_or(t).to_owned()));
    if let Some(kind) = kind {
        classify_exception(&mut s, &kind);
    }
    s
}

/// Sets an [`UpstreamStatus`]'s status and type from a Bedrock exception name (HTTP error type
/// or stream `:exception-type`, any case).
fn classify_exception(s: &mut UpstreamStatus, kind: &str) {
    let lower = kind.to_ascii_lowercase();
    let name = lower.strip_suffix("exception").unwrap_or(&lower);
    let status = match name {
        "throttling" | "toomanyrequests" => 429,
        "serviceunavailable" => 503,
        // Bedrock answers 429 while it loads a model: transient either way.
        "modelnotready" => 429,
        "modeltimeout" => 408,
        "internalserver" | "modelstreamerror" => 500,
        // A model's own failure (HTTP 424 from AWS, which would read as the caller's fault).
        "modelerror" => 502,
        "accessdenied" | "unrecognizedclient" | "invalidsignature" | "expiredtoken" | "incompletesignature" | "missingauthenticationtoken" => 403,
        "resourcenotfound" => 404,
        "validation" => 400,
        "servicequotaexceeded" => 429,
        _ => s.status,
    };
    s.status = status;
    // A caller's error reaches the client as OpenAI's `type` (AWS's exception name is its
    // `code`), as every other provider's does.
    s.error_type = Some(if status < 500 { "invalid_request_error" } else { "server_error" }.to_owned());
    if s.code.is_none() {
        s.code = Some(kind.to_owned());
    }
    let m = s.message.to_ascii_lowercase();
    if status == 400 && ["input is too long", "too many input tokens", "too many total text bytes", "prompt is too long", "context window"].iter().any(|p| m.contains(p)) {
        s.context_length = true;
    }
}

/// A request Bedrock cannot express in a valid way: the caller's fault, an HTTP 400.
fn caller_error(message: String) -> ProviderError {
    ProviderError::Status(UpstreamStatus { status: 400, message, error_type: Some("invalid_request_error".into()), ..Default::default() })
}

fn answer_meta(alias: &str) -> AnswerMeta {
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let random: String = std::iter::repeat_with(fastrand::alphanumeric).take(29).collect();
    AnswerMeta { id: format!("chatcmpl-{random}"), created, alias: alias.to_owned() }
}

impl Provider for Bedrock {
    fn chat<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Reply, ProviderError>> {
        Box::pin(async move {
            let stream = call.request.stream;
            let body = self.translate(&call)?;
            let req = self.request(call.upstream_model, stream, body)?;
            let (parts, body) = send_checked(&self.client, req, call.timeouts.idle, |status, headers, bytes| error_status(&self.secrets(), status, headers, bytes)).await?;
            let meta = answer_meta(call.alias);
            if stream {
                let content_type = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
                if content_type.starts_with("application/json") {
                    let bytes = read_body(body, call.timeouts.idle, 1024 * 1024).await?;
                    let start: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
                    return Err(ProviderError::Protocol(format!("expected an event stream, got JSON: {}", redact(&start, &self.secrets()))));
                }
                return Ok(Reply::Stream(Box::pin(EventStream::new(body, meta, call.request.include_usage, self.secrets.clone()))));
            }
            let bytes = read_body(body, call.timeouts.idle, MAX_BODY).await?;
            let (completion, usage) = completion(&bytes, &meta).map_err(ProviderError::Protocol)?;
            let body = serde_json::to_vec(&completion).map_err(|e| ProviderError::Protocol(format!("serializing the answer: {e}")))?;
            Ok(Reply::Complete(Completion { body: Bytes::from(body), usage: Some(usage.summary()) }))
        })
    }

    fn describe(&self) -> String {
        let token = if self.has_session_token { " session_token=<redacted>" } else { "" };
        let mut out = format!(
            "kind=bedrock base_url={} region={} credentials=<redacted> (from {}){token}",
            self.base_url, self.region, self.credential_source
        );
        if !self.headers.is_empty() {
            let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
            out.push_str(&format!(" headers=[{}]", names.join(", ")));
        }
        out
    }
}

/// A stream failure as the chain's error. An exception before content is classified like the
/// HTTP error of the same name (throttling → 429, retried; validation → 400, the caller's);
/// after content the stream is broken either way.
fn stream_error(e: StreamError, content_sent: bool, secrets: &[String]) -> ProviderError {
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    match e {
        StreamError::Exception { kind, message } => {
            let message = redact(&message, &secrets);
            if content_sent {
                return ProviderError::Stream(format!("{kind}: {message}"));
            }
            let mut s = UpstreamStatus { status: 500, message, ..Default::default() };
            classify_exception(&mut s, &kind);
            ProviderError::Status(s)
        }
        StreamError::Invalid(m) => ProviderError::Protocol(format!("bad event stream: {m}")),
        StreamError::Incomplete => ProviderError::Stream("the upstream closed the stream before messageStop".into()),
    }
}

/// A ConverseStream body as OpenAI chunks.
struct EventStream {
    body: UpstreamBody,
    translator: StreamTranslator,
    pending: VecDeque<Chunk>,
    secrets: Vec<String>,
    failed: Option<ProviderError>,
    done: bool,
}

impl EventStream {
    fn new(body: UpstreamBody, meta: AnswerMeta, include_usage: bool, secrets: Vec<String>) -> Self {
        EventStream { body, translator: StreamTranslator::new(meta, include_usage), pending: VecDeque::new(), secrets, failed: None, done: false }
    }

    fn queue(&mut self, chunks: Vec<Chunk>) {
        self.pending.extend(chunks);
    }

    fn fail(&mut self, e: StreamError) {
        self.done = true;
        self.failed = Some(stream_error(e, self.translator.content_sent(), &self.secrets));
    }
}

impl Stream for EventStream {
    type Item = Result<Chunk, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(chunk) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(chunk)));
            }
            if this.done {
                return Poll::Ready(this.failed.take().map(Err));
            }
            if this.translator.is_done() {
                // The metadata event is the last one: done, without waiting for the body's end.
                this.done = true;
                continue;
            }
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        match this.translator.push(data) {
                            Ok(chunks) => this.queue(chunks),
                            Err(e) => {
                                // Chunks decoded before the failure are lost with it: a failed
                                // frame ends the stream.
                                this.fail(e);
                            }
                        }
                    }
                }
                // After messageStop a broken connection loses at most the usage.
                Some(Err(_)) if this.translator.finished() => this.done = true,
                Some(Err(e)) => {
                    this.done = true;
                    this.failed = Some(ProviderError::Stream(format!("connection lost mid-stream: {e}")));
                }
                None => match this.translator.end() {
                    Ok(()) => this.done = true,
                    Err(e) => this.fail(e),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::router::retry::{Disposition, classify};

    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn build_env(toml_text: &str, vars: &[(&str, &str)]) -> Result<Arc<dyn Provider>, OptionError> {
        let options: toml::Table = toml::from_str(toml_text).unwrap();
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let env = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        build_with_env(&Spec { name: "aws", options: &options, connect_timeout: Duration::from_secs(1) }, &env)
    }

    #[test]
    fn sigv4_matches_the_aws_test_suite() {
        // AWS's SigV4 test suite, case "post-vanilla": POST / to example.amazonaws.com, region
        // us-east-1, service "service", 2015-08-30T12:36:00Z, empty body.
        let identity: Identity = Credentials::new(AKID, SECRET, None, None, "test").into();
        let time = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let headers = sign_headers("POST", "https://example.amazonaws.com/", &[], b"", &identity, "us-east-1", "service", time).unwrap();
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.to_str().unwrap().to_owned());
        assert_eq!(get("x-amz-date").as_deref(), Some("20150830T123600Z"));
        assert_eq!(
            get("authorization").as_deref(),
            Some("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b")
        );
        assert!(headers.iter().find(|(k, _)| k == "authorization").unwrap().1.is_sensitive());
        assert_eq!(get("x-amz-security-token"), None);

        // With a session token it is sent (and signed).
        let identity: Identity = Credentials::new(AKID, SECRET, Some("SESSIONTOKEN".into()), None, "test").into();
        let headers = sign_headers("POST", "https://example.amazonaws.com/", &[("content-type", "application/json")], b"{}", &identity, "us-east-1", "bedrock", time).unwrap();
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.to_str().unwrap().to_owned());
        assert_eq!(get("x-amz-security-token").as_deref(), Some("SESSIONTOKEN"));
        assert!(get("authorization").unwrap().contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,"));
    }

    #[test]
    fn model_ids_and_arns_are_one_path_segment() {
        assert_eq!(encode_segment("anthropic.claude-3-5-sonnet-20240620-v1:0"), "anthropic.claude-3-5-sonnet-20240620-v1%3A0");
        assert_eq!(
            encode_segment("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"),
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-haiku-20240307-v1%3A0"
        );
        assert_eq!(encode_segment("a?b#c d"), "a%3Fb%23c%20d");
    }

    #[test]
    fn options_and_environment() {
        let vars = [("AWS_ACCESS_KEY_ID", AKID), ("AWS_SECRET_ACCESS_KEY", SECRET), ("AWS_SESSION_TOKEN", "TOKEN-FROM-ENV"), ("AWS_REGION", "eu-west-3")];
        let p = build_env("", &vars).unwrap();
        let d = p.describe();
        assert_eq!(d, "kind=bedrock base_url=https://bedrock-runtime.eu-west-3.amazonaws.com region=eu-west-3 credentials=<redacted> (from environment) session_token=<redacted>");
        assert!(!d.contains(AKID) && !d.contains(SECRET) && !d.contains("TOKEN-FROM-ENV"));

        // Configured keys win, and do not take the environment's session token.
        let p = build_env("region = \"us-west-2\"\naccess_key_id = \"AKIACONFIG\"\nsecret_access_key = \"configsecret\"", &vars).unwrap();
        assert_eq!(p.describe(), "kind=bedrock base_url=https://bedrock-runtime.us-west-2.amazonaws.com region=us-west-2 credentials=<redacted> (from config)");

        // A base URL needs no region; one is read from an AWS host name when it has one.
        let keys = "access_key_id = \"AKIACONFIG\"\nsecret_access_key = \"configsecret\"\n";
        let p = build_env(&format!("{keys}base_url = \"http://127.0.0.1:9/\""), &[]).unwrap();
        assert!(p.describe().starts_with("kind=bedrock base_url=http://127.0.0.1:9 region=us-east-1 "), "{}", p.describe());
        let p = build_env(&format!("{keys}base_url = \"https://bedrock-runtime.ap-south-1.amazonaws.com\""), &[]).unwrap();
        assert!(p.describe().contains("region=ap-south-1"));

        for (toml_text, vars, key) in [
            (keys.to_owned(), &[][..], "region"),
            ("region = \"us-east-1\"".to_owned(), &[][..], "access_key_id"),
            ("region = \"us-east-1\"\naccess_key_id = \"AKIA\"".to_owned(), &[][..], "secret_access_key"),
            ("".to_owned(), &[("AWS_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", AKID)][..], "secret_access_key"),
            (format!("{keys}region = \"US East\""), &[][..], "region"),
            (format!("{keys}region = \"us-east-1\"\nbase_url = \"ftp://x\""), &[][..], "base_url"),
            (format!("{keys}region = \"us-east-1\"\nprofile = \"x\""), &[][..], "profile"),
        ] {
            let err = build_env(&toml_text, vars).err().unwrap_or_else(|| panic!("{toml_text} accepted"));
            assert_eq!(err.0, key, "{toml_text}: {err:?}");
            assert!(!err.1.contains(SECRET), "{err:?}");
        }
    }

    fn status(code: u16, kind: &str, message: &str) -> UpstreamStatus {
        let mut h = HeaderMap::new();
        h.insert("x-amzn-errortype", HeaderValue::from_str(&format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/")).unwrap());
        let body = serde_json::json!({"message": message}).to_string();
        error_status(&["very-secret-key", "AKIASECRETID1", "tok-secret-session"], StatusCode::from_u16(code).unwrap(), &h, body.as_bytes())
    }

    #[test]
    fn http_errors_are_classified() {
        let s = status(429, "ThrottlingException", "Too many requests, please wait before trying again.");
        assert_eq!((s.status, s.code.as_deref()), (429, Some("ThrottlingException")));
        assert_eq!(classify(&ProviderError::Status(s)), Disposition::Retry);
        assert_eq!(classify(&ProviderError::Status(status(503, "ServiceUnavailableException", "unavailable"))), Disposition::Retry);
        assert_eq!(classify(&ProviderError::Status(status(429, "ModelNotReadyException", "loading"))), Disposition::Retry);
        assert_eq!(status(403, "AccessDeniedException", "no access").status, 403);
        assert_eq!(classify(&ProviderError::Status(status(404, "ResourceNotFoundException", "no model"))), Disposition::NextTarget { counts: true });
        assert_eq!(classify(&ProviderError::Status(status(424, "ModelErrorException", "model failed"))), Disposition::Retry);
        let v = status(400, "ValidationException", "Malformed input request: #: extraneous key [foo] is not permitted");
        // The caller sees OpenAI's error type; AWS's exception name is the code.
        assert_eq!((v.error_type.as_deref(), v.code.as_deref()), (Some("invalid_request_error"), Some("ValidationException")));
        assert_eq!(classify(&ProviderError::Status(v)), Disposition::Fail);
        for m in ["Input is too long for requested model.", "The model returned the following errors: prompt is too long: 210000 tokens > 200000 maximum", "too many input tokens"] {
            let s = status(400, "ValidationException", m);
            assert!(s.context_length, "{m}");
            assert_eq!(classify(&ProviderError::Status(s)), Disposition::NextTarget { counts: false });
        }
        // AWS echoes the canonical request (with the session token) in signature errors.
        let s = status(403, "InvalidSignatureException", "The Canonical String for this request should have been 'x-amz-security-token:tok-secret-session' AKIASECRETID1 very-secret-key");
        assert!(!s.message.contains("tok-secret-session") && !s.message.contains("AKIASECRETID1") && !s.message.contains("very-secret-key"), "{}", s.message);
        assert_eq!(classify(&ProviderError::Status(s)), Disposition::NextTarget { counts: true });
    }

    #[test]
    fn stream_exceptions_before_and_after_content() {
        let secrets = vec!["very-secret-key".to_owned()];
        let e = |kind: &str, sent: bool| stream_error(StreamError::Exception { kind: kind.into(), message: "m very-secret-key".into() }, sent, &secrets);
        for (kind, code) in [("throttlingException", 429), ("serviceUnavailableException", 503), ("modelStreamErrorException", 500), ("internalServerException", 500)] {
            let err = e(kind, false);
            assert_eq!(err.status(), Some(code), "{kind}");
            assert_eq!(classify(&err), Disposition::Retry, "{kind}");
            assert!(!err.to_string().contains("very-secret-key"));
        }
        assert_eq!(classify(&e("validationException", false)), Disposition::Fail);
        assert_eq!(e("validationException", false).status(), Some(400));
        assert!(matches!(e("throttlingException", true), ProviderError::Stream(m) if m.starts_with("throttlingException: m [REDACTED]")));
    }
}
