//! Third-party code that panics on bad input instead of returning an error (the `tokenizers`
//! crate on some malformed `tokenizer.json` files, cubecl's runtimes without a driver): run it
//! here, and its panic becomes a message for a typed error.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

/// Runs `f`; a panic inside it is caught and returned as a message. The panic hook is silenced
/// meanwhile, so that the user sees the typed error and not a "thread panicked" line, and it
/// records every panic message: a runtime that panics on its own thread (cubecl's wgpu server
/// finding no adapter) makes the caller fail with a bare `RecvError`, and the first recorded
/// message is then the real cause. The hook is process-wide: a panic on another thread during
/// `f` is silenced too (it still unwinds).
pub fn catch_panic<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let hook = std::panic::take_hook();
    let record = Arc::clone(&seen);
    std::panic::set_hook(Box::new(move |info| {
        let msg = message(info.payload());
        record.lock().unwrap_or_else(|e| e.into_inner()).push(msg);
    }));
    let result = catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.map_err(|payload| {
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.first() {
            Some(first) if seen.len() > 1 => format!("{first}; then: {}", message(&*payload)),
            _ => message(&*payload),
        }
    })
}

fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked without a message".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_panic_becomes_its_message() {
        assert_eq!(super::catch_panic(|| 3), Ok(3));
        assert_eq!(super::catch_panic(|| -> u8 { panic!("bad {}", 7) }), Err("bad 7".to_string()));
        assert_eq!(super::catch_panic(|| -> u8 { panic!("static") }), Err("static".to_string()));
        // A panic on another thread is the cause; the caller's own panic follows it.
        let e = super::catch_panic(|| -> u8 {
            let _ = std::thread::spawn(|| panic!("no adapter")).join();
            panic!("RecvError")
        });
        assert_eq!(e, Err("no adapter; then: RecvError".to_string()));
    }
}
