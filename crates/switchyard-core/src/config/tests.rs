use std::time::Duration;

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "GROQ_API_KEY" => Some("gsk-test".into()),
        _ => None,
    }
}

fn load(src: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str_with_env(src, "switchyard.toml", &env)
}

const EXAMPLE: &str = r#"
[server]
listen = "127.0.0.1:9090"

[providers.groq]
kind = "openai"
base_url = "https://api.groq.com/openai/v1"
api_key = "${GROQ_API_KEY}"

[providers.groq.breaker]
failures = 5

[providers.openrouter]
kind = "openai"
base_url = "https://openrouter.ai/api/v1"
api_key = "${OPENROUTER_API_KEY:-none}"

[models.chat]
targets = ["groq/llama-3.1-8b-instant", "openrouter/meta-llama/llama-3.1-8b-instruct"]

[models.chat.retry]
attempts_per_target = 3

[retry]
backoff_initial = "50ms"

[timeouts]
connect = "1s"
"#;

#[test]
fn the_documented_example_loads() {
    let c = load(EXAMPLE).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:9090");
    assert_eq!(c.providers["groq"].options["api_key"].as_str(), Some("gsk-test"));
    assert_eq!(c.providers["openrouter"].options["api_key"].as_str(), Some("none"));
    let chat = &c.models["chat"];
    let labels: Vec<String> = chat.targets.iter().map(TargetConfig::label).collect();
    assert_eq!(labels, ["groq/llama-3.1-8b-instant", "openrouter/meta-llama/llama-3.1-8b-instruct"]);
}

#[test]
fn settings_layer_defaults_then_provider_then_alias() {
    let c = load(EXAMPLE).unwrap();
    let groq = &c.models["chat"].targets[0].settings;
    let or = &c.models["chat"].targets[1].settings;
    assert_eq!(groq.breaker.failures, 5, "provider override");
    assert_eq!(or.breaker.failures, 3, "default");
    assert_eq!(groq.retry.attempts_per_target, 3, "alias override");
    assert_eq!(groq.retry.backoff_initial, Duration::from_millis(50), "top-level");
    assert_eq!(groq.retry.max_attempts, 6, "built-in default");
    assert_eq!(groq.timeouts.connect, Duration::from_secs(1));
}

fn err(src: &str) -> ConfigError {
    load(src).unwrap_err()
}

#[test]
fn unknown_keys_are_errors_that_name_the_key() {
    let e = err("[retry]\natempts_per_target = 2\n");
    assert_eq!(e.key, "retry.atempts_per_target");
    assert_eq!(e.line, Some(2));
    assert!(e.fix.contains("spelling"));
    let e = err("[server]\nlisten = \"127.0.0.1:1\"\nport = 3\n");
    assert_eq!(e.key, "server.port");
    let e = err("[surver]\n");
    assert_eq!(e.key, "surver");
    let e = err("[providers.p]\nkind = \"openai\"\nbase_url = \"http://x\"\napi_kee = \"k\"\n");
    assert_eq!(e.key, "providers.p.api_kee");
    assert_eq!(e.line, Some(4));
    let e = err("[providers.p]\nkind = \"mock\"\n[providers.p.breaker]\nfailure = 3\n");
    assert_eq!(e.key, "providers.p.breaker.failure");
    let e = err("[providers.p]\nkind = \"mock\"\n[models.m]\ntargets = [\"p/x\"]\nfallback = 1\n");
    assert_eq!(e.key, "models.m.fallback");
}

#[test]
fn the_error_message_names_file_key_and_fix() {
    let e = err("[models.chat]\ntargets = [\"nope/model\"]\n");
    assert_eq!(e.key, "models.chat.targets[0]");
    let text = e.to_string();
    assert!(text.starts_with("switchyard.toml:2: key `models.chat.targets[0]`"), "{text}");
    assert!(text.contains("provider \"nope\" is not defined"), "{text}");
    assert!(text.contains("fix: add a [providers.nope] table"), "{text}");
}

