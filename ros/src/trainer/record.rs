//! One trainer-link record and its framing on disk and in spool replies.
//!
//! A frame is `[u32 body length][body][u64 XXH3 of body]`, little endian;
//! the body is `[u64 seq][u8 kind][i64 episode_index][i64 source ns][CDR]`.
//! The checksum tells a torn write (a process killed mid-append) or a
//! damaged file from a record; readers stop there and say so.

use xxhash_rust::xxh3::xxh3_64;

use crate::msg::{EpisodeEvent, PolicyEvent, Progress, RosMessage, SampleWeight};

/// Largest body accepted (a Progress with many stages is a few hundred bytes).
pub const MAX_BODY: usize = 1 << 20;
const BODY_HEADER: usize = 8 + 1 + 8 + 8;

/// What a record carries, and its key under `sarm/<robot_id>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    Progress = 1,
    Weight = 2,
    Episode = 3,
    /// The policy's safety layer: armed, disarmed, fault, reset.
    Policy = 4,
}

impl RecordKind {
    pub const ALL: [RecordKind; 4] = [
        RecordKind::Progress,
        RecordKind::Weight,
        RecordKind::Episode,
        RecordKind::Policy,
    ];

    pub fn key_suffix(self) -> &'static str {
        match self {
            RecordKind::Progress => "progress",
            RecordKind::Weight => "weight",
            RecordKind::Episode => "episode",
            RecordKind::Policy => "policy",
        }
    }

    pub fn from_key_suffix(s: &str) -> Option<Self> {
        RecordKind::ALL.into_iter().find(|k| k.key_suffix() == s)
    }

    fn from_u8(b: u8) -> Option<Self> {
        RecordKind::ALL.into_iter().find(|k| *k as u8 == b)
    }
}

/// A record: one message of the trainer link, numbered per robot.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub seq: u64,
    pub kind: RecordKind,
    pub episode_index: i64,
    /// When the robot made the record (ns since the UNIX epoch).
    pub source_ns: i64,
    /// The message, CDR with its 4-byte header.
    pub cdr: Vec<u8>,
}

/// A record's message, decoded.
#[derive(Debug, Clone)]
pub enum Decoded {
    Progress(Progress),
    Weight(SampleWeight),
    Episode(EpisodeEvent),
    Policy(PolicyEvent),
}

impl Decoded {
    pub fn robot_id(&self) -> &str {
        match self {
            Decoded::Progress(m) => &m.robot_id,
            Decoded::Weight(m) => &m.robot_id,
            Decoded::Episode(m) => &m.robot_id,
            Decoded::Policy(m) => &m.robot_id,
        }
    }
    pub fn episode_index(&self) -> i64 {
        match self {
            Decoded::Progress(m) => m.episode_index,
            Decoded::Weight(m) => m.episode_index,
            Decoded::Episode(m) => m.episode_index,
            Decoded::Policy(m) => m.episode_index,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FrameError {
    #[error("record frame cut short ({have} of {need} bytes)")]
    Short { have: usize, need: usize },
    #[error("record body of {0} bytes is larger than the {MAX_BODY}-byte limit")]
    TooLarge(usize),
    #[error("record checksum mismatch (damaged or torn write)")]
    Checksum,
    #[error("unknown record kind {0}")]
    Kind(u8),
    #[error("record {kind:?} does not decode: {message}")]
    Message { kind: RecordKind, message: String },
}

impl Record {
    /// Encodes a message as a record.
    pub fn new<T: RosMessage>(
        seq: u64,
        kind: RecordKind,
        episode_index: i64,
        source_ns: i64,
        msg: &T,
    ) -> Result<Self, crate::msg::CdrError> {
        Ok(Record {
            seq,
            kind,
            episode_index,
            source_ns,
            cdr: msg.to_cdr()?,
        })
    }

    /// The framed bytes.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(BODY_HEADER + self.cdr.len());
        body.extend_from_slice(&self.seq.to_le_bytes());
        body.push(self.kind as u8);
        body.extend_from_slice(&self.episode_index.to_le_bytes());
        body.extend_from_slice(&self.source_ns.to_le_bytes());
        body.extend_from_slice(&self.cdr);
        let mut out = Vec::with_capacity(4 + body.len() + 8);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&xxh3_64(&body).to_le_bytes());
        out
    }

    /// Reads one frame from the front of `bytes`: the record and the bytes used.
    pub fn from_frame(bytes: &[u8]) -> Result<(Record, usize), FrameError> {
        let short = |need: usize| FrameError::Short {
            have: bytes.len(),
            need,
        };
        let len_bytes: [u8; 4] = bytes
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(short(4))?;
        let len = u32::from_le_bytes(len_bytes) as usize;
        if len > MAX_BODY {
            return Err(FrameError::TooLarge(len));
        }
        let total = 4 + len + 8;
        if bytes.len() < total {
            return Err(short(total));
        }
        let body = &bytes[4..4 + len];
        let sum_bytes: [u8; 8] = bytes[4 + len..total].try_into().map_err(|_| short(total))?;
        if xxh3_64(body) != u64::from_le_bytes(sum_bytes) {
            return Err(FrameError::Checksum);
        }
        if body.len() < BODY_HEADER {
            return Err(FrameError::Short {
                have: body.len(),
                need: BODY_HEADER,
            });
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&body[i..i + 8]);
            b
        };
        let kind = RecordKind::from_u8(body[8]).ok_or(FrameError::Kind(body[8]))?;
        Ok((
            Record {
                seq: u64::from_le_bytes(u64_at(0)),
                kind,
                episode_index: i64::from_le_bytes(u64_at(9)),
                source_ns: i64::from_le_bytes(u64_at(17)),
                cdr: body[BODY_HEADER..].to_vec(),
            },
            total,
        ))
    }

    /// Decodes the message (defensively: bytes from disk or the network).
    pub fn decode(&self) -> Result<Decoded, FrameError> {
        let err = |e: crate::msg::CdrError| FrameError::Message {
            kind: self.kind,
            message: e.to_string(),
        };
        Ok(match self.kind {
            RecordKind::Progress => Decoded::Progress(Progress::from_cdr(&self.cdr).map_err(err)?),
            RecordKind::Weight => Decoded::Weight(SampleWeight::from_cdr(&self.cdr).map_err(err)?),
            RecordKind::Episode => {
                Decoded::Episode(EpisodeEvent::from_cdr(&self.cdr).map_err(err)?)
            }
            RecordKind::Policy => Decoded::Policy(PolicyEvent::from_cdr(&self.cdr).map_err(err)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            seq: 42,
            kind: RecordKind::Weight,
            episode_index: 7,
            source_ns: 1_700_000_000_000_000_000,
            cdr: vec![0, 1, 0, 0, 9, 9, 9],
        }
    }

    #[test]
    fn frames_round_trip_and_damage_is_caught() {
        let r = sample();
        let f = r.to_frame();
        assert_eq!(Record::from_frame(&f).unwrap(), (r.clone(), f.len()));
        for cut in 0..f.len() {
            assert!(matches!(
                Record::from_frame(&f[..cut]),
                Err(FrameError::Short { .. })
            ));
        }
        for i in 4..f.len() {
            let mut bad = f.clone();
            bad[i] ^= 0x40;
            assert!(Record::from_frame(&bad).is_err(), "flipped byte {i}");
        }
    }
}
