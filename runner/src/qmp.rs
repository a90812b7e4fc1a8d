//! A minimal QMP client: enough to take screendumps, press keys, ask QEMU to quit and record
//! the events that tell how a run ended.
//!
//! QMP is line-delimited JSON over the socket QEMU opens for `-qmp unix:PATH,server=on`.
//! After the greeting the client must send `qmp_capabilities`; then each command gets one
//! `return` or `error` reply, possibly after asynchronous `event` messages, which are kept
//! (see [`Qmp::resume_and_record`]).

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
    /// The events that arrived while a command waited for its reply.
    events: Vec<Event>,
}

/// An asynchronous QMP message: `{"event": NAME, "data": {...}, "timestamp": {...}}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The event's name, e.g. `SHUTDOWN`.
    pub name: String,
    /// Its `data` (`null` if it has none).
    pub data: Value,
}

impl Event {
    /// The event in `message`, if it is one.
    fn from_message(message: &Value) -> Option<Self> {
        Some(Self {
            name: message.get("event")?.as_str()?.to_owned(),
            data: message.get("data").cloned().unwrap_or(Value::Null),
        })
    }
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
            events: Vec::new(),
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
            self.events.extend(Event::from_message(&reply));
        }
    }

    /// Lets a guest that QEMU started paused (`-S`) run, and records every event from then
    /// on, on a thread that ends when QEMU closes the connection (when it exits, or is
    /// stopped). Started this way no event of the guest's run can be missed: the guest runs
    /// only once the recorder is listening.
    pub fn resume_and_record(mut self) -> Result<thread::JoinHandle<Result<Vec<Event>>>> {
        self.execute("cont", None)?;
        // QEMU may run for minutes between events; it closes the socket when it exits.
        self.reader
            .get_ref()
            .set_read_timeout(None)
            .context("QMP socket timeout")?;
        Ok(thread::spawn(move || self.events_until_closed()))
    }

    /// Reads until QEMU closes the connection; returns every event received, in order.
    fn events_until_closed(mut self) -> Result<Vec<Event>> {
        while let Some(message) = self.next_message()? {
            self.events.extend(Event::from_message(&message));
        }
        Ok(self.events)
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

    /// Presses and releases one key, named by its QEMU `QKeyCode` (`"a"`, `"spc"`, `"ret"`).
    ///
    /// QEMU queues the release after its hold time (100 ms) and keeps later keys behind it,
    /// so keys sent one after another arrive in order.
    pub fn send_key(&mut self, qcode: &str) -> Result<()> {
        self.execute(
            "send-key",
            Some(json!({ "keys": [{ "type": "qcode", "data": qcode }] })),
        )?;
        Ok(())
    }

    /// Presses keys together (`["shift", "semicolon"]` types `:`) and releases them.
    pub fn send_chord(&mut self, qcodes: &[&str]) -> Result<()> {
        let keys: Vec<Value> = qcodes
            .iter()
            .map(|q| json!({ "type": "qcode", "data": q }))
            .collect();
        self.execute("send-key", Some(json!({ "keys": keys })))?;
        Ok(())
    }

    /// Types `text` on the guest's keyboard, one `send-key` per character (see [`qcode`];
    /// characters typed with Shift, such as `:`, and `\x1b` for Escape, too).
    pub fn type_text(&mut self, text: &str) -> Result<()> {
        for c in text.chars() {
            if let Some(key) = qcode(c) {
                self.send_key(key)?;
            } else if let Some(key) = shifted_qcode(c) {
                self.send_chord(&["shift", key])?;
            } else if c == '\x1b' {
                self.send_key("esc")?;
            } else {
                anyhow::bail!("no key types {c:?}");
            }
        }
        Ok(())
    }

    /// Asks QEMU to exit.
    pub fn quit(&mut self) -> Result<()> {
        self.execute("quit", None).map(|_| ())
    }

    fn read_message(&mut self) -> Result<Value> {
        self.next_message()?
            .context("QEMU closed the QMP connection")
    }

    /// The next message, or `None` once QEMU has closed the connection.
    fn next_message(&mut self) -> Result<Option<Value>> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .context("reading from QMP")?;
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .with_context(|| format!("parsing QMP message {line:?}"))
    }
}

/// The QEMU `QKeyCode` of the unshifted key that types `c` on a US keyboard: lower-case
/// letters, digits, space and Enter (`\r` or `\n`).
pub fn qcode(c: char) -> Option<&'static str> {
    const LETTERS: [&str; 26] = [
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r",
        "s", "t", "u", "v", "w", "x", "y", "z",
    ];
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match c {
        'a'..='z' => Some(LETTERS[usize::from(c as u8 - b'a')]),
        '0'..='9' => Some(DIGITS[usize::from(c as u8 - b'0')]),
        ' ' => Some("spc"),
        '\r' | '\n' => Some("ret"),
        '-' => Some("minus"),
        '.' => Some("dot"),
        '/' => Some("slash"),
        ';' => Some("semicolon"),
        '=' => Some("equal"),
        ',' => Some("comma"),
        '\'' => Some("apostrophe"),
        _ => None,
    }
}

