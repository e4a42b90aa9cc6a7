//! Process-wide knobs that are read from the environment on first use unless a setter ran first.

use std::sync::atomic::{AtomicUsize, Ordering};

/// One such knob. `usize::MAX` marks "not decided yet", so a stored value is at most
/// `usize::MAX - 1`.
pub(crate) struct Setting(AtomicUsize);

impl Setting {
    const UNDECIDED: usize = usize::MAX;

    pub(crate) const fn new() -> Self {
        Self(AtomicUsize::new(Self::UNDECIDED))
    }

    /// The value, deciding it with `from_env` on first use.
    pub(crate) fn get(&self, from_env: impl FnOnce() -> usize) -> usize {
        match self.0.load(Ordering::Relaxed) {
            Self::UNDECIDED => {
                let v = from_env().min(Self::UNDECIDED - 1);
                self.0.store(v, Ordering::Relaxed);
                v
            }
            v => v,
        }
    }

    pub(crate) fn set(&self, v: usize) {
        self.0.store(v.min(Self::UNDECIDED - 1), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::Setting;

    #[test]
    fn decided_once_from_the_environment_unless_set() {
        let s = Setting::new();
        assert_eq!(s.get(|| 7), 7);
        assert_eq!(s.get(|| unreachable!("decided already")), 7);
        s.set(0);
        assert_eq!(s.get(|| unreachable!("set")), 0);
        let t = Setting::new();
        t.set(usize::MAX);
        assert_eq!(t.get(|| unreachable!("set")), usize::MAX - 1, "MAX stays the undecided mark");
    }
}