#[test]
fn bad_values_are_explained() {
    let e = err("[retry]\nbackoff_initial = \"100\"\n");
    assert_eq!(e.key, "retry.backoff_initial");
    assert!(e.message.contains("no unit"), "{}", e.message);
    let e = err("[retry]\nbackoff_initial = \"5s\"\nbackoff_max = \"1s\"\n");
    assert_eq!(e.key, "retry.backoff_initial");
    let e = err("[breaker]\nfailures = 0\n");
    assert_eq!(e.key, "breaker.failures");
    let e = err("[server]\nlisten = \"localhost\"\n");
    assert_eq!(e.key, "server.listen");
    let e = err("[retry]\nmax_attempts = \"six\"\n");
    assert_eq!(e.key, "retry.max_attempts");
    let e = err("[providers.p]\nkind = \"mock\"\nfailure_rate = 2.0\n");
    assert_eq!(e.key, "providers.p.failure_rate");
    let e = err("[providers.p]\nkind = \"mock\"\nfailure = \"sometimes\"\n");
    assert_eq!(e.key, "providers.p.failure");
    let e = err("[providers.p]\nkind = \"openai\"\nbase_url = \"ftp://x\"\n");
    assert_eq!(e.key, "providers.p.base_url");
    let e = err("[providers.p]\nkind = \"openai\"\n");
    assert!(e.message.contains("base_url"), "{}", e.message);
    let e = err("[providers.p]\nkind = \"carrier-pigeon\"\n");
    assert_eq!(e.key, "providers.p.kind");
    assert!(e.fix.contains("openai") && e.fix.contains("mock"));
    let e = err("[providers.p]\nbase_url = \"http://x\"\n");
    assert_eq!(e.key, "providers.p.kind");
    let e = err("[server]\nidle_timeout = \"0s\"\n");
    assert_eq!((e.key.as_str(), e.line), ("server.idle_timeout", Some(2)));
    assert!(e.fix.contains("\"75s\""), "{}", e.fix);
    let e = err("[server]\nclient_timeout = \"10us\"\n");
    assert_eq!(e.key, "server.client_timeout");
}

#[test]
fn server_timeouts_default_and_can_be_set() {
    let c = load("").unwrap();
    assert_eq!((c.server.idle_timeout, c.server.client_timeout), (Duration::from_secs(75), Duration::from_secs(60)));
    let c = load("[server]\nidle_timeout = \"5s\"\nclient_timeout = \"2m\"\n").unwrap();
    assert_eq!((c.server.idle_timeout, c.server.client_timeout), (Duration::from_secs(5), Duration::from_secs(120)));
}

#[test]
fn chains_must_be_well_formed() {
    let base = "[providers.p]\nkind = \"mock\"\n";
    let e = err(&format!("{base}[models.m]\ntargets = []\n"));
    assert_eq!(e.key, "models.m.targets");
    let e = err(&format!("{base}[models.m]\ntargets = [\"p\"]\n"));
    assert_eq!(e.key, "models.m.targets[0]");
    assert!(e.message.contains("provider/upstream-model"));
    let e = err(&format!("{base}[models.m]\n"));
    assert!(e.message.contains("targets"), "{}", e.message);
}

#[test]
fn missing_environment_variables_are_named() {
    let e = err("[providers.p]\nkind = \"openai\"\nbase_url = \"http://x\"\napi_key = \"${OPENAI_API_KEY}\"\n");
    assert_eq!(e.key, "providers.p.api_key");
    assert!(e.message.contains("OPENAI_API_KEY is not set"), "{}", e.message);
    assert!(e.fix.contains("export OPENAI_API_KEY"));
}

#[test]
fn conflicting_breakers_for_one_target_are_rejected() {
    let src = "[providers.p]\nkind = \"mock\"\n[models.a]\ntargets = [\"p/x\"]\n[models.b]\ntargets = [\"p/x\"]\n[models.b.breaker]\nfailures = 9\n";
    let e = err(src);
    assert_eq!(e.key, "models.b.breaker");
    assert!(e.fix.contains("[providers.p.breaker]"));
    // The same target in two aliases with the same settings is fine.
    load("[providers.p]\nkind = \"mock\"\n[models.a]\ntargets = [\"p/x\"]\n[models.b]\ntargets = [\"p/x\"]\n").unwrap();
}

#[test]
fn syntax_errors_point_at_the_line() {
    let e = err("[server]\nlisten = \n");
    assert_eq!(e.line, Some(2));
    assert!(e.message.starts_with("invalid TOML"));
}

#[test]
fn an_empty_file_is_a_valid_empty_gateway() {
    let c = load("").unwrap();
    assert!(c.models.is_empty());
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
}

#[test]
fn keys_without_effect_at_their_level_are_rejected() {
    let e = err("[providers.p]\nkind = \"mock\"\n[providers.p.retry]\nmax_attempts = 1\n");
    assert_eq!(e.key, "providers.p.retry.max_attempts");
    assert!(e.fix.contains("[models.ALIAS.retry]"), "{}", e.fix);
    let e = err("[providers.p]\nkind = \"mock\"\n[providers.p.timeouts]\ntotal = \"5s\"\n");
    assert_eq!(e.key, "providers.p.timeouts.total");
    let e = err("[providers.p]\nkind = \"mock\"\n[models.m]\ntargets = [\"p/x\"]\n[models.m.timeouts]\nconnect = \"1s\"\n");
    assert_eq!(e.key, "models.m.timeouts.connect");
    assert!(e.fix.contains("[providers.NAME.timeouts]"));
}