/// The key that types `c` with Shift held on a US keyboard: capitals and the shifted
/// punctuation a shell needs.
pub fn shifted_qcode(c: char) -> Option<&'static str> {
    if c.is_ascii_uppercase() {
        return qcode(c.to_ascii_lowercase());
    }
    Some(match c {
        ':' => "semicolon",
        '>' => "dot",
        '<' => "comma",
        '|' => "backslash",
        '$' => "4",
        '(' => "9",
        ')' => "0",
        '*' => "8",
        '&' => "7",
        '"' => "apostrophe",
        '_' => "minus",
        '+' => "equal",
        '!' => "1",
        '#' => "3",
        _ => return None,
    })
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

    #[test]
    fn characters_map_to_qcodes() {
        let keys: Vec<_> = "hi 09\r".chars().map(qcode).collect();
        assert_eq!(
            keys,
            [
                Some("h"),
                Some("i"),
                Some("spc"),
                Some("0"),
                Some("9"),
                Some("ret")
            ]
        );
        assert_eq!(qcode('z'), Some("z"));
        assert_eq!(qcode('\n'), Some("ret"));
        // Shifted characters need two keys: not supported.
        for c in ['A', '!', 'é', '\t'] {
            assert_eq!(qcode(c), None, "{c:?}");
        }
    }

    /// A fake QEMU QMP server: answers the greeting and `replies.len()` requests, and returns
    /// the requests it got.
    fn fake_server(socket: &Path, replies: Vec<&'static str>) -> thread::JoinHandle<Vec<Value>> {
        let listener = UnixListener::bind(socket).expect("bind");
        thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut writer = stream.try_clone().expect("clone");
            let mut reader = BufReader::new(stream);
            let mut requests = Vec::new();
            writer
                .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
                .expect("w");
            for reply in replies {
                let mut line = String::new();
                reader.read_line(&mut line).expect("request");
                requests.push(serde_json::from_str::<Value>(&line).expect("json request"));
                writer.write_all(reply.as_bytes()).expect("reply");
            }
            let mut rest = String::new();
            reader.read_to_string(&mut rest).expect("eof");
            requests
        })
    }

    #[test]
    fn typing_sends_one_key_per_character() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("qmp.sock");
        let server = fake_server(&socket, vec!["{\"return\": {}}\r\n"; 4]);
        let mut qmp = Qmp::connect(&socket, Duration::from_secs(5)).expect("connect");
        qmp.type_text("a1\r").expect("typing works");
        assert!(qmp.type_text("A").is_err(), "upper case needs shift");
        drop(qmp);
        let requests = server.join().expect("server thread");
        let key = |k: &str| {
            json!({"execute": "send-key",
                   "arguments": {"keys": [{"type": "qcode", "data": k}]}})
        };
        assert_eq!(
            requests,
            [
                json!({"execute": "qmp_capabilities"}),
                key("a"),
                key("1"),
                key("ret")
            ]
        );
    }

    #[test]
    fn errors_are_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("qmp.sock");
        let server = fake_server(
            &socket,
            vec![
                "{\"return\": {}}\r\n",
                "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}\r\n",
            ],
        );
        let mut qmp = Qmp::connect(&socket, Duration::from_secs(5)).expect("connect");
        let err = qmp.send_key("nope").expect_err("QEMU said no");
        assert!(err.to_string().contains("GenericError"), "{err}");
        drop(qmp);
        server.join().expect("server thread");
    }

    #[test]
    fn recording_lets_the_guest_run_and_keeps_every_event() {
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
            let replies = [
                "{\"return\": {}}\r\n",
                // QEMU sends RESUME before the reply to `cont`.
                "{\"timestamp\": {}, \"event\": \"RESUME\"}\r\n{\"return\": {}}\r\n",
            ];
            for reply in replies {
                let mut line = String::new();
                reader.read_line(&mut line).expect("request");
                requests.push(serde_json::from_str::<Value>(&line).expect("json request"));
                writer.write_all(reply.as_bytes()).expect("reply");
            }
            // The guest's run, then QEMU exits and the socket closes.
            writer
                .write_all(
                    b"{\"timestamp\": {}, \"event\": \"SHUTDOWN\", \
                      \"data\": {\"guest\": true, \"reason\": \"guest-reset\"}}\r\n",
                )
                .expect("event");
            requests
        });
        let qmp = Qmp::connect(&socket, Duration::from_secs(5)).expect("connect");
        let recorder = qmp.resume_and_record().expect("cont works");
        let events = recorder.join().expect("recorder thread").expect("recorded");
        assert_eq!(
            server.join().expect("server thread"),
            [
                json!({"execute": "qmp_capabilities"}),
                json!({"execute": "cont"})
            ]
        );
        assert_eq!(
            events,
            [
                Event {
                    name: "RESUME".into(),
                    data: Value::Null
                },
                Event {
                    name: "SHUTDOWN".into(),
                    data: json!({"guest": true, "reason": "guest-reset"})
                }
            ]
        );
    }

    #[test]
    fn screendump_speaks_qmp() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("qmp.sock");
        let server = fake_server(
            &socket,
            vec![
                "{\"return\": {}}\r\n",
                "{\"timestamp\": {}, \"event\": \"RESUME\"}\r\n{\"return\": {}}\r\n",
            ],
        );
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
