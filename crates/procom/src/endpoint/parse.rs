//! Parsing the endpoint grammar (and sizes such as `64KiB`): every refusal says what is wrong.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::{Endpoint, IPC_NAME_MAX, SysvKey, UNIX_PATH_MAX, UnixAddr};
use crate::error::{Error, ErrorKind};

const SCHEMES: &str = "-, fifo:, mq:, msg:, shm:, unix:, unixgram:, unixpacket:, tcp: or udp:";

fn invalid(text: &str, why: impl fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidEndpoint)
        .detail(format!("`{text}` is not a valid endpoint: {why}"))
}

/// Parses a duration such as `50us`, `10ms`, `2s` or `500ns` (`µs` is `us` too). A duration
/// too long to represent is the longest there is.
pub fn parse_duration(text: &str) -> Result<Duration, Error> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || {
        Error::new(ErrorKind::InvalidInput).detail(format!(
            "`{text}` is not a duration: give a whole number and a unit, like 50us, 10ms or 2s"
        ))
    };
    let n: u128 = digits.parse().map_err(|_| bad())?;
    let per: u128 = match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        _ => return Err(bad()),
    };
    let nanos = n.saturating_mul(per);
    let secs = nanos / 1_000_000_000;
    Ok(match u64::try_from(secs) {
        Ok(s) => Duration::new(s, (nanos % 1_000_000_000) as u32),
        Err(_) => Duration::MAX,
    })
}

/// Parses a number of seconds such as `2`, `0.5` or `1e-3`, as the command line takes its
/// timeouts: finite, not negative and at most a year (so a deadline computed from it can never
/// overflow); `inf`, `nan`, `1e300` and negative numbers are refused.
pub fn parse_seconds(text: &str) -> Result<Duration, Error> {
    const YEAR: f64 = 365.0 * 24.0 * 3600.0;
    let bad = |why: String| Error::new(ErrorKind::InvalidInput).detail(why);
    let secs: f64 = text
        .parse()
        .map_err(|_| bad(format!("`{text}` is not a number of seconds")))?;
    if !(0.0..=YEAR).contains(&secs) {
        return Err(bad(format!(
            "`{text}` is not a usable number of seconds (0 to {YEAR}, a year)"
        )));
    }
    Duration::try_from_secs_f64(secs)
        .map_err(|_| bad(format!("`{text}` is not a usable number of seconds")))
}

/// A duration as procom writes it in messages: a number and a unit, `1 s`, `1.5 s`, `20 ms`,
/// `250 µs`, `80 ns` (at most three decimals, trailing zeros dropped).
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    let (value, unit) = match nanos {
        0 => return "0 s".to_string(),
        n if n >= 1_000_000_000 => (n as f64 / 1e9, "s"),
        n if n >= 1_000_000 => (n as f64 / 1e6, "ms"),
        n if n >= 1_000 => (n as f64 / 1e3, "µs"),
        n => (n as f64, "ns"),
    };
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {unit}")
}

