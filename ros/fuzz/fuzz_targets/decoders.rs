//! Every decoder sarm runs on bytes from the network or a bag: CDR of each
//! message type, raw and compressed images, rmw_zenoh attachments, and the
//! trainer link's record frames and control messages. The first byte picks
//! the decoder; none may panic.
#![no_main]

use image::RgbImage;
use libfuzzer_sys::fuzz_target;
use sarm_ros::image::{decode_compressed, decode_raw};
use sarm_ros::msg::{
    CompressedImage, DiagnosticArray, EpisodeEvent, Image, JointState, Progress, RosMessage,
    SampleWeight,
};

fuzz_target!(|input: &[u8]| {
    let Some((&selector, data)) = input.split_first() else {
        return;
    };
    let mut out = RgbImage::new(1, 1);
    match selector % 10 {
        0 => drop(JointState::from_cdr(data)),
        1 => {
            if let Ok(img) = Image::from_cdr(data) {
                let _ = decode_raw(&img, &mut out);
            }
        }
        2 => {
            if let Ok(img) = CompressedImage::from_cdr(data) {
                let _ = decode_compressed(&img, &mut out);
            }
        }
        3 => drop(DiagnosticArray::from_cdr(data)),
        4 => drop(Progress::from_cdr(data)),
        5 => drop(SampleWeight::from_cdr(data)),
        6 => drop(EpisodeEvent::from_cdr(data)),
        7 => {
            // JPEG/PNG bytes straight into the image decoders.
            let msg = CompressedImage {
                format: "jpeg".into(),
                data: data.to_vec(),
                ..Default::default()
            };
            let _ = decode_compressed(&msg, &mut out);
        }
        8 => {
            if let Ok((record, _)) = sarm_ros::trainer::Record::from_frame(data) {
                let _ = record.decode();
            }
            let _ = sarm_ros::trainer::protocol::Heartbeat::from_bytes(data);
            let _ = sarm_ros::trainer::protocol::Ack::from_bytes(data);
            let _ = sarm_ros::trainer::protocol::SpoolQuery::parse(&String::from_utf8_lossy(data));
        }
        _ => {
            let bytes = zenoh::bytes::ZBytes::from(data.to_vec());
            let _ = sarm_ros::zenoh_link::rmw::Attachment::from_bytes(&bytes);
        }
    }
});
