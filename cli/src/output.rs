//! What the tool writes on stderr: a line per step, or a JSON object per
//! step and per event (`--log-format json`); every wait explained before it
//! starts, from the library's events, with a live countdown on a terminal.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use sturdy_acme::timestamp::DisplayTime;
use sturdy_acme::{ErrorClass, Event, RetryPolicy};

/// `--log-format json`, once chosen.
static JSON: OnceLock<bool> = OnceLock::new();

/// The live countdown of the wait in progress, if any.
static COUNTDOWN: Mutex<Option<tokio::task::AbortHandle>> = Mutex::new(None);

/// The run's event reporter (its badNonce summary is printed at exit).
static REPORTER: OnceLock<Arc<WaitReporter>> = OnceLock::new();

/// Waits shorter than this get no countdown.
const COUNTDOWN_FROM: Duration = Duration::from_secs(3);

/// Sets up stderr: the format and the tracing subscriber (`-v` the
/// library's INFO logs, `-vv` every HTTP exchange).
pub fn init(json: bool, verbose: u8) {
    let _ = JSON.set(json);
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "info,sturdy_acme::http=debug",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into());
    if json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
}

pub fn json_output() -> bool {
    JSON.get().copied().unwrap_or(false)
}

pub fn now_rfc3339() -> String {
    DisplayTime(SystemTime::now()).to_string()
}

/// One step: a line, or a JSON object with `--log-format json`.
pub fn step(msg: impl std::fmt::Display) {
    stop_countdown();
    if json_output() {
        let line = serde_json::json!({"ts": now_rfc3339(), "step": msg.to_string()});
        eprintln!("{line}");
    } else {
        eprintln!("[sturdy-acme] {msg}");
    }
}

/// One JSON object (with its timestamp) on stderr.
pub fn json_line(mut object: serde_json::Value) {
    stop_countdown();
    if let Some(map) = object.as_object_mut() {
        map.insert("ts".into(), now_rfc3339().into());
    }
    eprintln!("{object}");
}

/// `2 min`, `30 s`, `250 ms`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 120_000 {
        format!("{} min", ms / 60_000)
    } else if ms >= 1000 {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

/// `1:05` (minutes and seconds), `0:09`; hours as `2:03:04`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// On a terminal, rewrites one line every second until `delay` has passed
/// (or the next line is printed): `waiting for <what>: 1:23 left`.
fn start_countdown(what: String, delay: Duration) {
    if json_output() || delay < COUNTDOWN_FROM || !std::io::stderr().is_terminal() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let until = tokio::time::Instant::now() + delay;
    let task = runtime.spawn(async move {
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            {
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r\x1b[2K[sturdy-acme]   waiting for {what}: {} left",
                    clock(left + Duration::from_millis(999))
                );
                let _ = err.flush();
            }
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        }
        let _ = write!(std::io::stderr(), "\r\x1b[2K");
    });
    let previous = COUNTDOWN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .replace(task.abort_handle());
    if let Some(previous) = previous {
        previous.abort();
    }
}

/// Ends the countdown line, if one is shown.
fn stop_countdown() {
    let running = COUNTDOWN.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(running) = running {
        running.abort();
        let _ = write!(std::io::stderr(), "\r\x1b[2K");
    }
}

/// Turns the library's events into what the person (or the log system)
/// needs to see: every wait gets a line before it starts, saying what the
/// CA said and what happens next; badNonce re-sends are counted and
/// summarised instead.
#[derive(Default)]
pub struct WaitReporter {
    bad_nonces: AtomicU64,
    caa_retries: Mutex<std::collections::HashMap<String, u32>>,
    caa_attempts: u32,
}

impl WaitReporter {
    /// The run's reporter (one per process).
    pub fn new(policy: &RetryPolicy) -> Arc<Self> {
        REPORTER
            .get_or_init(|| {
                Arc::new(Self {
                    caa_attempts: policy.caa().max_attempts(),
                    ..Self::default()
                })
            })
            .clone()
    }

