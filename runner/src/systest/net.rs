//! The host side of the network cases: a TCP echo server on a loopback port, which the guest
//! reaches through QEMU's `guestfwd` at [`ECHO_GUEST`] and nothing else; for the user-space
//! network cases, an HTTP server of one random file (at [`HTTP_GUEST`]) and concurrent echo
//! clients against a server in the guest (through `hostfwd` on 127.0.0.1).
//!
//! Each connection gets a thread that writes back whatever it reads until the guest closes.
//! The listener is non-blocking and checks a stop flag, so dropping the server ends it.

use std::{
    io::{ErrorKind, Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context, Result, bail};

use super::user::UserProgram;
use crate::{
    qemu::{Network, RunOptions},
    watch::{self, Outcome},
};

/// The guest's address and port for the echo server (as the kernel's ktests expect).
pub const ECHO_GUEST: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 0, 2, 100), 7);

/// A running echo server; stops when dropped.
pub struct EchoServer {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl EchoServer {
    /// Listens on a free port of 127.0.0.1.
    pub fn start() -> Result<Self> {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the echo server")?;
        listener
            .set_nonblocking(true)
            .context("making the echo server non-blocking")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        thread::spawn(move || accept_loop(&listener, &flag));
        Ok(Self { port, stop })
    }

    /// The guest's network: the echo server forwarded, nothing else.
    pub fn network(&self) -> Network {
        Network {
            forward: Vec::new(),
            serve: vec![(ECHO_GUEST.0, ECHO_GUEST.1, self.port)],
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn accept_loop(listener: &TcpListener, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => {
                thread::spawn(move || echo(stream));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(_) => return,
        }
    }
}

fn echo(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// The guest's address and port for the download server.
pub const HTTP_GUEST: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 0, 2, 100), 80);
/// The port the guest's echo server listens on (user/tests/echo-server.c).
pub const GUEST_ECHO_PORT: u16 = 7777;
/// How big the downloaded file is.
const DOWNLOAD_BYTES: usize = 16 << 20;
/// What each echo client sends.
const ECHO_BYTES: usize = 8 * 1024;

/// What the host does while a network user case runs.
#[derive(Clone, Copy, Debug)]
pub(super) enum Scenario {
    /// Serves a fresh random file over HTTP at [`HTTP_GUEST`]; the guest's output must name
    /// its size and SHA-256 (`net-wget: size N`, `net-wget: sha256 HEX`).
    Download,
    /// Once the guest says `echo-server: listening`, makes this many connections at once to
    /// its [`GUEST_ECHO_PORT`] through `hostfwd`; each must get its own bytes back.
    EchoClients(usize),
}

/// A one-file HTTP/1.0 server on a loopback port; stops when dropped.
pub struct HttpServer {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl HttpServer {
    /// Serves `data` to every GET on a free port of 127.0.0.1.
    pub fn start(data: Arc<Vec<u8>>) -> Result<Self> {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the HTTP server")?;
        listener
            .set_nonblocking(true)
            .context("making the HTTP server non-blocking")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        thread::spawn(move || {
            while !flag.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let data = Arc::clone(&data);
                        thread::spawn(move || serve_http(stream, &data));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => return,
                }
            }
        });
        Ok(Self { port, stop })
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Answers one request: the file for a GET, 400 for anything else.
fn serve_http(mut stream: TcpStream, data: &[u8]) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    if !request.starts_with(b"GET ") {
        let _ = stream.write_all(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    let header = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        data.len()
    );
    if stream.write_all(header.as_bytes()).is_ok() {
        let _ = stream.write_all(data);
    }
}

/// Random bytes from the host's `/dev/urandom` (a file no run has seen before).
fn random_file(len: usize) -> Result<Vec<u8>> {
    let mut data = vec![0u8; len];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut data))
        .context("reading /dev/urandom")?;
    Ok(data)
}

/// The SHA-256 of `data` in hex, by the host's `sha256sum` (coreutils).
fn sha256_hex(data: &[u8]) -> Result<String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running sha256sum (package coreutils)")?;
    child
        .stdin
        .take()
        .context("sha256sum's input")?
        .write_all(data)
        .context("feeding sha256sum")?;
    let out = child.wait_with_output().context("waiting for sha256sum")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// A free TCP port of 127.0.0.1 (bound and let go: QEMU binds it next).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// `count` clients at once against 127.0.0.1:`port`: each connects (retrying while the
/// guest is not yet reachable), sends its own bytes, reads them back and compares.
fn echo_clients(port: u16, count: usize) -> Result<(), String> {
    let barrier = Arc::new(std::sync::Barrier::new(count));
    let handles: Vec<_> = (0..count)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || -> Result<(), String> {
                let data: Vec<u8> = (0..ECHO_BYTES)
                    .map(|k| (k.wrapping_mul(31) ^ i.wrapping_mul(7919)) as u8)
                    .collect();
                barrier.wait();
                let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                    .map_err(|e| format!("client {i}: connect: {e}"))?;
                stream
                    .set_read_timeout(Some(Duration::from_secs(60)))
                    .map_err(|e| e.to_string())?;
                let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
                let sent = data.clone();
                let sender = thread::spawn(move || writer.write_all(&sent));
                let mut back = vec![0u8; ECHO_BYTES];
                stream
                    .read_exact(&mut back)
                    .map_err(|e| format!("client {i}: reading the echo: {e}"))?;
                let _ = sender.join();
                if back != data {
                    return Err(format!("client {i}: the echo differs"));
                }
                Ok(())
            })
        })
        .collect();
    let mut errors = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("a client panicked".to_owned()),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Runs a guest program with the network and `scenario`'s host side; checks both.
