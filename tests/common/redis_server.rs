//! A real `redis-server` on a free 127.0.0.1 port, in a directory of its own, stopped by its
//! PID when dropped. `--save ''`; `--appendonly no` unless asked for AOF (then `always` fsync).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    aof: bool,
    dir: std::path::PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` without persistence and waits until it answers PING.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// `aof`: `appendonly yes` (in the server's own directory).
    pub fn start_with(aof: bool) -> Self {
        for i in 0..5 {
            let port = super::reserve_addr().port();
            let dir =
                std::env::temp_dir().join(format!("tb-redis-{}-{port}-{i}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let mut s = Self {
                child: None,
                port,
                aof,
                dir,
            };
            if s.spawn() {
                return s;
            }
            // The port was taken in between, most likely: try another (the drop of `s`
            // removes its directory).
        }
        panic!("redis-server did not answer PING on any of 5 ports");
    }

    fn spawn(&mut self) -> bool {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", if self.aof { "yes" } else { "no" }])
            .args(["--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    panic!(
                        "redis-server not found on PATH: the Redis tests need a real server. \
                         Install it (`apt-get install redis-server`, `brew install redis`) or run \
                         ./scripts/test.sh, which installs it when missing"
                    )
                }
                panic!("cannot start redis-server: {e}")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break; // exited: could not bind
            }
            if ping(self.port) {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Kills the server and starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        assert!(
            self.spawn(),
            "redis-server did not come back on port {}",
            self.port
        );
    }

    /// Kills the server (by its PID) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether a Redis server answers PING on `127.0.0.1:port`.
pub fn ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}
