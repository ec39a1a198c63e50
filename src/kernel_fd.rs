//! Descriptors the kernel hands out for events (an epoll set, inotify, a timerfd), made nonblocking by a
//! libc call and served on the async runtime: registered for reading, read once the runtime says they
//! are ready.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Takes what a libc call that makes a descriptor returned (the descriptor, or -1 with errno set) and
/// registers it with the runtime for reading.
pub fn register(made: RawFd) -> io::Result<AsyncFd<OwnedFd>> {
    if made < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the call just made this descriptor; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(made) };
    // SAFETY: the OwnedFd keeps that one descriptor open for as long as the AsyncFd holds it.
    Ok(unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?)
}

/// Waits until `fd` is readable and reads it once into `buf`: how many bytes came.
pub async fn read(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut ready = fd.readable().await?;
        // SAFETY: buf is writable for its whole length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => ready.clear_ready(),
            io::ErrorKind::Interrupted => {}
            _ => return Err(e),
        }
    }
}
