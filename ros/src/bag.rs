//! rosbag2 MCAP reading and MCAP writing.
//!
//! A bag is a single `.mcap` file or a rosbag2 folder whose `metadata.yaml`
//! lists the files. Records are read with mcap's linear (sans-io) reader
//! and our own schema/channel tables, so a channel with a missing or unknown
//! schema, or a message of an unexpected encoding, is counted and skipped
//! instead of ending the whole bag; a truncated file keeps what was read
//! before the cut and reports it.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use mcap::records::Record;
use mcap::sans_io::linear_reader::{LinearReadEvent, LinearReader, LinearReaderOptions};

use crate::msg::{ros2msg_schema, RosMessage};

/// Largest record the reader will allocate for (a 4K RGB image is ~25 MB).
pub const MAX_RECORD_BYTES: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BagError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Metadata { path: PathBuf, message: String },
    #[error("{path}: not a readable MCAP file: {message}")]
    Mcap { path: PathBuf, message: String },
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
}

/// One message of a bag, still CDR-encoded (header included).
#[derive(Debug, Clone)]
pub struct BagMessage<'a> {
    pub topic: &'a str,
    /// `pkg/msg/Name` from the channel's schema.
    pub type_name: &'a str,
    pub log_time: u64,
    pub publish_time: u64,
    pub data: &'a [u8],
}

/// What was read and what was skipped, by reason.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadStats {
    pub messages: u64,
    pub skipped: BTreeMap<&'static str, u64>,
    /// Files that ended early (truncated or corrupt), with the reason.
    pub damaged: Vec<String>,
}

impl ReadStats {
    fn skip(&mut self, reason: &'static str) {
        *self.skipped.entry(reason).or_default() += 1;
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}

#[derive(serde::Deserialize)]
struct MetadataFile {
    rosbag2_bagfile_information: BagInfo,
}

#[derive(serde::Deserialize)]
struct BagInfo {
    storage_identifier: String,
    relative_file_paths: Vec<String>,
    #[serde(default)]
    compression_format: String,
}

/// The MCAP files of a bag, in order.
pub fn bag_files(path: &Path) -> Result<Vec<PathBuf>, BagError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let meta_path = path.join("metadata.yaml");
    let text = std::fs::read_to_string(&meta_path).map_err(|source| BagError::Io {
        path: meta_path.clone(),
        source,
    })?;
    let meta: MetadataFile = serde_yaml::from_str(&text).map_err(|e| BagError::Metadata {
        path: meta_path.clone(),
        message: format!("not a rosbag2 metadata file: {e}"),
    })?;
    let info = meta.rosbag2_bagfile_information;
    if info.storage_identifier != "mcap" {
        return Err(BagError::Metadata {
            path: meta_path,
            message: format!(
                "storage {:?} is not supported (only mcap; record with `ros2 bag record -s mcap`)",
                info.storage_identifier
            ),
        });
    }
    if !info.compression_format.is_empty() {
        return Err(BagError::Metadata {
            path: meta_path,
            message: format!(
                "bag-level {} compression is not supported (MCAP chunk compression is)",
                info.compression_format
            ),
        });
    }
    Ok(info
        .relative_file_paths
        .iter()
        .map(|f| path.join(f))
        .collect())
}

