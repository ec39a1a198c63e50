//! One qemu boot under TCG (KVM here cannot run a normal kernel): the serial console is the VM's only
//! output, kept line by line in a log file; the VM is killed on timeout and on drop.

use super::host_command::find_tool;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Boot<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub memory_mb: u32,
    pub timeout: Duration,
    /// Where the console output is written as it arrives, for reading after a failure.
    pub log: &'a Path,
}

#[derive(Debug)]
pub struct Console {
    /// Console lines with the serial line's `\r` removed.
    pub lines: Vec<String>,
    /// False when the VM was killed at the timeout.
    pub finished: bool,
    pub log: PathBuf,
}

/// Kills qemu if the test panics while it runs.
struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Boot<'_> {
    pub fn run(&self) -> Console {
        let qemu = find_tool(
            &["/usr/bin/qemu-system-x86_64"],
            "qemu-system-x86 (from bookworm-backports: Debian 12's own would replace qemu-utils)",
        );
        let child = Command::new(qemu)
            .args([
                "-accel",
                "tcg",
                "-smp",
                "1",
                "-m",
                &self.memory_mb.to_string(),
            ])
            .args(["-nographic", "-no-reboot", "-nic", "none"])
            .arg("-kernel")
            .arg(self.kernel)
            .arg("-initrd")
            .arg(self.initrd)
            // panic=-1 with -no-reboot: if /init dies the kernel panics and qemu exits at once.
            .args(["-append", "console=ttyS0 panic=-1 quiet"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting qemu-system-x86_64: {e}"));
        let mut vm = Vm(child);
        let (tx, rx) = mpsc::channel();
        for stream in [
            vm.0.stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            vm.0.stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
                    let text = String::from_utf8_lossy(&line).replace('\r', "");
                    if tx.send(text).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);

        let mut log = std::fs::File::create(self.log)
            .unwrap_or_else(|e| panic!("creating the console log {}: {e}", self.log.display()));
        let deadline = Instant::now() + self.timeout;
        let mut lines = Vec::new();
        let finished = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let _ = writeln!(log, "{line}");
                    lines.push(line);
                }
                // Both streams closed: qemu exited.
                Err(mpsc::RecvTimeoutError::Disconnected) => break true,
                Err(mpsc::RecvTimeoutError::Timeout) => break false,
            }
        };
        drop(vm);
        Console {
            lines,
            finished,
            log: self.log.to_owned(),
        }
    }
}
