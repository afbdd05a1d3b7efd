//! The real `fundledger` binary as an operator runs it: `init` a data
//! directory, `serve` it as a child process on a port the server picks
//! (`--listen 127.0.0.1:0`; the address is read from its log), stop it with
//! SIGTERM or kill it with SIGKILL, `verify` it offline.

use fundledger::api::auth::{self, Client};
use fundledger::api::pb;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// The binary under test: cargo's build of it, or the one `FUNDLEDGER_BIN`
/// names (a copy, for a long run while the target directory is rebuilt).
pub fn binary() -> std::path::PathBuf {
    match std::env::var_os("FUNDLEDGER_BIN") {
        Some(path) => path.into(),
        // Set for integration tests only; an example must name the binary.
        None => match option_env!("CARGO_BIN_EXE_fundledger") {
            Some(path) => path.into(),
            None => panic!("set FUNDLEDGER_BIN to the fundledger binary"),
        },
    }
}

/// `fundledger init --data-dir DIR`: a new ledger; returns the admin token,
/// the last line of its output.
pub fn init(dir: &Path) -> String {
    let output = Command::new(binary()).args(["init", "--data-dir"]).arg(dir).env("RUST_LOG", "warn").output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "fundledger init failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    let token = stdout.lines().last().expect("init prints the token last").trim().to_owned();
    assert!(token.starts_with(auth::TOKEN_PREFIX), "the last line of init is not a token: {stdout}");
    token
}

/// `fundledger verify --data-dir DIR` on a stopped server: panics with its
/// output unless it exits 0 (the chain, the projections and every index
/// agree with a full replay).
pub fn verify(dir: &Path) -> String {
    let output =
        Command::new(binary()).args(["verify", "--data-dir"]).arg(dir).env("RUST_LOG", "warn").output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "fundledger verify failed ({}): {text}", output.status);
    text
}

/// A `fundledger serve` child process. Dropping it kills it.
pub struct ServerProcess {
    pub child: Child,
    pub url: String,
    /// Everything the server wrote to stderr so far (its log, at `warn`
    /// plus the server's start and stop lines).
    log: Arc<Mutex<String>>,
    /// The thread reading stderr; it ends at the pipe's end, once the
    /// process is gone.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ServerProcess {
    /// Starts `fundledger serve` on `dir` and waits until it listens.
    pub fn start(dir: &Path) -> ServerProcess {
        let mut child = Command::new(binary())
            .args(["serve", "--data-dir"])
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            // The server's own lines say where it listens and when it stopped.
            .env("RUST_LOG", "warn,fundledger::api::server=info,fundledger::server_main=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (address_tx, address_rx) = mpsc::channel();
        let reader = {
            let log = log.clone();
            // Read to the end, so that the server never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(address) = listening_address(&line) {
                        let _ = address_tx.send(address);
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            })
        };
        let address = match address_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().unwrap();
                panic!("fundledger serve did not say where it listens ({status}): {}", log.lock().unwrap());
            }
        };
        ServerProcess { child, url: format!("http://{address}"), log, reader: Some(reader) }
    }

    /// What the server logged so far (all of it, once [`Self::wait_exit`]
    /// or [`Self::kill`] has seen the process end).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub async fn channel(&self) -> Channel {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match Channel::from_shared(self.url.clone()).unwrap().connect().await {
                Ok(channel) => return channel,
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(error) => panic!("server at {} does not accept connections: {error}", self.url),
            }
        }
    }

    /// A client calling with `token` on a connection of its own.
    pub async fn client(&self, token: &str) -> Client {
        auth::client(self.channel().await, token).unwrap()
    }

    /// SIGTERM: the graceful stop an operator or a service manager asks for.
    pub fn terminate(&self) {
        signal(&self.child, libc::SIGTERM);
    }

    /// SIGKILL: the process ends at once, as in a crash or a power cut of
    /// the process (the kernel still writes out what the process wrote).
    pub fn kill(&mut self) -> ExitStatus {
        signal(&self.child, libc::SIGKILL);
        let status = self.child.wait().unwrap();
        self.read_to_end();
        status
    }

    /// Waits for the process to end by itself, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.read_to_end();
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl ServerProcess {
    /// Waits until the log of the ended process has been read whole.
    fn read_to_end(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) with our own child's pid; no memory is shared.
    let result = unsafe { libc::kill(pid, signal) };
    assert_eq!(result, 0, "kill({pid}, {signal}): {}", std::io::Error::last_os_error());
}

/// The address in the server's "serving …" line (`address=Some(IP:PORT)`).
fn listening_address(line: &str) -> Option<String> {
    if !line.contains("serving fundledger") {
        return None;
    }
    let start = line.find("address=Some(")? + "address=Some(".len();
    let end = start + line[start..].find(')')?;
    Some(line[start..end].to_owned())
}

/// The metadata `meta` of a command with request id `id`.
pub fn meta(id: &str) -> Option<pb::CommandMeta> {
    Some(pb::CommandMeta { request_id: id.into(), expected_version: None, positions_only: false })
}
