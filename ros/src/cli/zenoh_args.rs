//! Zenoh session options, shared by every command that opens a session
//! (`replay`, `sink`, `link-check`).

use std::path::PathBuf;

use sarm_ros::zenoh_link::ZenohSessionConfig;

#[derive(Debug, Clone, clap::Args)]
pub struct ZenohArgs {
    /// Zenoh: session config file (JSON5), e.g. launch/zenoh/peer.json5, or
    /// launch/zenoh/trainer-sink.json5 (TLS and access control).
    #[arg(long, value_name = "FILE")]
    pub zenoh_config: Option<PathBuf>,
    /// Zenoh: peer, client or router (overrides the file; without either, peer).
    #[arg(long, value_name = "MODE")]
    pub zenoh_mode: Option<String>,
    /// Zenoh: endpoint to listen on (repeatable), e.g. tcp/127.0.0.1:7447.
    #[arg(long, value_name = "ENDPOINT")]
    pub zenoh_listen: Vec<String>,
    /// Zenoh: endpoint to connect to (repeatable), e.g. tcp/127.0.0.1:7447
    /// (an rmw_zenohd router) or tcp/trainer:7447.
    #[arg(long, value_name = "ENDPOINT")]
    pub zenoh_connect: Vec<String>,
    /// Zenoh: turn multicast and gossip scouting off (only the endpoints above).
    #[arg(long)]
    pub zenoh_no_scouting: bool,
}

impl ZenohArgs {
    pub fn to_config(&self) -> ZenohSessionConfig {
        ZenohSessionConfig {
            file: self.zenoh_config.clone(),
            // Unset: the file's mode, else Zenoh's default (peer).
            mode: self.zenoh_mode.clone(),
            listen: self.zenoh_listen.clone(),
            connect: self.zenoh_connect.clone(),
            scouting: self.zenoh_no_scouting.then_some(false),
        }
    }
}
