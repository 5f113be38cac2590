//! The real `smartlaunch serve` binary in its own process, for what only a process shows:
//! its peak memory (`VmHWM`), and how it ends on a signal.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct Process {
    pub child: Child,
    /// The public URL (`--public-url`, or the listening address).
    pub base: String,
    /// Where it listens (`http://127.0.0.1:port`): a node behind a proxy, reached directly
    /// (the two-node suite, in tests/http.rs only).
    #[allow(dead_code)]
    pub addr: String,
    /// The data directory, removed on drop (`None`: the caller's, kept).
    dir: Option<std::path::PathBuf>,
}

impl Process {
    /// Starts `smartlaunch serve` on a free loopback port with a fresh data directory and
    /// waits for its "running on" line.
    pub fn start(extra: &[&str]) -> Process {
        let dir = std::env::temp_dir().join(format!("smartlaunch-proc-{}", super::random(6)));
        let mut process = Process::start_in(&dir, extra);
        process.dir = Some(dir);
        process
    }

    /// Starts `smartlaunch serve` on the data directory `dir`, which outlives the process (to
    /// start another on it).
    pub fn start_in(dir: &std::path::Path, extra: &[&str]) -> Process {
        let dir = dir.to_str().expect("a UTF-8 path");
        Process::spawn(&[&["--data", dir], extra].concat(), &[])
    }

    /// Starts `smartlaunch serve --listen 127.0.0.1:0 <args>` with `env` added to its
    /// environment and waits for its "running on" line.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_smartlaunch"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let (base, addr) = loop {
            let line = lines.next().expect("the server printed its address").unwrap();
            if let Some(rest) = line.strip_prefix("smartlaunch is running on ") {
                let base = rest.split(' ').next().unwrap().to_owned();
                let listening = rest.split("(listening on ").nth(1).unwrap().split(')').next().unwrap();
                break (base, format!("http://{listening}"));
            }
        };
        // Keep reading so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Process { child, base, addr, dir: None }
    }

    /// Ends the process with SIGKILL: no shutdown, nothing flushed.
    // Used by the durability suite, which tests/http_postgres.rs leaves out.
    #[allow(dead_code)]
    pub fn kill_hard(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("the process ended");
    }

    /// A line of `/proc/<pid>/status` in KiB (`VmHWM`: peak resident memory; `VmRSS`: now).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    pub fn peak_mib(&self) -> u64 {
        self.status_kib("VmHWM:") / 1024
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            std::fs::remove_dir_all(dir).ok();
        }
    }
}
