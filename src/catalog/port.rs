//! Port ranges as written in the catalog: `"5223"`, `5223` or `"5228-5230"`.

use serde::{Serialize, Serializer};
use std::fmt;

/// An inclusive range of ports, `start <= end`, both in 1..=65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    /// A range of one port.
    pub fn single(port: u16) -> PortRange {
        PortRange {
            start: port,
            end: port,
        }
    }

    pub fn contains(self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }

    pub fn overlaps(self, other: PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// Parses `"443"` or `"5228-5230"`. The error is the message for a diagnostic.
    pub fn parse(text: &str) -> Result<PortRange, String> {
        let (a, b) = match text.split_once('-') {
            Some((a, b)) => (a, Some(b)),
            None => (text, None),
        };
        let start = parse_port(a, text)?;
        let end = match b {
            Some(b) => parse_port(b, text)?,
            None => start,
        };
        if start > end {
            return Err(format!(
                "bad port range \"{text}\": the first port is above the last"
            ));
        }
        Ok(PortRange { start, end })
    }

    /// A port given as a TOML integer.
    pub fn from_integer(value: i64) -> Result<PortRange, String> {
        match u16::try_from(value) {
            Ok(p) if p > 0 => Ok(PortRange::single(p)),
            _ => Err(format!("bad port {value}: ports are 1-65535")),
        }
    }
}

fn parse_port(part: &str, whole: &str) -> Result<u16, String> {
    let part = part.trim();
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "bad port \"{whole}\": expected a number like \"443\" or a range like \"5228-5230\""
        ));
    }
    match part.parse::<u32>() {
        Ok(p @ 1..=65535) => u16::try_from(p).map_err(|_| out_of_range(whole)),
        _ => Err(out_of_range(whole)),
    }
}

fn out_of_range(whole: &str) -> String {
    format!("bad port \"{whole}\": ports are 1-65535")
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// Serialized as in the catalog: `"443"` or `"5228-5230"`.
impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Whether any range of `list` contains `port`.
pub(crate) fn any_contains(list: &[PortRange], port: u16) -> bool {
    list.iter().any(|r| r.contains(port))
}

/// `443, 5228-5230`.
pub(crate) fn join(list: &[PortRange]) -> String {
    let mut out = String::new();
    for (i, r) in list.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&r.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_ports_and_ranges() {
        assert_eq!(PortRange::parse("5223"), Ok(PortRange::single(5223)));
        assert_eq!(
            PortRange::parse("5228-5230"),
            Ok(PortRange {
                start: 5228,
                end: 5230
            })
        );
        assert_eq!(PortRange::parse("65535"), Ok(PortRange::single(65535)));
        assert_eq!(PortRange::from_integer(443), Ok(PortRange::single(443)));
    }

    #[test]
    fn rejects_bad_ports() {
        assert_eq!(
            PortRange::parse("0").unwrap_err(),
            "bad port \"0\": ports are 1-65535"
        );
        assert_eq!(
            PortRange::parse("65536").unwrap_err(),
            "bad port \"65536\": ports are 1-65535"
        );
        assert_eq!(
            PortRange::parse("99999999999").unwrap_err(),
            "bad port \"99999999999\": ports are 1-65535"
        );
        assert_eq!(
            PortRange::parse("5230-5228").unwrap_err(),
            "bad port range \"5230-5228\": the first port is above the last"
        );
        assert_eq!(
            PortRange::parse("https").unwrap_err(),
            "bad port \"https\": expected a number like \"443\" or a range like \"5228-5230\""
        );
        assert!(PortRange::parse("1-").is_err());
        assert!(PortRange::parse("-5").is_err());
        assert_eq!(
            PortRange::from_integer(70000).unwrap_err(),
            "bad port 70000: ports are 1-65535"
        );
        assert!(PortRange::from_integer(-1).is_err());
    }

    #[test]
    fn containment_and_overlap() {
        let r = PortRange {
            start: 5228,
            end: 5230,
        };
        assert!(r.contains(5228) && r.contains(5230) && !r.contains(5231));
        assert!(r.overlaps(PortRange::single(5230)));
        assert!(!r.overlaps(PortRange::single(443)));
        assert_eq!(r.to_string(), "5228-5230");
    }
}
