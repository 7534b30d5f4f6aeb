//! The `switchyard` binary: a thin layer over the `switchyard-core` library.

mod cli;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use switchyard_core::config::default::{default_toml, discover_ollama};
use switchyard_core::config::duration::format_duration;
use switchyard_core::{Config, ConfigError, Gateway};
use switchyard_core::telemetry::log_writer::{BatchWriter, FlushGuard};
use switchyard_core::telemetry::request_log::{self, LineFormat, LineSink};
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The main thread's runtime loads the config and waits for signals; `serve` runs the server
    // threads, each with a runtime of its own.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Serve { config, listen, log_format, threads } => serve(config, listen, log_format, threads).await,
            Command::Check { config } => check(config).await,
        }
    })
}

async fn load(path: Option<std::path::PathBuf>) -> Result<Config, ConfigError> {
    match path {
        Some(p) => Config::from_file(&p),
        None => {
            let ollama = discover_ollama().await;
            let toml = default_toml(&|k| std::env::var(k).ok(), ollama.as_deref());
            Config::from_toml_str(&toml, "<built-in default>")
        }
    }
}

/// Logs go to stderr through a batching writer: a request appends its line to a buffer and a
/// background thread writes the buffer every 50 ms, so no request waits on a write syscall or
/// wakes a thread. The returned guard flushes what is buffered when dropped.
fn init_logging(format: LogFormat) -> FlushGuard {
    let filter = EnvFilter::try_from_env("SWITCHYARD_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // 16 MiB of lines in memory at most: past that (the output stalled) lines are dropped.
    let (writer, guard) = BatchWriter::new(std::io::stderr(), Duration::from_millis(50), 16 << 20);
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer.clone()).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
    // The per-request line skips tracing's machinery; it still follows the log level.
    request_log::set_sink(LineSink {
        writer,
        format: if format == LogFormat::Json { LineFormat::Json } else { LineFormat::Text },
        enabled: tracing::enabled!(target: "switchyard::request", tracing::Level::INFO),
    });
    guard
}

async fn serve(path: Option<std::path::PathBuf>, listen: Option<std::net::SocketAddr>, log_format: LogFormat, threads: Option<usize>) -> ExitCode {
    let _log_guard = init_logging(log_format);
    let mut config = match load(path).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(addr) = listen {
        config.server.listen = addr;
    }
    if let Some(t) = threads {
        config.server.threads = t;
    }
    let threads = match config.server.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let addr = config.server.listen;
    let origin = config.origin.clone();
    let gateway = match Gateway::new(config) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match switchyard_core::ingress::bind_reuseport(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().map_or_else(|_| addr.to_string(), |a| a.to_string());
    let aliases: Vec<&str> = gateway.routes().alias_names.iter().map(|a| a.as_ref()).collect();
    tracing::info!(config = %origin, aliases = %aliases.join(", "), threads, "switchyard {} listening on http://{local}", env!("CARGO_PKG_VERSION"));
    spawn_memory_trimmer();
    if let Err(e) = gateway.serve_threads(listener, threads, shutdown_signal()).await {
        eprintln!("error: server failed: {e}");
        return ExitCode::FAILURE;
    }
    tracing::info!("switchyard stopped");
    ExitCode::SUCCESS
}

/// glibc keeps the memory a burst of load freed in its per-thread arenas, so a gateway's RSS
/// would stay at its peak after load. Once the gateway has been idle for a second (no request
/// arrived and no call ended: a long stream frees its buffers when it ends), hand the free pages back to the kernel (`malloc_trim` releases free pages anywhere in
/// the heaps, not only at their tops). Never under load: trimming takes the arenas' locks. While
/// the gateway stays idle, trim again every minute: the upstream connection pools close their
/// idle connections 50-100 s after the load, and their buffers are freed only then.
fn spawn_memory_trimmer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const RETRIM: u32 = 60;
        let _ = std::thread::Builder::new().name("switchyard-trim".into()).spawn(|| {
            let mut last = switchyard_core::telemetry::activity();
            // Seconds since a request last arrived; `None` once the last trim of an idle period
            // is done (without requests nothing more is freed).
            let mut idle: Option<u32> = None;
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let now = switchyard_core::telemetry::activity();
                if now != last {
                    last = now;
                    idle = Some(0);
                    continue;
                }
                let Some(seconds) = idle.as_mut() else { continue };
                *seconds += 1;
                // After 1 s, then each minute up to the pools' 100 s idle limit, then stop.
                if *seconds == 1 || *seconds % RETRIM == 1 {
                    if *seconds > 2 * RETRIM {
                        idle = None;
                    }
                    // SAFETY: malloc_trim has no preconditions; it only walks glibc's own arenas.
                    unsafe {
                        libc::malloc_trim(0);
                    }
                }
            }
        });
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: no new connections; draining open requests");
}