/// Parses a size such as `4096`, `64KiB`, `1M` or `2GB`.
pub fn parse_size(text: &str) -> Result<u64, Error> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || {
        Error::new(ErrorKind::InvalidInput).detail(format!(
            "`{text}` is not a size: expected a number with an optional unit (K, KiB, M, MiB, G, GiB, KB, MB, GB)"
        ))
    };
    if digits.is_empty() {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// Parses `k=v&k=v`, allowing only `allowed` keys, each at most once.
fn params<'a>(
    text: &str,
    query: Option<&'a str>,
    allowed: &[&str],
) -> Result<Vec<(&'a str, &'a str)>, Error> {
    let Some(query) = query else {
        return Ok(Vec::new());
    };
    let mut out: Vec<(&str, &str)> = Vec::new();
    for pair in query.split('&') {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(invalid(
                text,
                format!("parameter `{pair}` needs the form key=value"),
            ));
        };
        if !allowed.contains(&k) {
            let what = if allowed.is_empty() {
                "this mechanism takes no parameters".to_string()
            } else {
                format!("unknown parameter `{k}` (allowed: {})", allowed.join(", "))
            };
            return Err(invalid(text, what));
        }
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(invalid(text, format!("parameter `{k}` is given twice")));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn ipc_name(text: &str, name: &str) -> Result<String, Error> {
    if !name.starts_with('/') {
        return Err(invalid(
            text,
            format!("the name `{name}` must start with '/' (like /jobs)"),
        ));
    }
    if name.len() < 2 {
        return Err(invalid(text, "the name is empty after '/'"));
    }
    if name[1..].contains('/') {
        return Err(invalid(
            text,
            format!("the name `{name}` may contain no '/' after the first"),
        ));
    }
    if name.len() > IPC_NAME_MAX {
        return Err(invalid(
            text,
            format!(
                "the name is {} bytes, over the limit of {IPC_NAME_MAX}",
                name.len()
            ),
        ));
    }
    if name.contains('\0') {
        return Err(invalid(text, "the name contains a NUL byte"));
    }
    Ok(name.to_string())
}

fn path(text: &str, rest: &str) -> Result<PathBuf, Error> {
    if rest.is_empty() {
        return Err(invalid(text, "the path is empty"));
    }
    if rest.contains('\0') {
        return Err(invalid(text, "the path contains a NUL byte"));
    }
    Ok(PathBuf::from(rest))
}

fn unix_addr(text: &str, rest: &str) -> Result<UnixAddr, Error> {
    if let Some(name) = rest.strip_prefix('@') {
        if name.is_empty() {
            return Err(invalid(text, "the abstract name after '@' is empty"));
        }
        if name.len() > UNIX_PATH_MAX {
            return Err(invalid(
                text,
                format!(
                    "the abstract name is {} bytes, over the {UNIX_PATH_MAX}-byte limit of a Unix socket address",
                    name.len()
                ),
            ));
        }
        return Ok(UnixAddr::Abstract(name.to_string()));
    }
    let p = path(text, rest)?;
    if rest.len() > UNIX_PATH_MAX {
        return Err(invalid(
            text,
            format!(
                "the path is {} bytes, over the {UNIX_PATH_MAX}-byte limit of a Unix socket address; use a shorter or relative path",
                rest.len()
            ),
        ));
    }
    Ok(UnixAddr::Path(p))
}

fn host_port(text: &str, rest: &str) -> Result<(String, u16), Error> {
    let (host, port) = if let Some(after) = rest.strip_prefix('[') {
        let Some((host, tail)) = after.split_once(']') else {
            return Err(invalid(
                text,
                "an IPv6 address opened with '[' needs a closing ']'",
            ));
        };
        let Some(port) = tail.strip_prefix(':') else {
            return Err(invalid(text, "expected :PORT after the bracketed address"));
        };
        (host, port)
    } else {
        let Some((host, port)) = rest.rsplit_once(':') else {
            return Err(invalid(text, "expected HOST:PORT"));
        };
        if host.contains(':') {
            return Err(invalid(
                text,
                "an IPv6 address must be written in brackets, like [::1]:7000",
            ));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(invalid(text, "the host is empty"));
    }
    // Brackets only enclose an IPv6 address: a host holding one would be written back as
    // another endpoint (`[[a]:1` as `[a:1`).
    if host.contains(['[', ']']) {
        return Err(invalid(
            text,
            format!(
                "the host `{host}` contains a bracket; brackets only enclose an IPv6 address, like [::1]:7000"
            ),
        ));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(text, format!("`{port}` is not a port number (0-65535)")))?;
    Ok((host.to_string(), port))
}

fn msg_key(text: &str, key: &str) -> Result<SysvKey, Error> {
    if key.is_empty() {
        return Err(invalid(text, "the key is empty"));
    }
    if key.contains('/') || key.starts_with('.') {
        return Ok(SysvKey::Path(path(text, key)?));
    }
    let parsed = if let Some(hex) = key.strip_prefix("0x").or_else(|| key.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).map(|v| v as i32).ok()
    } else {
        key.parse::<i32>().ok()
    };
    match parsed {
        Some(0) => Err(invalid(
            text,
            "key 0 is IPC_PRIVATE, which no other process can open by key",
        )),
        Some(k) => Ok(SysvKey::Key(k)),
        None => Err(invalid(
            text,
            format!("`{key}` is not a key: expected a decimal or 0x-hex 32-bit number, or a path"),
        )),
    }
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(text: &str) -> Result<Endpoint, Error> {
        if text == "-" {
            return Ok(Endpoint::Stdio);
        }
        let Some((scheme, rest)) = text.split_once(':') else {
            return Err(invalid(
                text,
                format!("expected SCHEME:ADDRESS with a scheme of {SCHEMES}"),
            ));
        };
        let with_query = || match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        match scheme {
            "fifo" => Ok(Endpoint::Fifo {
                path: path(text, rest)?,
            }),
            "mq" => {
                let (name, q) = with_query();
                let mut ep = Endpoint::Mq {
                    name: ipc_name(text, name)?,
                    max_messages: None,
                    msgsize: None,
                    priority: None,
                };
                for (k, v) in params(text, q, &["capacity", "msgsize", "priority"])? {
                    let Endpoint::Mq {
                        max_messages,
                        msgsize,
                        priority,
                        ..
                    } = &mut ep
                    else {
                        unreachable!()
                    };
                    match k {
                        "capacity" => {
                            let n: u64 = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                                invalid(
                                    text,
                                    format!("capacity `{v}` is not a positive number of messages"),
                                )
                            })?;
                            *max_messages = Some(n);
                        }
                        "priority" => {
                            let p: u32 =
                                v.parse().ok().filter(|p| *p <= 32767).ok_or_else(|| {
                                    invalid(
                                        text,
                                        format!("priority `{v}` is not a number from 0 to 32767"),
                                    )
                                })?;
                            *priority = Some(p);
                        }
                        _ => {
                            let n = parse_size(v).map_err(|e| invalid(text, e))?;
                            if n == 0 {
                                return Err(invalid(text, "msgsize must be at least 1 byte"));
                            }
                            *msgsize = Some(n);
                        }
                    }
                }
                Ok(ep)
            }
            "msg" => {
                let (key, q) = with_query();
                let mut mtype = None;
                for (_, v) in params(text, q, &["type"])? {
                    mtype =
                        Some(v.parse::<i64>().map_err(|_| {
                            invalid(text, format!("type `{v}` is not a whole number"))
                        })?);
                }
                Ok(Endpoint::Msg {
                    key: msg_key(text, key)?,
                    mtype,
                })
            }
            "shm" => {
                let (name, q) = with_query();
                let (mut ring_bytes, mut spin) = (None, None);
                for (k, v) in params(text, q, &["capacity", "spin"])? {
                    if k == "spin" {
                        spin = Some(parse_duration(v).map_err(|e| invalid(text, e))?);
                        continue;
                    }
                    let n = parse_size(v).map_err(|e| invalid(text, e))?;
                    if n == 0 {
                        return Err(invalid(text, "capacity must be at least 1 byte"));
                    }
                    ring_bytes = Some(n);
                }
                Ok(Endpoint::Shm {
                    name: ipc_name(text, name)?,
                    ring_bytes,
                    spin,
                })
            }
            "unix" => Ok(Endpoint::Unix {
                addr: unix_addr(text, rest)?,
            }),
            "unixgram" => Ok(Endpoint::UnixGram {
                addr: unix_addr(text, rest)?,
            }),
            "unixpacket" => Ok(Endpoint::UnixPacket {
                addr: unix_addr(text, rest)?,
            }),
            "tcp" => {
                let (host, port) = host_port(text, rest)?;
                Ok(Endpoint::Tcp { host, port })
            }
            "udp" => {
                let (host, port) = host_port(text, rest)?;
                Ok(Endpoint::Udp { host, port })
            }
            other => Err(invalid(
                text,
                format!("unknown scheme `{other}:` (expected {SCHEMES})"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_one_way() {
        for (d, text) in [
            (Duration::ZERO, "0 s"),
            (Duration::from_secs(1), "1 s"),
            (Duration::from_millis(1500), "1.5 s"),
            (Duration::from_secs(30), "30 s"),
            (Duration::from_millis(20), "20 ms"),
            (Duration::from_millis(100), "100 ms"),
            (Duration::from_micros(2500), "2.5 ms"),
            (Duration::from_micros(250), "250 µs"),
            (Duration::from_nanos(80), "80 ns"),
        ] {
            assert_eq!(format_duration(d), text);
        }
    }

    fn ok(text: &str) -> Endpoint {
        Endpoint::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn err(text: &str) -> String {
        let e = Endpoint::parse(text).expect_err(text);
        assert_eq!(e.kind(), ErrorKind::InvalidEndpoint, "{text}");
        e.to_string()
    }

    #[test]
    fn every_scheme_parses() {
        assert_eq!(ok("-"), Endpoint::Stdio);
        assert_eq!(
            ok("fifo:myPipe"),
            Endpoint::Fifo {
                path: "myPipe".into()
            }
        );
        assert_eq!(
            ok("mq:/jobs?capacity=10&msgsize=8KiB"),
            Endpoint::Mq {
                name: "/jobs".into(),
                max_messages: Some(10),
                msgsize: Some(8192),
                priority: None
            }
        );
        assert_eq!(
            ok("msg:0x1234"),
            Endpoint::Msg {
                key: SysvKey::Key(0x1234),
                mtype: None
            }
        );
        assert_eq!(
            ok("msg:42?type=-3"),
            Endpoint::Msg {
                key: SysvKey::Key(42),
                mtype: Some(-3)
            }
        );
        assert_eq!(
            ok("msg:/tmp/k"),
            Endpoint::Msg {
                key: SysvKey::Path("/tmp/k".into()),
                mtype: None
            }
        );
        assert_eq!(
            ok("shm:/frame?capacity=1MiB"),
            Endpoint::Shm {
                name: "/frame".into(),
                ring_bytes: Some(1 << 20),
                spin: None
            }
        );
        assert_eq!(
            ok("unix:/run/x.sock"),
            Endpoint::Unix {
                addr: UnixAddr::Path("/run/x.sock".into())
            }
        );
        assert_eq!(
            ok("unix:@proc"),
            Endpoint::Unix {
                addr: UnixAddr::Abstract("proc".into())
            }
        );
        assert_eq!(
            ok("unixgram:d.sock"),
            Endpoint::UnixGram {
                addr: UnixAddr::Path("d.sock".into())
            }
        );
        assert_eq!(
            ok("unixpacket:@jobs"),
            Endpoint::UnixPacket {
                addr: UnixAddr::Abstract("jobs".into())
            }
        );
        assert_eq!(
            ok("unixpacket:/run/p.sock"),
            Endpoint::UnixPacket {
                addr: UnixAddr::Path("/run/p.sock".into())
            }
        );
        assert_eq!(
            ok("tcp:127.0.0.1:7000"),
            Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 7000
            }
        );
        assert_eq!(
            ok("udp:[::1]:53"),
            Endpoint::Udp {
                host: "::1".into(),
                port: 53
            }
        );
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "-",
            "fifo:/tmp/p",
            "mq:/jobs?capacity=10&msgsize=8192",
            "mq:/jobs?priority=7",
            "shm:/f?capacity=4096&spin=50us",
            "shm:/f?spin=18446744073709551615s",
            "msg:0x1234?type=2",
            "msg:/etc/k",
            "shm:/f?capacity=4096",
            "unix:@n",
            "unix:/s",
            "unixgram:/d",
            "unixpacket:/p",
            "unixpacket:@p",
            "tcp:localhost:80",
            "udp:[::1]:9",
        ] {
            let ep = ok(text);
            assert_eq!(ok(&ep.to_string()), ep, "{text}");
        }
    }

    #[test]
    fn malformed_endpoints_name_the_problem() {
        assert!(err("jobs").contains("expected SCHEME:ADDRESS"));
        assert!(err("ftp:x").contains("unknown scheme `ftp:`"));
        assert!(err("fifo:").contains("path is empty"));
        assert!(err("mq:jobs").contains("must start with '/'"));
        assert!(err("mq:/a/b").contains("no '/' after the first"));
        assert!(err("mq:/a?size=3").contains("unknown parameter `size`"));
        assert!(err("mq:/a?capacity=0").contains("capacity"));
        assert!(err("mq:/a?capacity=1&capacity=2").contains("given twice"));
        assert!(err("msg:0").contains("IPC_PRIVATE"));
        assert!(err("msg:zz").contains("not a key"));
        assert!(err("tcp:host").contains("HOST:PORT"));
        assert!(err("tcp:h:99999").contains("not a port"));
        assert!(err("tcp:::1:80").contains("brackets"));
        // Found by fuzzing: a bracket inside the host was written back as another endpoint.
        assert!(err("udp:[[fe!0th]:53").contains("contains a bracket"));
        assert!(err("tcp:a]:80").contains("contains a bracket"));
        assert!(err(&format!("unix:/{}", "a".repeat(120))).contains("107-byte limit"));
        assert!(err("unixpacket:@").contains("abstract name after '@' is empty"));
        assert!(err("unixpacket:").contains("path is empty"));
        assert!(!err("shm:/x?capacity=lots").contains('\n'));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("1M").unwrap(), 1 << 20);
        assert_eq!(parse_size("2GB").unwrap(), 2_000_000_000);
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1XB").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }
}