/// Calls `f` for every message of every file of the bag, in file order.
pub fn read_bag(path: &Path, mut f: impl FnMut(&BagMessage<'_>)) -> Result<ReadStats, BagError> {
    let mut stats = ReadStats::default();
    for file in bag_files(path)? {
        read_mcap(&file, &mut stats, &mut f)?;
    }
    Ok(stats)
}

struct ChannelInfo {
    topic: String,
    type_name: Option<String>,
    reason: Option<&'static str>,
}

fn read_mcap(
    path: &Path,
    stats: &mut ReadStats,
    f: &mut impl FnMut(&BagMessage<'_>),
) -> Result<(), BagError> {
    let mut file = File::open(path).map_err(|source| BagError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let options = LinearReaderOptions::default().with_record_length_limit(MAX_RECORD_BYTES);
    let mut reader = LinearReader::new_with_options(options);
    let mut schemas: HashMap<u16, (String, String)> = HashMap::new();
    let mut channels: HashMap<u16, ChannelInfo> = HashMap::new();
    let mut any_record = false;
    while let Some(event) = reader.next_event() {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                if !any_record {
                    return Err(BagError::Mcap {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    });
                }
                stats.damaged.push(format!(
                    "{}: {e} (messages before it were kept)",
                    path.display()
                ));
                break;
            }
        };
        match event {
            LinearReadEvent::ReadRequest(n) => {
                let buf = reader.insert(n);
                let read = file.read(buf).map_err(|source| BagError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                reader.notify_read(read);
            }
            LinearReadEvent::Record { opcode, data } => {
                any_record = true;
                let record = match mcap::parse_record(opcode, data) {
                    Ok(r) => r,
                    Err(_) => {
                        stats.skip("bad_record");
                        continue;
                    }
                };
                match record {
                    Record::Schema { header, .. } => {
                        schemas.insert(header.id, (header.name, header.encoding));
                    }
                    Record::Channel(c) => {
                        let (type_name, reason) = if c.message_encoding != "cdr" {
                            (None, Some("not_cdr"))
                        } else if c.schema_id == 0 {
                            (None, Some("no_schema"))
                        } else {
                            match schemas.get(&c.schema_id) {
                                Some((name, enc)) if enc == "ros2msg" || enc == "ros2idl" => {
                                    (Some(name.clone()), None)
                                }
                                Some(_) => (None, Some("schema_encoding")),
                                None => (None, Some("unknown_schema")),
                            }
                        };
                        channels.insert(
                            c.id,
                            ChannelInfo {
                                topic: c.topic,
                                type_name,
                                reason,
                            },
                        );
                    }
                    Record::Message { header, data } => {
                        let Some(ch) = channels.get(&header.channel_id) else {
                            stats.skip("unknown_channel");
                            continue;
                        };
                        let (Some(type_name), None) = (&ch.type_name, ch.reason) else {
                            stats.skip(ch.reason.unwrap_or("unknown_schema"));
                            continue;
                        };
                        stats.messages += 1;
                        f(&BagMessage {
                            topic: &ch.topic,
                            type_name,
                            log_time: header.log_time,
                            publish_time: header.publish_time,
                            data: &data,
                        });
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// Writes messages of our own types to an MCAP file that Foxglove and
/// `ros2 bag` open (profile ros2, ros2msg schemas, CDR, zstd chunks).
pub struct McapOut {
    path: PathBuf,
    writer: mcap::Writer<BufWriter<File>>,
    channels: HashMap<String, u16>,
    sequence: u32,
}

impl McapOut {
    pub fn create(path: &Path) -> Result<Self, BagError> {
        let err = |message: String| BagError::Write {
            path: path.to_path_buf(),
            message,
        };
        let file = File::create(path).map_err(|e| err(e.to_string()))?;
        let writer = mcap::WriteOptions::new()
            .profile("ros2")
            .library(concat!("sarm ", env!("CARGO_PKG_VERSION")))
            .create(BufWriter::new(file))
            .map_err(|e| err(e.to_string()))?;
        Ok(McapOut {
            path: path.to_path_buf(),
            writer,
            channels: HashMap::new(),
            sequence: 0,
        })
    }

    fn err(&self, message: impl std::fmt::Display) -> BagError {
        BagError::Write {
            path: self.path.clone(),
            message: message.to_string(),
        }
    }

    /// Appends one message on `topic` stamped `time_ns`.
    pub fn write<T: RosMessage>(
        &mut self,
        topic: &str,
        time_ns: u64,
        msg: &T,
    ) -> Result<(), BagError> {
        let channel = match self.channels.get(topic) {
            Some(c) => *c,
            None => {
                let schema = self
                    .writer
                    .add_schema(T::TYPE_NAME, "ros2msg", ros2msg_schema::<T>().as_bytes())
                    .map_err(|e| self.err(e))?;
                let c = self
                    .writer
                    .add_channel(schema, topic, "cdr", &BTreeMap::new())
                    .map_err(|e| self.err(e))?;
                self.channels.insert(topic.to_string(), c);
                c
            }
        };
        let data = msg.to_cdr().map_err(|e| self.err(e))?;
        self.sequence = self.sequence.wrapping_add(1);
        let header = mcap::records::MessageHeader {
            channel_id: channel,
            sequence: self.sequence,
            log_time: time_ns,
            publish_time: time_ns,
        };
        self.writer
            .write_to_known_channel(&header, &data)
            .map_err(|e| self.err(e))
    }

    /// Writes the summary and flushes; the file is complete only after this.
    pub fn finish(mut self) -> Result<(), BagError> {
        self.writer.finish().map_err(|e| self.err(e))?;
        let path = self.path.clone();
        let mut inner = self.writer.into_inner();
        inner.flush().map_err(|e| BagError::Write {
            path,
            message: e.to_string(),
        })
    }
}
