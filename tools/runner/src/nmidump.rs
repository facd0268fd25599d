//! On a timeout, before QEMU is killed: ask the kernel for its NMI dump
//! (`NMIDUMP {json}` lines, `docs/interface.md`) by injecting an NMI through
//! QEMU's QMP socket, and say what came of it.
use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use serde_json::Value;

use crate::serial::{self, Record};

/// How long the runner keeps reading serial lines after asking for the dump
/// (it stops early at the dump's end marker).
pub const GRACE: Duration = Duration::from_secs(2);
/// How long each step of the QMP conversation may take.
const QMP_STEP_LIMIT: Duration = Duration::from_secs(2);
/// The longest socket path Linux takes (`sun_path` is 108 bytes with its NUL).
pub const MAX_SOCKET_PATH_BYTES: usize = 107;

/// What came of the NMI dump when a boot timed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NmiDump {
    /// Not asked for: the boot did not time out, or QEMU had no QMP socket.
    NotRequested,
    /// QEMU could not be asked (the reason).
    RequestFailed(String),
    /// Asked for; the end marker came: CPUs listed and how many answered.
    Printed { cpus: u64, answered: u64 },
    /// Asked for; some `NMIDUMP` lines came but not the end marker.
    Incomplete { lines: usize },
    /// Asked for; no `NMIDUMP` line came within the grace period.
    NoAnswer,
}

impl NmiDump {
    /// What the serial `lines` that came after the request say.
    pub fn of(lines: &[String]) -> Self {
        let records: Vec<&str> = lines
            .iter()
            .filter_map(|line| match serial::parse(line) {
                Record::NmiDump(json) => Some(json),
                _ => None,
            })
            .collect();
        let end = records.iter().find_map(|json| end_marker(json));
        match end {
            Some(end) => Self::Printed {
                cpus: end.get("cpus").and_then(Value::as_u64).unwrap_or(0),
                answered: end.get("answered").and_then(Value::as_u64).unwrap_or(0),
            },
            None if records.is_empty() => Self::NoAnswer,
            None => Self::Incomplete { lines: records.len() },
        }
    }

    /// The note the timeout message carries, if the dump was asked for.
    pub fn note(&self) -> Option<String> {
        let grace = GRACE.as_secs();
        Some(match self {
            Self::NotRequested => return None,
            Self::RequestFailed(why) => format!("NMI dump not requested: {why}"),
            Self::Printed { cpus, answered } => {
                format!("NMI dump requested and printed: {answered} of {cpus} CPUs answered")
            }
            Self::Incomplete { lines } => format!(
                "NMI dump requested: {lines} NMIDUMP lines but no end marker within {grace} s"
            ),
            Self::NoAnswer => format!("NMI dump requested: nothing arrived within {grace} s"),
        })
    }
}

/// Whether serial `line` is the dump's end marker (`"done":true`).
pub fn is_end_marker(line: &str) -> bool {
    matches!(serial::parse(line), Record::NmiDump(json) if end_marker(json).is_some())
}

/// The end marker's JSON, if `json` is it.
fn end_marker(json: &str) -> Option<Value> {
    let value: Value = serde_json::from_str(json).ok()?;
    (value.get("done")? == &Value::Bool(true)).then_some(value)
}

