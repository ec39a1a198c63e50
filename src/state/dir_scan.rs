//! Whether a directory holds a matching entry, read with `getdents64` in small batches that stop at the
//! first match: `read_dir` fills 32 KiB per call, about 800 entries, which every DEL paid with 1000
//! containers when it only wanted to know whether one record is left.

use std::fs;
use std::path::Path;

/// Whether `dir` has an entry whose name satisfies `wanted`; reads `getdents64` records in small batches and
/// stops at the first match.
pub fn has_entry(dir: &Path, wanted: impl Fn(&[u8]) -> bool) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;

    let dir = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)?;
    // u64s: the kernel writes 8-byte aligned linux_dirent64 records.
    let mut buffer = [0u64; 128];
    let size = std::mem::size_of_val(&buffer);
    loop {
        // SAFETY: the kernel writes at most `size` bytes into `buffer`.
        let read = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buffer.as_mut_ptr(),
                size,
            )
        };
        if read < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if read == 0 {
            return Ok(false);
        }
        // SAFETY: the first `read` bytes were written by the kernel.
        let bytes =
            unsafe { std::slice::from_raw_parts(buffer.as_ptr().cast::<u8>(), read as usize) };
        // linux_dirent64: d_ino u64, d_off i64, d_reclen u16, d_type u8, then the NUL-terminated name.
        let mut offset = 0;
        while offset + 19 <= bytes.len() {
            let record_len = u16::from_ne_bytes([bytes[offset + 16], bytes[offset + 17]]) as usize;
            if record_len == 0 || offset + record_len > bytes.len() {
                break;
            }
            let name = &bytes[offset + 19..offset + record_len];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if wanted(name) {
                return Ok(true);
            }
            offset += record_len;
        }
    }
}