const TWO_MOCKS: &str = "[providers.a]\nkind = \"mock\"\n[providers.b]\nkind = \"ollama\"\n";

fn routing_err(models: &str) -> ConfigError {
    load(&format!("{TWO_MOCKS}{models}")).expect_err("config should be rejected")
}

#[test]
fn routing_keys_resolve_with_the_bundled_table() {
    let c = load(&format!(
        "{TWO_MOCKS}[routing]\nlatency_alpha = 0.5\nwindow = \"1m\"\n\
         [models.chat]\nstrategy = \"cost\"\nfallback = \"small\"\nmax_cost = 0.02\n\
         targets = [\"a/gpt-4o\", {{ target = \"a/custom\", weight = 3, price = {{ input = 1, output = 2 }}, vision = false }}, \"b/llama3.2\"]\n\
         [models.chat.hedge]\nafter = \"p95\"\ninitial = \"800ms\"\nmax = 2\n\
         [models.chat.stream]\ncommit_chunks = 4\ncommit_within = \"300ms\"\nrecover = true\n\
         [models.chat.on_exhausted]\naction = \"static\"\ncontent = \"busy\"\n\
         [models.small]\ntargets = [\"a/gpt-4o-mini\"]\n\
         [[rules]]\nheaders = {{ \"x-tier\" = \"free\" }}\nalias = \"small\"\n"
    ))
    .unwrap();
    assert_eq!(c.routing.latency_alpha, 0.5);
    let chat = &c.models["chat"];
    let r = &chat.routing;
    assert_eq!((r.strategy, r.fallback.as_deref(), r.max_cost), (StrategyKind::Cost, Some("small"), Some(0.02)));
    assert_eq!(r.hedge, Some(HedgeSettings { after: HedgeDelay::P95 { fallback: Duration::from_millis(800) }, max: 2 }));
    assert_eq!(r.stream, StreamPolicy { commit_on_head: false, commit_chunks: 4, commit_within: Some(Duration::from_millis(300)), recover: true });
    assert_eq!(r.on_exhausted, Exhausted::Static { content: "busy".into() });
    let [gpt, custom, local] = &chat.targets[..] else { panic!() };
    assert_eq!(gpt.routing.price, Some(Price { input: 2.5, output: 10.0 }));
    assert_eq!(gpt.routing.caps.context_window, Some(128000));
    assert_eq!((custom.routing.weight, custom.routing.price, custom.routing.caps.vision), (3, Some(Price { input: 1.0, output: 2.0 }), Some(false)));
    assert_eq!(local.routing.price, Some(Price { input: 0.0, output: 0.0 }), "local models are free");
    assert_eq!(c.rules.len(), 1);
}

#[test]
fn routing_errors_name_the_key_and_the_fix() {
    let e = routing_err("[models.chat]\ntargets = [\"a/x\"]\nstrategy = \"fastest\"\n");
    assert!(e.key.starts_with("models.chat.strategy"), "{e}");
    assert!(e.message.contains("least_busy"), "{e}");
    let e = routing_err("[models.chat]\ntargets = [\"a/x\"]\nfallback = \"nope\"\n");
    assert_eq!((e.key.as_str(), e.line), ("models.chat.fallback", Some(7)));
    let e = routing_err("[models.x]\ntargets = [\"a/x\"]\nfallback = \"y\"\n[models.y]\ntargets = [\"a/x\"]\ncontext_fallback = \"x\"\n");
    assert!(e.message.contains("loop"), "{e}");
    let e = routing_err("[models.chat]\ntargets = [\"a/x\"]\n[models.chat.hedge]\nafter = \"soon\"\n");
    assert_eq!(e.key, "models.chat.hedge.after");
    let e = routing_err("[models.chat]\ntargets = [\"a/x\"]\n[models.chat.on_exhausted]\naction = \"static\"\n");
    assert_eq!(e.key, "models.chat.on_exhausted.content");
    let e = routing_err("[models.chat]\ntargets = [{ target = \"a/x\", price = { input = -1, output = 1 } }]\n");
    assert_eq!(e.key, "models.chat.targets[0].price");
    let e = routing_err("[models.chat]\ntargets = [\"a/x\"]\n[[rules]]\nalias = \"other\"\n");
    assert_eq!(e.key, "rules[0].alias");
    let e = routing_err("[models.chat]\ntargets = [\"a/x\"]\n[[rules]]\nheaders = { \"x-a\" = \"b\" }\n");
    assert!(e.message.contains("changes nothing"), "{e}");
    let e = routing_err("[routing]\nlatency_alpha = 2.0\n[models.chat]\ntargets = [\"a/x\"]\n");
    assert_eq!(e.key, "routing.latency_alpha");
    let e = routing_err("[models.chat]\ntargets = [\"a/x\"]\n[models.chat.stream]\ncommit_within = \"1s\"\n");
    assert_eq!(e.key, "models.chat.stream.commit_within");
    let e = routing_err("[models.chat]\ntargets = [\"a/x\"]\n[models.chat.stream]\ncommit = \"first_byte\"\n");
    assert_eq!(e.key, "models.chat.stream.commit");
    assert!(e.message.contains("first_byte") && e.fix.contains("\"head\""), "{e}");
    for (extra, key) in [
        ("[models.chat.stream]\ncommit = \"head\"\ncommit_chunks = 3\n", "stream.commit_chunks"),
        ("refusal_fallback = true\n[models.chat.stream]\ncommit = \"head\"\n", "refusal_fallback"),
        ("[models.chat.hedge]\nafter = \"1s\"\n[models.chat.stream]\ncommit = \"head\"\n", "hedge"),
    ] {
        let e = routing_err(&format!("[models.chat]\ntargets = [\"a/x\"]\n{extra}"));
        assert_eq!(e.key, "models.chat.stream.commit", "{extra}");
        assert!(e.message.contains(key) && e.fix.contains(&format!("remove {key}")), "{e}");
    }
}

