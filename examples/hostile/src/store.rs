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

/// After a fatal request: what the back end at `be` did (its state, its `error` node),
/// and whether it let go of our `grants` (each can be ended once dom0 unmapped it).
pub fn report_closed(name: &str, be: &str, grants: &[u32]) {
    let s = wait_for(be, State::Closing);
    let error = read(&format!("{be}/error"));
    libos::println!(
        "hostile: {name}: back end {}, error: {}",
        s.map_or(String::from("gone"), |s| format!("{s:?}")),
        error.as_deref().unwrap_or("(none)")
    );
    let mut busy = alloc::vec::Vec::new();
    for _ in 0..200 {
        busy = grants
            .iter()
            .copied()
            .filter(|&g| libos::grant::end_grant(g).is_err())
            .collect();
        if busy.is_empty() {
            break;
        }
        executor::block_on(timer::sleep(Duration::from_millis(10)));
    }
    if busy.is_empty() {
        libos::println!("hostile: {name}: grants released");
    } else {
        libos::println!("hostile: {name}: grants still mapped by dom0: {busy:?}");
    }
}
