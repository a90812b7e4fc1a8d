//! A minimal QMP client: enough to take screendumps and to ask QEMU to quit.
//!
//! QMP is line-delimited JSON over the socket QEMU opens for `-qmp unix:PATH,server=on`.
//! After the greeting the client must send `qmp_capabilities`; then each command gets one
//! `return` or `error` reply, possibly after asynchronous `event` messages, which are skipped.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// An open, negotiated QMP connection.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects to `socket`, waiting up to `wait` for QEMU to create it, and negotiates.
    pub fn connect(socket: &Path, wait: Duration) -> Result<Self> {
        let deadline = Instant::now() + wait;
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(stream) => break stream,
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("connecting to QMP at {}", socket.display()));
                }
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .context("QMP socket timeout")?;
        let writer = stream.try_clone().context("cloning the QMP socket")?;
        let mut qmp = Self {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            bail!("unexpected QMP greeting: {greeting}");
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs `command` and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let mut request = json!({ "execute": command });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut line = request.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .context("sending a QMP command")?;
        loop {
            let reply = self.read_message()?;
            if let Some(value) = reply.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = reply.get("error") {
                bail!("QMP command {command} failed: {error}");
            }
            // Anything else is an asynchronous event.
        }
    }

    /// Writes the guest's screen to `png` (a path QEMU can write to).
    pub fn screendump(&mut self, png: &Path) -> Result<()> {
        let filename = png.to_str().context("the screendump path must be UTF-8")?;
        self.execute(
            "screendump",
            Some(json!({ "filename": filename, "format": "png" })),
        )?;
        Ok(())
    }

    /// Asks QEMU to exit.
    pub fn quit(&mut self) -> Result<()> {
        self.execute("quit", None).map(|_| ())
    }

    fn read_message(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .context("reading from QMP")?;
        if n == 0 {
            bail!("QEMU closed the QMP connection");
        }
        serde_json::from_str(&line).with_context(|| format!("parsing QMP message {line:?}"))
    }
}

/// Connects to the QMP socket and writes a PNG screendump of the guest's screen to `png`.
pub fn screendump(socket: &Path, png: &Path) -> Result<()> {
    let png = std::path::absolute(png).context("resolving the screendump path")?;
    Qmp::connect(socket, Duration::from_secs(10))?.screendump(&png)
}

#[cfg(test)]
mod tests {
    use std::{io::Read, os::unix::net::UnixListener};

    use super::*;

    /// A fake QEMU QMP server: checks the client's requests in order and answers them.
    #[test]
    fn screendump_speaks_qmp() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&socket).expect("bind");
        let server = thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut writer = stream.try_clone().expect("clone");
            let mut reader = BufReader::new(stream);
            let mut requests = Vec::new();
            writer
                .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
                .expect("w");
            for reply in [
                "{\"return\": {}}\r\n",
                "{\"timestamp\": {}, \"event\": \"RESUME\"}\r\n{\"return\": {}}\r\n",
            ] {
                let mut line = String::new();
                reader.read_line(&mut line).expect("request");
                requests.push(serde_json::from_str::<Value>(&line).expect("json request"));
                writer.write_all(reply.as_bytes()).expect("reply");
            }
            let mut rest = String::new();
            reader.read_to_string(&mut rest).expect("eof");
            requests
        });
        let png = dir.path().join("shot.png");
        screendump(&socket, &png).expect("screendump works");
        let requests = server.join().expect("server thread");
        assert_eq!(requests[0], json!({"execute": "qmp_capabilities"}));
        assert_eq!(
            requests[1],
            json!({"execute": "screendump",
                   "arguments": {"filename": png.to_str().expect("utf8"), "format": "png"}})
        );
    }
}
