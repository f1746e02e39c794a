//! The fuse module's `enable_uring` switch (FUSE over io_uring), set for as long as a guard
//! lives and restored when it is dropped. A global kernel knob: tests and benchmarks that
//! set it run one at a time. Included by `#[path]` in benches/scale (no crate is shared).

pub const KNOB: &str = "/sys/module/fuse/parameters/enable_uring";

/// The knob's value before it was set.
pub struct UringKnob {
    old: String,
}

impl UringKnob {
    /// Switches it on or off; None where the kernel has no FUSE io_uring (or it cannot be set).
    pub fn set(on: bool) -> Option<UringKnob> {
        let old = std::fs::read_to_string(KNOB).ok()?;
        std::fs::write(KNOB, if on { "Y" } else { "N" }).ok()?;
        Some(UringKnob { old: old.trim().to_string() })
    }

    /// Its value now: Y, N, or "absent".
    pub fn now() -> String {
        std::fs::read_to_string(KNOB).map(|v| v.trim().to_string()).unwrap_or_else(|_| "absent".into())
    }
}

impl Drop for UringKnob {
    fn drop(&mut self) {
        let _ = std::fs::write(KNOB, &self.old);
    }
}