/// Asks the QEMU listening for QMP on `socket` to inject an NMI into every
/// CPU. The error says which step failed.
pub fn inject_nmi(socket: &Path) -> Result<(), String> {
    let stream = UnixStream::connect(socket)
        .map_err(|e| format!("cannot connect to QMP socket {}: {e}", socket.display()))?;
    stream.set_read_timeout(Some(QMP_STEP_LIMIT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(QMP_STEP_LIMIT)).map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let greeting = read_json(&mut reader).map_err(|e| format!("QMP greeting: {e}"))?;
    if greeting.get("QMP").is_none() {
        return Err(format!("not a QMP greeting: {greeting}"));
    }
    for command in ["qmp_capabilities", "inject-nmi"] {
        writeln!(writer, r#"{{"execute":"{command}"}}"#)
            .map_err(|e| format!("QMP {command}: {e}"))?;
        reply(&mut reader).map_err(|e| format!("QMP {command}: {e}"))?;
    }
    Ok(())
}

/// Reads QMP messages until the reply to the last command, skipping events.
fn reply(reader: &mut impl BufRead) -> Result<(), String> {
    loop {
        let message = read_json(reader)?;
        if message.get("return").is_some() {
            return Ok(());
        }
        if let Some(error) = message.get("error") {
            let desc = error.get("desc").and_then(Value::as_str).unwrap_or("no description");
            return Err(format!("QEMU said: {desc}"));
        }
        if message.get("event").is_none() {
            return Err(format!("unexpected message {message}"));
        }
    }
}

fn read_json(reader: &mut impl BufRead) -> Result<Value, String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => Err("QEMU closed the socket".to_string()),
        Ok(_) => serde_json::from_str(line.trim()).map_err(|e| format!("bad JSON {line:?}: {e}")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{os::unix::net::UnixListener, path::PathBuf, thread};

    use super::*;

    /// A stand-in for QEMU's QMP server at `socket`: greets, answers each
    /// command with `answer(command)`, and returns the commands it got.
    pub(crate) fn fake_qmp(
        socket: PathBuf,
        answer: impl Fn(&str) -> String + Send + 'static,
    ) -> thread::JoinHandle<Vec<String>> {
        let listener = UnixListener::bind(socket).unwrap();
        thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            writeln!(writer, r#"{{"QMP": {{"version": {{}}, "capabilities": ["oob"]}}}}"#).unwrap();
            let mut commands = Vec::new();
            for line in BufReader::new(stream).lines() {
                let value: Value = serde_json::from_str(&line.unwrap()).unwrap();
                let command = value["execute"].as_str().unwrap().to_string();
                writeln!(writer, "{}", answer(&command)).unwrap();
                commands.push(command);
            }
            commands
        })
    }

    pub(crate) fn qemu_like(command: &str) -> String {
        match command {
            "inject-nmi" => {
                // An event may come first.
                r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "NMI"}
{"return": {}}"#
                    .to_string()
            }
            _ => r#"{"return": {}}"#.to_string(),
        }
    }

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn injects_after_the_capabilities_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("qmp.sock");
        let server = fake_qmp(socket.clone(), qemu_like);
        assert_eq!(inject_nmi(&socket), Ok(()));
        assert_eq!(server.join().unwrap(), ["qmp_capabilities", "inject-nmi"]);
    }

    #[test]
    fn a_qmp_error_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("qmp.sock");
        let _server = fake_qmp(socket.clone(), |command| match command {
            "inject-nmi" => {
                r#"{"error": {"class": "GenericError", "desc": "NMI not supported"}}"#.into()
            }
            _ => r#"{"return": {}}"#.into(),
        });
        assert_eq!(inject_nmi(&socket), Err("QMP inject-nmi: QEMU said: NMI not supported".into()));
    }

    #[test]
    fn a_missing_socket_is_reported() {
        let why = inject_nmi(Path::new("/nonexistent/qmp.sock")).unwrap_err();
        assert!(why.starts_with("cannot connect to QMP socket /nonexistent/qmp.sock"), "{why}");
    }

    #[test]
    fn dump_outcomes() {
        let cpu =
            r#"NMIDUMP {"cpu":0,"answered":true,"rip":"0x1","rsp":"0x2","if":true,"holds":[]}"#;
        let done = r#"NMIDUMP {"done":true,"cpus":2,"answered":1,"reporter":0}"#;
        assert_eq!(
            NmiDump::of(&lines(&["x", cpu, done])),
            NmiDump::Printed { cpus: 2, answered: 1 }
        );
        assert!(is_end_marker(done) && !is_end_marker(cpu));
        assert_eq!(NmiDump::of(&lines(&[cpu])), NmiDump::Incomplete { lines: 1 });
        assert_eq!(NmiDump::of(&lines(&["x"])), NmiDump::NoAnswer);
        assert_eq!(
            NmiDump::Printed { cpus: 2, answered: 2 }.note().unwrap(),
            "NMI dump requested and printed: 2 of 2 CPUs answered"
        );
        assert_eq!(
            NmiDump::NoAnswer.note().unwrap(),
            "NMI dump requested: nothing arrived within 2 s"
        );
        assert_eq!(NmiDump::NotRequested.note(), None);
    }
}