pub(super) fn run_user(
    ctx: &super::Suite,
    opts: &RunOptions,
    log: &Path,
    program: UserProgram,
    scenario: Scenario,
) -> Result<String> {
    let mut opts = opts.clone();
    let mut expected = Vec::new();
    let _server;
    let mut echo_port = None;
    match scenario {
        Scenario::Download => {
            let data = Arc::new(random_file(DOWNLOAD_BYTES)?);
            expected.push(format!("net-wget: size {}", data.len()));
            expected.push(format!("net-wget: sha256 {}", sha256_hex(&data)?));
            let server = HttpServer::start(data)?;
            opts.net = Some(Network {
                forward: Vec::new(),
                serve: vec![(HTTP_GUEST.0, HTTP_GUEST.1, server.port)],
            });
            _server = server;
        }
        Scenario::EchoClients(_) => {
            let port = free_port()?;
            opts.net = Some(Network {
                forward: vec![(port, GUEST_ECHO_PORT)],
                serve: Vec::new(),
            });
            echo_port = Some(port);
        }
    }
    let mut running = ctx.qemu.spawn(&opts)?;
    let mut lines = Vec::new();
    let mut clients = None;
    let outcome = watch::watch(&mut running.child, Some(log), Some(ctx.timeout), |line| {
        lines.push(line.to_owned());
        if let (Scenario::EchoClients(count), Some(port), None) = (scenario, echo_port, &clients)
            && line.contains("echo-server: listening")
        {
            clients = Some(thread::spawn(move || echo_clients(port, count)));
        }
        false
    });
    match super::stop_unless_exited(&mut running.child, outcome)? {
        Outcome::Exited(_) => {}
        Outcome::TimedOut => bail!("no exit within {} s (QEMU stopped)", ctx.timeout.as_secs()),
        Outcome::Matched(line) => bail!("unexpected: {line}"),
        Outcome::Interrupted => bail!("interrupted"),
    }
    if let Scenario::EchoClients(_) = scenario {
        let clients = clients.context("the guest's echo server never said it was listening")?;
        clients
            .join()
            .map_err(|_| anyhow::anyhow!("the client threads panicked"))?
            .map_err(|e| anyhow::anyhow!("echo clients: {e}"))?;
    }
    let (out, status) = super::user::guest_run(&lines, &program.guest_path())?;
    let want = program.guest_only.unwrap_or_default();
    if status != 0 || !out.contains(want) {
        bail!("expected exit status 0 and `{want}`, got status {status} and:\n{out}");
    }
    for line in &expected {
        if !out.lines().any(|l| l.trim() == line) {
            bail!("the guest's output lacks `{line}`:\n{out}");
        }
    }
    Ok(format!(": {}", out.trim_end().replace('\n', "; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_and_is_only_served_to_the_guest_address() {
        let server = EchoServer::start().expect("a loopback port");
        let net = server.network();
        assert_eq!(net.serve, vec![(ECHO_GUEST.0, 7, server.port)]);
        assert!(net.forward.is_empty());
        let mut stream =
            TcpStream::connect((Ipv4Addr::LOCALHOST, server.port)).expect("the echo server");
        stream.write_all(b"evergreen").expect("writing");
        let mut back = [0u8; 9];
        stream.read_exact(&mut back).expect("reading the echo");
        assert_eq!(&back, b"evergreen");
    }
}
