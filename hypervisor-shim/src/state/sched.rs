//! Scheduling state of a domain's one vCPU (`sched.h`: block, poll, yield; `vcpu.h`:
//! timers and runstate). The policy that picks among domains is `common::sched`.

use alloc::vec::Vec;

use xen_sys::evtchn_port_t;

/// `SCHEDOP_poll` in progress: the ports waited on and the deadline (system time), if
/// any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Poll {
    pub ports: Vec<evtchn_port_t>,
    pub deadline: Option<u64>,
}

/// A periodic timer (`VCPUOP_set_periodic_timer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Periodic {
    pub period: u64,
    pub next: u64,
}

/// `vcpu_runstate_info` as the shim keeps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Runstate {
    /// `RUNSTATE_*`.
    pub state: u32,
    /// System time of the last change.
    pub entry_time: u64,
    /// Time spent in each state, up to `entry_time`.
    pub time: [u64; 4],
}

impl Runstate {
    /// Moves to `state` at system time `now`, accounting the time spent in the old one.
    pub fn change(&mut self, state: u32, now: u64) {
        let spent = now.saturating_sub(self.entry_time);
        if let Some(t) = self.time.get_mut(self.state as usize) {
            *t = t.saturating_add(spent);
        }
        self.state = state;
        self.entry_time = now.max(self.entry_time);
    }

    /// Time spent running, including the current stretch if it is running now.
    pub fn running_time(&self, now: u64) -> u64 {
        let t = self.time[xen_sys::RUNSTATE_running as usize];
        if self.state == xen_sys::RUNSTATE_running {
            t.saturating_add(now.saturating_sub(self.entry_time))
        } else {
            t
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VcpuSched {
    /// `SCHEDOP_block`: waits for an event.
    pub blocked: bool,
    pub poll: Option<Poll>,
    /// `domctl pausedomain` count: runs only at 0.
    pub pause_count: u32,
    /// `VCPUOP_down`: the vCPU is offline until `VCPUOP_up`.
    pub down: bool,
    /// `SCHEDOP_yield`: give the CPU to the next ready domain once.
    pub yielded: bool,
    /// Woke from blocking or polling: runs at the next scheduling point, ahead of the
    /// round robin (Xen credit's BOOST), so a domain that waits for events answers
    /// quickly even beside one that spins.
    pub boosted: bool,
    /// The single-shot timer's deadline (`set_timer_op`, `VCPUOP_set_singleshot_timer`).
    pub singleshot: Option<u64>,
    pub periodic: Option<Periodic>,
    pub runstate: Runstate,
    /// Guest virtual address of the runstate area (`VCPUOP_register_runstate_memory_area`).
    pub runstate_area: Option<u64>,
}

impl VcpuSched {
    /// Ready to run as far as scheduling goes (the domain must also be alive).
    pub fn ready(&self) -> bool {
        !self.blocked && self.poll.is_none() && self.pause_count == 0 && !self.down
    }

    /// An event arrived for the vCPU (`vcpu_unblock`): blocking and polling end.
    pub fn wake(&mut self) {
        if self.blocked || self.poll.is_some() {
            self.boosted = true;
        }
        self.blocked = false;
        self.poll = None;
    }

    /// The vCPU polls `port`: an event on it ends the poll.
    pub fn polls(&self, port: evtchn_port_t) -> bool {
        self.poll.as_ref().is_some_and(|p| p.ports.contains(&port))
    }

    /// The earliest timer deadline of this vCPU.
    pub fn next_deadline(&self) -> Option<u64> {
        [
            self.singleshot,
            self.periodic.map(|p| p.next),
            self.poll.as_ref().and_then(|p| p.deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs the timers due at `now`: whether VIRQ_TIMER fires. A poll that timed out
    /// ends (the guest sees `SCHEDOP_poll` return 0, as in Xen).
    pub fn expire(&mut self, now: u64) -> bool {
        let mut fire = false;
        if self.singleshot.is_some_and(|d| d <= now) {
            self.singleshot = None;
            fire = true;
        }
        if let Some(p) = &mut self.periodic {
            if p.next <= now {
                fire = true;
                // Missed periods are skipped, as Xen's periodic timer does.
                let late = now - p.next;
                p.next = now + p.period - late % p.period;
            }
        }
        if self
            .poll
            .as_ref()
            .and_then(|p| p.deadline)
            .is_some_and(|d| d <= now)
        {
            self.poll = None;
            self.boosted = true;
        }
        fire
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_expire_in_time_and_periods_skip_missed_ticks() {
        let mut s = VcpuSched {
            singleshot: Some(100),
            periodic: Some(Periodic {
                period: 10,
                next: 50,
            }),
            ..Default::default()
        };
        assert_eq!(s.next_deadline(), Some(50));
        assert!(!s.expire(49));
        assert!(s.expire(50));
        assert_eq!(s.periodic.unwrap().next, 60);
        assert!(s.expire(95), "late tick still fires once");
        assert_eq!(s.periodic.unwrap().next, 100);
        assert!(s.expire(100));
        assert_eq!(s.singleshot, None);
        assert_eq!(s.next_deadline(), Some(110));
    }

    #[test]
    fn poll_ends_on_its_port_or_its_deadline() {
        let mut s = VcpuSched {
            poll: Some(Poll {
                ports: alloc::vec![3, 5],
                deadline: Some(1000),
            }),
            ..Default::default()
        };
        assert!(!s.ready());
        assert!(s.polls(5) && !s.polls(4));
        assert!(!s.expire(999));
        assert!(!s.ready());
        assert!(!s.expire(1000), "a poll timeout is not a timer event");
        assert!(s.ready());
    }

    #[test]
    fn runstate_accounts_time_per_state() {
        let mut r = Runstate::default();
        r.change(xen_sys::RUNSTATE_running, 0);
        r.change(xen_sys::RUNSTATE_blocked, 30);
        r.change(xen_sys::RUNSTATE_running, 100);
        assert_eq!(r.running_time(110), 40);
        assert_eq!(r.time[xen_sys::RUNSTATE_blocked as usize], 70);
    }
}