#[test]
fn a_stream_may_commit_on_the_upstream_head() {
    let c = load(&format!("{TWO_MOCKS}[models.chat]\ntargets = [\"a/x\", \"b/y\"]\n[models.chat.stream]\ncommit = \"head\"\nrecover = true\n")).unwrap();
    assert_eq!(c.models["chat"].routing.stream, StreamPolicy { commit_on_head: true, recover: true, ..Default::default() });
    let c = load(&format!("{TWO_MOCKS}[models.chat]\ntargets = [\"a/x\"]\n[models.chat.stream]\ncommit = \"content\"\n")).unwrap();
    assert!(!c.models["chat"].routing.stream.commit_on_head);
}

#[test]
fn health_is_off_by_default_and_layers_top_level_then_provider() {
    let c = load("[providers.p]\nkind = \"mock\"\n").unwrap();
    assert_eq!(c.health, HealthSettings::default());
    assert!(!c.providers["p"].health.enabled);
    let c = load(
        "[health]\nenabled = true\ninterval = \"10s\"\nprobe = \"completion\"\n\
         [providers.p]\nkind = \"mock\"\n[providers.p.health]\nunhealthy_after = 4\n\
         [providers.q]\nkind = \"mock\"\n[providers.q.health]\nenabled = false\nprobe = \"models\"\n",
    )
    .unwrap();
    let (p, q) = (&c.providers["p"].health, &c.providers["q"].health);
    assert!(p.enabled && !q.enabled);
    assert_eq!((p.interval, p.timeout), (Duration::from_secs(10), Duration::from_secs(5)), "top-level, then the default");
    assert_eq!((p.probe, q.probe), (ProbeKind::Completion, ProbeKind::Models));
    assert_eq!((p.unhealthy_after, q.unhealthy_after, p.healthy_after), (4, 2, 1));
}

#[test]
fn bad_health_settings_name_the_key_and_a_fix() {
    let e = err("[health]\nprobe = \"ping\"\n");
    assert_eq!(e.key, "health.probe");
    assert!(e.message.contains("models") && e.message.contains("completion"), "{}", e.message);
    let e = err("[health]\nintervall = \"1s\"\n");
    assert_eq!(e.key, "health.intervall");
    assert!(e.fix.contains("spelling"));
    let e = err("[health]\ninterval = \"2s\"\n");
    assert_eq!(e.key, "health.timeout");
    assert!(e.message.contains("longer than interval"), "{}", e.message);
    assert!(e.fix.contains("timeout <= interval"), "{}", e.fix);
    let e = err("[health]\nenabled = \"yes\"\n");
    assert_eq!(e.key, "health.enabled");
    let e = err("[providers.p]\nkind = \"mock\"\n[providers.p.health]\nunhealthy_after = 0\n");
    assert_eq!(e.key, "providers.p.health.unhealthy_after");
    assert_eq!(e.line, Some(4));
    assert!(e.fix.contains("unhealthy_after = 2"), "{}", e.fix);
    let e = err("[providers.p]\nkind = \"mock\"\n[providers.p.health]\ninterval = \"5ms\"\n");
    assert_eq!(e.key, "providers.p.health.interval");
    // A provider's interval is checked against the timeout it inherits.
    let e = err("[health]\ntimeout = \"3s\"\n[providers.p]\nkind = \"mock\"\n[providers.p.health]\ninterval = \"1s\"\n");
    assert_eq!(e.key, "providers.p.health.timeout");
    // Health belongs to providers (one check per provider/model), not to aliases.
    let e = err("[providers.p]\nkind = \"mock\"\n[models.m]\ntargets = [\"p/x\"]\n[models.m.health]\nenabled = true\n");
    assert_eq!(e.key, "models.m.health");
}
