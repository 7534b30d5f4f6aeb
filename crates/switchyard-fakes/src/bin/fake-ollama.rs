//! A standalone fake Ollama (native `/api/chat`, `/api/embed`, `/api/tags`), for SDK tests and
//! manual testing.
//!
//! ```text
//! switchyard-fake-ollama [--reply TEXT] [--fail-status CODE]
//! ```
//!
//! Binds an ephemeral loopback port, prints `listening on http://ADDR` (the `ollama`
//! provider's `base_url`), then serves until killed.

use std::io::Write;
use std::process::ExitCode;

use switchyard_fakes::ollama::{FakeOllama, OllamaStep};

const USAGE: &str = "usage: switchyard-fake-ollama [--reply TEXT] [--fail-status CODE]";

fn parse(mut args: impl Iterator<Item = String>) -> Result<OllamaStep, String> {
    let mut step = OllamaStep::text("Hello from the fake Ollama.");
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        step = match flag.as_str() {
            "--reply" => OllamaStep::Text(value),
            "--fail-status" => {
                let code = value.parse().map_err(|_| format!("invalid value {value:?} for --fail-status"))?;
                OllamaStep::Status(code, "scripted failure".into())
            }
            other => return Err(format!("unknown argument {other:?}")),
        };
    }
    Ok(step)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let step = match parse(args.into_iter()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("switchyard-fake-ollama: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let fake = FakeOllama::start(Vec::new()).await;
    fake.set_default(step);
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on {}", fake.base_url());
    let _ = stdout.flush();
    drop(stdout);
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