    pub fn on_event(&self, event: &Event) {
        match event {
            Event::Retry {
                endpoint,
                url,
                class,
                attempt,
                delay,
                error,
                ..
            } => {
                if *class == ErrorClass::BadNonce {
                    self.bad_nonces.fetch_add(1, Ordering::Relaxed);
                }
                let at = DisplayTime(SystemTime::now() + *delay);
                if json_output() {
                    let mut line = serde_json::json!({
                        "event": "retry",
                        "endpoint": endpoint.as_str(),
                        "url": url,
                        "class": class.name(),
                        "attempt": attempt,
                        "delay_ms": delay.as_millis() as u64,
                        "retry_at": at.to_string(),
                        "error": error,
                    });
                    if let ErrorClass::RateLimited { scope, .. } = class {
                        line["limit"] = scope.limit_name().into();
                    }
                    json_line(line);
                    return;
                }
                if *class == ErrorClass::BadNonce {
                    return; // summarised at the end
                }
                let said: String = error.chars().take(160).collect();
                let next = format!("retrying at {at} (in {})", human(*delay));
                let (line, waiting_for) = match class {
                    ErrorClass::Caa { names, .. } => {
                        let mut seen = self.caa_retries.lock().unwrap_or_else(|p| p.into_inner());
                        let n = seen.entry(url.clone()).or_insert(1);
                        *n += 1;
                        (
                            format!(
                                "CAA recheck failed at the CA for {}: the domain's DNS, not this tool; \
                                 {next}, attempt {} of {} ({said})",
                                names.join(", "),
                                n,
                                self.caa_attempts
                            ),
                            format!("the CAA retry of {}", names.join(", ")),
                        )
                    }
                    ErrorClass::RateLimited { scope, .. } => (
                        format!(
                            "rate limited at {endpoint}: \"{}\" ({scope}); {next} ({said})",
                            scope.limit_name()
                        ),
                        format!("the {} limit to lift", scope.limit_name()),
                    ),
                    other => (
                        format!("{endpoint}: {} ({said}); {next}", other.name()),
                        format!("the retry of {endpoint}"),
                    ),
                };
                step(line);
                start_countdown(waiting_for, *delay);
            }
            Event::Paused {
                endpoint,
                status,
                until,
                delay,
                error,
                ..
            } => {
                let what = endpoint.map_or("the whole CA".to_owned(), |e| e.to_string());
                if json_output() {
                    json_line(serde_json::json!({
                        "event": "paused",
                        "endpoint": endpoint.map(|e| e.as_str()),
                        "status": status,
                        "retry_at": DisplayTime(*until).to_string(),
                        "delay_ms": delay.as_millis() as u64,
                        "error": error,
                    }));
                    return;
                }
                let said: String = error.chars().take(160).collect();
                step(format!(
                    "the CA asked for a pause ({status}): every request to {what} waits until {} (in {}) ({said})",
                    DisplayTime(*until),
                    human(*delay)
                ));
                start_countdown(format!("the CA's pause of {what}"), *delay);
            }
            Event::GaveUp {
                endpoint,
                class,
                attempts,
                elapsed,
                ..
            } => {
                if json_output() {
                    json_line(serde_json::json!({
                        "event": "gave_up",
                        "endpoint": endpoint.as_str(),
                        "class": class.name(),
                        "attempts": attempts,
                        "elapsed_ms": elapsed.as_millis() as u64,
                    }));
                } else {
                    step(format!(
                        "{endpoint}: giving up after {attempts} attempts in {} ({})",
                        human(*elapsed),
                        class.name()
                    ));
                }
            }
            _ => {}
        }
    }

    /// The badNonce summary, if there were any.
    fn summary(&self) {
        let n = self.bad_nonces.load(Ordering::Relaxed);
        if n > 0 {
            step(format!(
                "{n} request(s) re-sent after badNonce (normal under load)"
            ));
        }
    }
}

/// The badNonce summary of the run, if there were any.
pub fn summary() {
    if let Some(reporter) = REPORTER.get() {
        reporter.summary();
    }
}
