//! Zenoh session options of the trainer-link commands (`sink`, `link-check`).

use std::path::PathBuf;

use sarm_ros::zenoh_link::ZenohSessionConfig;

#[derive(Debug, Clone, clap::Args)]
pub struct ZenohArgs {
    /// Zenoh session config file (JSON5), e.g. launch/zenoh/trainer-sink.json5
    /// (TLS and access control).
    #[arg(long, value_name = "FILE")]
    pub zenoh_config: Option<PathBuf>,
    /// peer, client or router (overrides the file; default peer).
    #[arg(long, value_name = "MODE")]
    pub zenoh_mode: Option<String>,
    /// Endpoint to listen on (repeatable), e.g. tcp/127.0.0.1:7447.
    #[arg(long, value_name = "ENDPOINT")]
    pub zenoh_listen: Vec<String>,
    /// Endpoint to connect to (repeatable), e.g. tcp/trainer:7447.
    #[arg(long, value_name = "ENDPOINT")]
    pub zenoh_connect: Vec<String>,
    /// Turn multicast and gossip scouting off (only the endpoints above).
    #[arg(long)]
    pub zenoh_no_scouting: bool,
}

impl ZenohArgs {
    pub fn to_config(&self) -> ZenohSessionConfig {
        ZenohSessionConfig {
            file: self.zenoh_config.clone(),
            mode: self.zenoh_mode.clone().or(Some("peer".into())),
            listen: self.zenoh_listen.clone(),
            connect: self.zenoh_connect.clone(),
            scouting: self.zenoh_no_scouting.then_some(false),
        }
    }
}
