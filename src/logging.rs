//! Log lines in the original's style — `[tag] level: message` — to stderr and/or syslog
//! (journald picks syslog up), with debug output switchable at runtime.
//!
//! The tag is the `tracing` target (`main`, `database`, `fuse`, `dcdb`, …); levels print as
//! the original's syslog names: error → `crit`, warn → `warning`, info → `notice`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// Shared switches of the logger.
#[derive(Debug, Default)]
pub struct LogControl {
    pub debug: AtomicBool,
    pub stderr: AtomicBool,
    pub syslog: AtomicBool,
    /// stderr is connected to journald: prefix lines with `<N>` so the journal records
    /// each line's priority (sd-daemon(3) convention).
    pub journal_prefix: AtomicBool,
}

impl LogControl {
    pub fn set_debug(&self, on: bool) {
        self.debug.store(on, Ordering::SeqCst);
        // records of the `log` crate (fuser logs every request at debug) stop in the macro
        log::set_max_level(if on { log::LevelFilter::Debug } else { log::LevelFilter::Warn });
    }
    pub fn debug(&self) -> bool {
        self.debug.load(Ordering::SeqCst)
    }
}

struct OriginalStyle {
    ctl: Arc<LogControl>,
}

#[derive(Default)]
struct MessageVisitor(String);

impl tracing::field::Visit for MessageVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name().starts_with("log.") {
            return;
        }
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name().starts_with("log.") {
            return;
        }
        if field.name() == "message" {
            self.0 = value.to_string();
        } else {
            self.0.push_str(&format!(" {}={value}", field.name()));
        }
    }
}

fn level_name(l: &Level) -> (&'static str, libc::c_int) {
    match *l {
        Level::ERROR => ("crit", libc::LOG_CRIT),
        Level::WARN => ("warning", libc::LOG_WARNING),
        Level::INFO => ("notice", libc::LOG_NOTICE),
        _ => ("debug", libc::LOG_DEBUG),
    }
}

/// The original's tag of a target: our crates map to their tags; None for library targets
/// (fuser, rusqlite) and for records bridged from the `log` crate (target "log").
fn crate_tag(target: &str) -> Option<&'static str> {
    [("pmxcfs_dfsm", "dfsm"), ("pmxcfs_status", "status"), ("pmxcfs_ipc", "ipcs"), ("pmxcfs_backend", "database"), ("pmxcfs_fuse", "fuse"), ("pmxcfs_ng", "main")]
        .iter()
        .find(|(prefix, _)| target.starts_with(prefix))
        .map(|(_, tag)| *tag)
}

fn is_ours(target: &str) -> bool {
    crate_tag(target).is_some() || (!target.contains("::") && target != "log")
}

impl OriginalStyle {
    /// Whether a record of `meta` prints: library noise (fuser, rusqlite) only with debug on,
    /// and never below warn otherwise; trace never.
    fn wanted(&self, meta: &tracing::Metadata<'_>) -> bool {
        let level = *meta.level();
        if level == Level::TRACE {
            return false;
        }
        if level <= Level::WARN {
            return true;
        }
        self.ctl.debug() || (level == Level::INFO && is_ours(meta.target()))
    }
}

impl<S: Subscriber> Layer<S> for OriginalStyle {
    // Debug output is switched at runtime: callsites are asked every time (`enabled`, a level
    // compare and an atomic load), never cached as "never", so an unwanted record costs no
    // formatting and no dispatch.
    fn register_callsite(&self, _meta: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(&self, meta: &tracing::Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        self.wanted(meta)
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let target = meta.target();
        if !self.wanted(meta) {
            return;
        }
        let crate_tag = crate_tag(target);
        let ours = is_ours(target);
        let mut v = MessageVisitor::default();
        event.record(&mut v);
        if target == "log" && !self.ctl.debug() && is_refused_interrupt_reply(&v.0) {
            return;
        }
        let tag = match crate_tag {
            Some(t) => t,
            None if target == "log" => "fuse",
            None if ours => target,
            None => target.split("::").next().unwrap_or(target),
        };
        let (lname, prio) = level_name(meta.level());
        let line = if self.ctl.debug() {
            format!("[{tag}] {lname}: {} ({}:{})", v.0, meta.file().unwrap_or("?"), meta.line().unwrap_or(0))
        } else {
            format!("[{tag}] {lname}: {}", v.0)
        };
        if self.ctl.stderr.load(Ordering::Relaxed) {
            if self.ctl.journal_prefix.load(Ordering::Relaxed) {
                let _ = writeln!(std::io::stderr().lock(), "<{prio}>{line}");
            } else {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
        }
        if self.ctl.syslog.load(Ordering::Relaxed) {
            if let Ok(c) = std::ffi::CString::new(line.replace('\0', "")) {
                // SAFETY: format string and argument are valid NUL-terminated C strings.
                unsafe { libc::syslog(prio, c"%s".as_ptr(), c.as_ptr()) };
            }
        }
    }
}

/// fuser's warning that the kernel refused its reply to an INTERRUPT (odd request ids: the
/// kernel sets bit 0 of an interrupt's id). fuser answers every INTERRUPT with ENOSYS over
/// /dev/fuse; for a request served over io_uring the kernel does not find the interrupted
/// request there and refuses the reply, for every signal a waiting process gets. Nothing is
/// wrong, so it is only shown with debug on.
fn is_refused_interrupt_reply(msg: &str) -> bool {
    let Some(rest) = msg.strip_prefix("Request RequestId(") else { return false };
    let Some((id, tail)) = rest.split_once(')') else { return false };
    id.parse::<u64>().is_ok_and(|id| id & 1 == 1) && tail.starts_with(": Failed to send reply")
}

/// Installs the global logger; returns its switches.
pub fn init(debug: bool) -> Arc<LogControl> {
    let ctl = Arc::new(LogControl::default());
    ctl.stderr.store(true, Ordering::SeqCst);
    ctl.journal_prefix.store(stderr_is_journal(), Ordering::SeqCst);
    let _ = tracing_subscriber::registry().with(OriginalStyle { ctl: ctl.clone() }).try_init();
    // after try_init: its `log` bridge sets the `log` crate's maximum level too
    ctl.set_debug(debug);
    ctl
}

/// True when `$JOURNAL_STREAM` (`dev:inode`) names our stderr, i.e. systemd connected it
/// to the journal.
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(js) = std::env::var("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = js.split_once(':') else { return false };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else { return false };
    dev.parse::<u64>().ok() == Some(meta.dev()) && ino.parse::<u64>().ok() == Some(meta.ino())
}

/// Starts logging to syslog (ident `pmxcfs`, facility daemon).
pub fn enable_syslog(ctl: &LogControl) {
    // SAFETY: the ident is a static C string that lives for the whole process.
    unsafe { libc::openlog(c"pmxcfs".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
    ctl.syslog.store(true, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::is_refused_interrupt_reply;

    #[test]
    fn only_refused_interrupt_replies_are_hidden() {
        assert!(is_refused_interrupt_reply("Request RequestId(1235): Failed to send reply: No such file or directory (os error 2)"));
        assert!(!is_refused_interrupt_reply("Request RequestId(1234): Failed to send reply: No such file or directory (os error 2)"));
        assert!(!is_refused_interrupt_reply("Request RequestId(1235): something else"));
        assert!(!is_refused_interrupt_reply("Failed to send FUSE reply: Broken pipe"));
    }
}
