//! Small value types shared by every layer (decode, flow, catalog, audit, report).
//! They carry no behaviour beyond formatting and must never depend on any other module.

use serde::Serialize;
use std::fmt;

/// Transport protocol of a flow or of a catalog requirement's ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Packet time in nanoseconds since the Unix epoch, as read from the capture.
/// Signed so that pre-1970 captures (they exist in test suites) stay representable.
pub type Nanos = i64;
