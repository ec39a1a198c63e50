//! Bringing `lo` up: a runtime's namespaces have it up, but a bare `ip netns add` (the demo's, the tests',
//! a hook run under a minimal runtime) leaves it down, and 127.0.0.11 and localhost live there. Two ioctls on
//! a datagram socket, so it needs neither a netlink socket nor a runtime.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

use super::{NetNs, NetnsError};

nix::ioctl_read_bad!(get_interface_flags, libc::SIOCGIFFLAGS, libc::ifreq);
nix::ioctl_write_ptr_bad!(set_interface_flags, libc::SIOCSIFFLAGS, libc::ifreq);

/// Brings `lo` up in `netns`; only the socket is made inside it, the ioctls act on its namespace from here.
pub fn loopback_up(netns: &NetNs) -> Result<(), NetnsError> {
    let socket = netns.run(inet_socket)?;
    let fail = |source| NetnsError::Loopback {
        path: netns.path().to_path_buf(),
        source,
    };
    set_loopback_up(&socket.map_err(fail)?).map_err(fail)
}

/// Brings `lo` up in the namespace of the calling thread.
pub fn loopback_up_here() -> io::Result<()> {
    set_loopback_up(&inet_socket()?)
}

fn inet_socket() -> io::Result<OwnedFd> {
    socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)
}

fn set_loopback_up(socket: &OwnedFd) -> io::Result<()> {
    // SAFETY: `ifreq` is a plain C struct (a name array and a union of integers); all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: a valid socket descriptor and a live, writable `ifreq` naming a NUL-terminated interface.
    unsafe { get_interface_flags(socket.as_raw_fd(), &mut request) }?;
    // SAFETY: SIOCGIFFLAGS just filled the union's `ifru_flags` member.
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    let up = libc::IFF_UP as libc::c_short;
    if flags & up == 0 {
        request.ifr_ifru.ifru_flags = flags | up;
        // SAFETY: as above; the kernel only reads the request.
        unsafe { set_interface_flags(socket.as_raw_fd(), &request) }?;
    }
    Ok(())
}
