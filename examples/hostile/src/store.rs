//! The xenstore side of the hand-made front ends (`blk.rs`, `net.rs`): reads and
//! writes that must succeed, and waiting for a back end's state.

use alloc::format;
use alloc::string::String;
use core::time::Duration;

use ::xenbus::State;
use libos::xenbus::{self, Store, NO_TX};
use libos::{executor, timer};

pub fn xs() -> &'static xenbus::Client<xenbus::GuestRing> {
    xenbus::store().expect("hostile: a store ring")
}

pub fn read(path: &str) -> Option<String> {
    executor::block_on(xs().read_string(NO_TX, path)).ok()
}

pub fn write(path: &str, value: &str) {
    executor::block_on(xs().write_str(NO_TX, path, value))
        .unwrap_or_else(|e| panic!("hostile: writing {path}: {e:?}"));
}

pub fn state(dir: &str) -> Option<State> {
    read(&format!("{dir}/state")).and_then(|s| State::parse(s.as_bytes()))
}

/// Waits (at most ~5 s) until the back end's state is `want` or past it.
pub fn wait_for(dir: &str, want: State) -> Option<State> {
    for _ in 0..500 {
        match state(dir) {
            Some(s) if s as u32 >= want as u32 => return Some(s),
            _ => executor::block_on(timer::sleep(Duration::from_millis(10))),
        }
    }
    state(dir)
}
