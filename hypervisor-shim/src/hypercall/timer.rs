//! `set_timer_op` (`xen.h`): the vCPU's single-shot timer at an absolute system time;
//! 0 cancels it. When it expires the vCPU gets `VIRQ_TIMER`.

use super::env::Env;
use super::error::Result;
use crate::domain::Domain;
use crate::machine::Machine;

pub fn set_timer_op<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    timeout: u64,
) -> Result<i64> {
    // A deadline in the past fires at once, as Xen's does; Xen also clamps deadlines
    // that are negative as signed values (far in the future after a wrap) to "soon".
    dom.sched.singleshot = match timeout {
        0 => None,
        t if (t as i64) < 0 => Some(env.now() + 50_000_000),
        t => Some(t),
    };
    env.effects.resched = true;
    Ok(0)
}
