//! The trainer link's control messages, besides the records themselves.
//!
//! - `sarm/<robot_id>/head` (robot -> sink, periodic): how far the robot
//!   has got and what its spool still holds ([`Heartbeat`], JSON).
//! - `sarm/<robot_id>/ack` (sink -> robot): every record up to `through`
//!   is durable at the sink ([`Ack`], JSON).
//! - `sarm/<robot_id>/spool?from=N;until=U;limit=M` (sink queries the
//!   robot): the spooled records from N on, before U (the gap only), each
//!   reply one record frame ([`super::record`]).
//!
//! Everything from the network is parsed defensively: a bad message is an
//! error for that message, never a panic.

use serde::{Deserialize, Serialize};

/// Most records one spool query returns.
pub const MAX_QUERY_RECORDS: usize = 8192;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// One past the last sequence number used.
    pub next_seq: u64,
    /// The first sequence number the spool can replay (None: empty).
    pub first_seq: Option<u64>,
    /// Records dropped from a full spool (drop_oldest) since start.
    pub dropped: u64,
    /// Records not kept because the spool was full (drop_newest) since start.
    pub rejected: u64,
    /// Outputs the robot made but dropped before they reached the link (its
    /// output queue was full), since start: never numbered, so the sink
    /// cannot see the gap any other way. Absent from older robots.
    #[serde(default)]
    pub unrecorded: u64,
    /// The last sequence number the robot knows the sink acknowledged
    /// (None: none yet). A sink holding more acknowledges again: an
    /// acknowledgement lost on the way, or a robot restarted, catches up.
    /// Absent from older robots.
    #[serde(default)]
    pub acked_through: Option<u64>,
    pub spool_bytes: u64,
    /// The reward model (bundle path).
    pub model: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub through: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("malformed {what}: {message}")]
pub struct ProtocolError {
    pub what: &'static str,
    pub message: String,
}

fn parse<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, ProtocolError> {
    if bytes.len() > 64 << 10 {
        return Err(ProtocolError {
            what,
            message: format!("{} bytes is too long", bytes.len()),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| ProtocolError {
        what,
        message: e.to_string(),
    })
}

impl Heartbeat {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ProtocolError> {
        parse("heartbeat", bytes)
    }
}

impl Ack {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ProtocolError> {
        parse("acknowledgement", bytes)
    }
}

/// The parameters of a spool query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpoolQuery {
    pub from: u64,
    /// Exclusive end (records the sink holds already are not asked for).
    pub until: Option<u64>,
    pub limit: usize,
}

impl SpoolQuery {
    pub fn to_parameters(&self) -> String {
        match self.until {
            Some(u) => format!("from={};until={u};limit={}", self.from, self.limit),
            None => format!("from={};limit={}", self.from, self.limit),
        }
    }

    /// `from=N;until=U;limit=M` (`&` accepted too; `until` optional);
    /// limit defaults to and is capped at [`MAX_QUERY_RECORDS`].
    pub fn parse(params: &str) -> Result<Self, ProtocolError> {
        let bad = |m: String| ProtocolError {
            what: "spool query",
            message: m,
        };
        let mut q = SpoolQuery {
            from: 0,
            until: None,
            limit: MAX_QUERY_RECORDS,
        };
        let mut has_from = false;
        for pair in params.split([';', '&']).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| bad(format!("{pair:?} is not key=value")))?;
            let n: u64 = v
                .parse()
                .map_err(|_| bad(format!("{k}={v:?} is not a number")))?;
            match k {
                "from" => {
                    q.from = n;
                    has_from = true;
                }
                "limit" => q.limit = (n as usize).clamp(1, MAX_QUERY_RECORDS),
                "until" => q.until = Some(n),
                _ => return Err(bad(format!("unknown parameter {k:?}"))),
            }
        }
        if !has_from {
            return Err(bad("no from=".into()));
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_bad_input() {
        let q = SpoolQuery {
            from: 12,
            until: None,
            limit: 50,
        };
        assert_eq!(SpoolQuery::parse(&q.to_parameters()).unwrap(), q);
        let gap = SpoolQuery {
            until: Some(20),
            ..q
        };
        assert_eq!(SpoolQuery::parse(&gap.to_parameters()).unwrap(), gap);
        assert_eq!(
            SpoolQuery::parse("from=3").unwrap().limit,
            MAX_QUERY_RECORDS
        );
        assert_eq!(
            SpoolQuery::parse("from=3&limit=999999").unwrap().limit,
            MAX_QUERY_RECORDS
        );
        for bad in [
            "",
            "limit=3",
            "from=x",
            "from",
            "from=1;what=2",
            "from=1;until=-2",
        ] {
            assert!(SpoolQuery::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Ack::from_bytes(b"{\"through\": -1}").is_err());
        assert!(Heartbeat::from_bytes(b"\xff\xfe").is_err());
        assert_eq!(
            Ack::from_bytes(&Ack { through: 9 }.to_bytes())
                .unwrap()
                .through,
            9
        );
    }
}
