//! A standalone fake Gemini API, for SDK tests and manual testing.
//!
//! ```text
//! switchyard-fake-gemini [--api-key KEY] [--strict-signatures] [--chunks N] [--fail-status CODE]
//! ```
//!
//! Binds an ephemeral loopback port and prints `listening on http://ADDR` (the `gemini`
//! provider's `base_url` is that plus `/v1beta`), then serves until killed. Every request is
//! answered by [`GeminiStep::Auto`]: a call of the first declared function when tools are
//! offered and the last turn is the user's, a sentence quoting function results when the last
//! turn holds them, else a short text; so one instance serves a whole tool-use loop.
//! `--strict-signatures` rejects replayed function calls without the signature it issued, as
//! Gemini 3 does; `--api-key` makes it check the key as Google does.

use std::io::Write;
use std::process::ExitCode;

use switchyard_fakes::gemini::{FakeGemini, GeminiConfig, GeminiStep};

const USAGE: &str = "usage: switchyard-fake-gemini [--api-key KEY] [--strict-signatures] [--chunks N] [--fail-status CODE]";

fn parse(mut args: impl Iterator<Item = String>) -> Result<GeminiConfig, String> {
    let mut config = GeminiConfig::default();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--api-key" => config.api_key = Some(value()?),
            "--strict-signatures" => config.strict_signatures = true,
            "--chunks" => {
                let v = value()?;
                config.chunks = v.parse().map_err(|_| format!("invalid value {v:?} for --chunks"))?;
            }
            "--fail-status" => {
                let v = value()?;
                config.default = GeminiStep::error(v.parse().map_err(|_| format!("invalid value {v:?} for --fail-status"))?);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let config = match parse(args.into_iter()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchyard-fake-gemini: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let fake = FakeGemini::start_with(config, Vec::new()).await;
    let mut stdout = std::io::stdout().lock();
    // Scripts wait for this line; if stdout is gone there is no one to tell.
    let _ = writeln!(stdout, "listening on http://{}", fake.addr());
    let _ = stdout.flush();
    drop(stdout);
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
