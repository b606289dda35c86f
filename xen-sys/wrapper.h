/*
 * Input to bindgen for the `xen-sys` crate (see `cargo xtask bindgen`).
 *
 * Xen public headers, x86_64 PV/PVH guest view (neither __XEN__ nor
 * __XEN_TOOLS__ is defined). The generator puts the Xen include directory
 * (e.g. /usr/include/xen) on the *quote* search path only (`-iquote`), so
 * `"sched.h"` / `"features.h"` below resolve to Xen's headers while libc's
 * own `<sched.h>` / `<features.h>` stay untouched. The x86_64 architecture is
 * selected by xen.h itself from the compiler's `__x86_64__` (the generator
 * passes `-target x86_64-unknown-linux-gnu`).
 *
 * Not included: domctl.h and sysctl.h. They are tools-only interfaces and
 * `#error` out unless __XEN__ or __XEN_TOOLS__ is defined, which would
 * change the guest view of the other headers.
 */

/*
 * Pinned guest interface version: __XEN_LATEST_INTERFACE_VERSION__ of the
 * Xen 4.17 headers (xen-compat.h), i.e. the Xen 4.14+ interface. Without
 * this define a guest gets the legacy 0x00000000 interface.
 */
#define __XEN_INTERFACE_VERSION__ 0x00040e00

/* The Xen headers use the fixed-width integer types without including them. */
#include <stdint.h>

#include "xen.h"
#include "event_channel.h"
#include "grant_table.h"
#include "sched.h"
#include "memory.h"
#include "vcpu.h"
#include "callback.h"
#include "elfnote.h"
#include "version.h"
#include "physdev.h"
#include "nmi.h"
#include "hvm/hvm_op.h"
#include "hvm/params.h"
#include "errno.h"
#include "arch-x86/xen-x86_64.h"
#include "arch-x86/hvm/start_info.h"
#include "arch-x86/cpuid.h"
#include "io/ring.h"
#include "io/netif.h"
#include "io/blkif.h"
#include "io/console.h"
#include "io/xs_wire.h"
#include "io/xenbus.h"
