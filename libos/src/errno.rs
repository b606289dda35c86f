//! Names of Xen's error codes (`xen/include/public/errno.h`), for diagnostics such as
//! `attack NAME: result -22 EINVAL`.

use xen_sys::*;

/// The `E*` name of a positive Xen error code, or "E?" when unknown.
pub fn name(code: i64) -> &'static str {
    const NAMES: &[(xen_errno, &str)] = &[
        (XEN_EPERM, "EPERM"),
        (XEN_ENOENT, "ENOENT"),
        (XEN_ESRCH, "ESRCH"),
        (XEN_EIO, "EIO"),
        (XEN_ENXIO, "ENXIO"),
        (XEN_E2BIG, "E2BIG"),
        (XEN_ENOEXEC, "ENOEXEC"),
        (XEN_EBADF, "EBADF"),
        (XEN_ECHILD, "ECHILD"),
        (XEN_EAGAIN, "EAGAIN"),
        (XEN_ENOMEM, "ENOMEM"),
        (XEN_EACCES, "EACCES"),
        (XEN_EFAULT, "EFAULT"),
        (XEN_EBUSY, "EBUSY"),
        (XEN_EEXIST, "EEXIST"),
        (XEN_EXDEV, "EXDEV"),
        (XEN_ENODEV, "ENODEV"),
        (XEN_ENOTDIR, "ENOTDIR"),
        (XEN_EISDIR, "EISDIR"),
        (XEN_EINVAL, "EINVAL"),
        (XEN_ENFILE, "ENFILE"),
        (XEN_EMFILE, "EMFILE"),
        (XEN_ENOSPC, "ENOSPC"),
        (XEN_EROFS, "EROFS"),
        (XEN_EMLINK, "EMLINK"),
        (XEN_EDOM, "EDOM"),
        (XEN_ERANGE, "ERANGE"),
        (XEN_EDEADLK, "EDEADLK"),
        (XEN_ENAMETOOLONG, "ENAMETOOLONG"),
        (XEN_ENOLCK, "ENOLCK"),
        (XEN_ENOSYS, "ENOSYS"),
        (XEN_ENOTEMPTY, "ENOTEMPTY"),
        (XEN_ENODATA, "ENODATA"),
        (XEN_ETIME, "ETIME"),
        (XEN_EBADMSG, "EBADMSG"),
        (XEN_EOVERFLOW, "EOVERFLOW"),
        (XEN_EILSEQ, "EILSEQ"),
        (XEN_ENOTSOCK, "ENOTSOCK"),
        (XEN_EMSGSIZE, "EMSGSIZE"),
        (XEN_EOPNOTSUPP, "EOPNOTSUPP"),
        (XEN_EADDRINUSE, "EADDRINUSE"),
        (XEN_EADDRNOTAVAIL, "EADDRNOTAVAIL"),
        (XEN_ENOBUFS, "ENOBUFS"),
        (XEN_EISCONN, "EISCONN"),
        (XEN_ENOTCONN, "ENOTCONN"),
        (XEN_ETIMEDOUT, "ETIMEDOUT"),
        (XEN_ECONNREFUSED, "ECONNREFUSED"),
    ];
    NAMES
        .iter()
        .find(|(c, _)| i64::from(*c) == code)
        .map_or("E?", |(_, n)| n)
}