async fn check(path: Option<std::path::PathBuf>) -> ExitCode {
    let config = match load(path).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let gateway = match Gateway::new(config.clone()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", routing_table(&config, &gateway));
    ExitCode::SUCCESS
}

/// `strategy=... fallback=... ...`: an alias's routing keys that are set.
fn routing_line(r: &switchyard_core::config::AliasRouting) -> String {
    use switchyard_core::config::{Exhausted, HedgeDelay};
    let mut parts = vec![format!("strategy: {}", r.strategy.name())];
    if let Some(f) = &r.fallback {
        parts.push(format!("fallback: {f}"));
    }
    if let Some(f) = &r.context_fallback {
        parts.push(format!("context_fallback: {f}"));
    }
    if let Some(c) = r.max_cost {
        parts.push(format!("max_cost: ${c}"));
    }
    if let Some(h) = &r.hedge {
        let after = match h.after {
            HedgeDelay::Fixed(d) => format_duration(d),
            HedgeDelay::P95 { fallback } => format!("p95 (initially {})", format_duration(fallback)),
        };
        parts.push(format!("hedge after {after}, up to {} extra", h.max));
    }
    if r.stream.commit_on_head {
        parts.push("stream commits on the upstream's head".into());
    }
    if r.stream.commit_chunks > 0 {
        parts.push(format!("stream commits after {} content chunks", r.stream.commit_chunks));
    }
    if r.stream.recover {
        parts.push("mid-stream recovery".into());
    }
    if r.refusal_fallback {
        parts.push("refusal fallback".into());
    }
    match &r.on_exhausted {
        Exhausted::LastError => {}
        Exhausted::Unavailable { retry_after } => parts.push(format!("on exhausted: 503, Retry-After {}", format_duration(*retry_after))),
        Exhausted::Static { .. } => parts.push("on exhausted: static answer".into()),
    }
    parts.join(", ")
}

/// `weight 1, $2.5/$10 per 1M, context 128000, tools yes, vision yes, json yes`.
fn target_line(t: &switchyard_core::config::TargetRouting) -> String {
    let yn = |b: Option<bool>| b.map_or("?", |b| if b { "yes" } else { "no" });
    let price = t.price.map_or("price unknown".to_owned(), |p| format!("${}/${} per 1M in/out", p.input, p.output));
    let window = t.caps.context_window.map_or("?".to_owned(), |w| w.to_string());
    format!(
        "routing: weight {}, {price}, context {window}, tools {}, vision {}, json {}",
        t.weight,
        yn(t.caps.tools),
        yn(t.caps.vision),
        yn(t.caps.json_mode)
    )
}

/// The resolved routing table, as `check` prints it. Secrets never appear: providers describe
/// themselves with their keys redacted.
fn routing_table(config: &Config, gateway: &Gateway) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "config: {} (valid)", config.origin);
    let _ = writeln!(out, "listen: {}", config.server.listen);
    let _ = writeln!(out, "\nproviders:");
    for (name, p) in &gateway.routes().providers {
        let _ = writeln!(out, "  {name:<16} {}", p.describe());
        let h = &config.providers[name].health;
        if h.enabled {
            let _ = writeln!(
                out,
                "  {:<16} health: {} probe every {} (timeout {}), unhealthy after {}, healthy after {}",
                "",
                h.probe.as_str(),
                format_duration(h.interval),
                format_duration(h.timeout),
                h.unhealthy_after,
                h.healthy_after
            );
        }
    }
    let _ = writeln!(out, "\nmodels:");
    for (alias, m) in &config.models {
        let s = &m.settings;
        let _ = writeln!(
            out,
            "  {alias}  (max_attempts={}, total={})",
            s.retry.max_attempts,
            format_duration(s.timeouts.total)
        );
        let _ = writeln!(out, "    {}", routing_line(&m.routing));
        for (i, t) in m.targets.iter().enumerate() {
            let r = &t.settings.retry;
            let b = &t.settings.breaker;
            let to = &t.settings.timeouts;
            let _ = writeln!(
                out,
                "    {}. {}\n       retry: {} per target, backoff {}..{}, retry_after_cap {}\n       breaker: {} failures or {:.0}% of >={} in {}, cooldown {}, {} half-open probe(s)\n       timeouts: connect {}, first_byte {}, idle {}",
                i + 1,
                t.label(),
                r.attempts_per_target,
                format_duration(r.backoff_initial),
                format_duration(r.backoff_max),
                format_duration(r.retry_after_cap),
                b.failures,
                b.failure_ratio * 100.0,
                b.min_requests,
                format_duration(b.window),
                format_duration(b.cooldown),
                b.half_open_probes,
                format_duration(to.connect),
                format_duration(to.first_byte),
                format_duration(to.idle),
            );
            let _ = writeln!(out, "       {}", target_line(&t.routing));
        }
    }
    out
}
