//! The host side of the network cases: a TCP echo server on a loopback port, which the guest
//! reaches through QEMU's `guestfwd` at [`ECHO_GUEST`] and nothing else.
//!
//! Each connection gets a thread that writes back whatever it reads until the guest closes.
//! The listener is non-blocking and checks a stop flag, so dropping the server ends it.

use std::{
    io::{ErrorKind, Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context, Result};

use crate::qemu::Network;

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
