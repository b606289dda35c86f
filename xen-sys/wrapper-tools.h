/*
 * Input to bindgen for `xen_sys::tools` (see `cargo xtask bindgen`): the
 * toolstack interfaces a privileged domain's control tools use, domctl.h and
 * sysctl.h.
 *
 * Both headers `#error` out unless __XEN__ or __XEN_TOOLS__ is defined, and
 * defining __XEN_TOOLS__ changes the other headers' view (cpu_user_regs
 * grows the rax/eax/ax/al register unions, memory.h and xen.h grow
 * tools-only parts), so they are a second, separate pass rather than part of
 * wrapper.h: only the items declared in domctl.h and sysctl.h (plus the two
 * tools-only types they are built from, xen_arch_domainconfig and
 * xenctl_bitmap) are generated here; everything else they refer to
 * (domid_t, xen_pfn_t, guest handles, ...) is the guest-view binding, which
 * has the same layout.
 *
 * With __XEN_TOOLS__, xen-compat.h sets __XEN_INTERFACE_VERSION__ to
 * __XEN_LATEST_INTERFACE_VERSION__ (0x00040e00), the same version wrapper.h
 * pins for the guest view.
 */
#define __XEN_TOOLS__ 1

#include <stdint.h>

#include "domctl.h"
#include "sysctl.h"
