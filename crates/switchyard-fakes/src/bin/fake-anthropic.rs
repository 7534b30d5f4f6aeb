//! A standalone fake of Anthropic's Messages API, for SDK tests and manual testing.
//!
//! ```text
//! switchyard-fake-anthropic --listen 127.0.0.1:9002 [--reply TEXT] [--chunks N]
//!     [--chunk-delay-ms N] [--tool-input JSON] [--fail-status CODE]
//! ```
//!
//! `--tool-input` makes it call the request's tool (the one `tool_choice` names, else the first)
//! with that input whenever tools are offered and the last turn is not a tool result, so one
//! instance serves a whole tool-use loop. Prints `listening on http://ADDR` once bound, then
//! serves until killed.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use switchyard_fakes::anthropic::{Answer, AnthropicScript, AnthropicStep, FakeAnthropic};

const USAGE: &str = "usage: switchyard-fake-anthropic --listen ADDR [--reply TEXT] [--chunks N] \
[--chunk-delay-ms N] [--tool-input JSON] [--fail-status CODE]";

struct Options {
    listen: SocketAddr,
    reply: Option<String>,
    chunks: usize,
    chunk_delay: Duration,
    tool_input: Option<serde_json::Value>,
    fail_status: Option<u16>,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut listen = None;
        let mut o = Options { listen: SocketAddr::from(([127, 0, 0, 1], 0)), reply: None, chunks: 5, chunk_delay: Duration::ZERO, tool_input: None, fail_status: None };
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--listen" => listen = Some(parse_value(&flag, &value()?)?),
                "--reply" => o.reply = Some(value()?),
                "--chunks" => o.chunks = parse_value(&flag, &value()?)?,
                "--chunk-delay-ms" => o.chunk_delay = Duration::from_millis(parse_value(&flag, &value()?)?),
                "--tool-input" => {
                    let v = value()?;
                    o.tool_input = Some(serde_json::from_str(&v).map_err(|e| format!("invalid JSON for --tool-input: {e}"))?);
                }
                "--fail-status" => o.fail_status = Some(parse_value(&flag, &value()?)?),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        o.listen = listen.ok_or("--listen is required")?;
        Ok(o)
    }

    fn script(&self) -> AnthropicScript {
        let step = match (self.fail_status, &self.tool_input, &self.reply) {
            (Some(code), _, _) => AnthropicStep::status(code),
            (None, Some(input), reply) => {
                let answer = Answer::tools_when_offered(input.clone());
                reply.as_ref().map_or(answer.clone(), |r| answer.with_text(r.clone())).chunks(self.chunks).chunk_delay(self.chunk_delay).into()
            }
            (None, None, Some(reply)) => Answer::text(reply.clone()).chunks(self.chunks).chunk_delay(self.chunk_delay).into(),
            (None, None, None) => Answer::text(switchyard_fakes::anthropic::DEFAULT_TEXT).chunks(self.chunks).chunk_delay(self.chunk_delay).into(),
        };
        AnthropicScript::new().default_step(step).record(false)
    }
}

fn parse_value<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("invalid value {value:?} for {flag}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match Options::parse(args.into_iter()) {
        Ok(o) => o,
        Err(error) => {
            eprintln!("switchyard-fake-anthropic: {error}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let fake = match FakeAnthropic::start_on(options.listen, options.script()).await {
        Ok(f) => f,
        Err(error) => {
            eprintln!("switchyard-fake-anthropic: cannot listen on {}: {error}", options.listen);
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    // Scripts wait for this line; if stdout is gone there is no one to tell.
    let _ = writeln!(stdout, "listening on http://{}", fake.addr());
    let _ = stdout.flush();
    drop(stdout);
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
