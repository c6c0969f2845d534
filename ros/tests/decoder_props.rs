//! Property tests: random and mutated bytes into every decoder never panic,
//! and errors are errors (not wrong values silently accepted as valid CDR of
//! another length).

use image::RgbImage;
use proptest::prelude::*;
use sarm_ros::image::{decode_compressed, decode_raw};
use sarm_ros::msg::{
    CompressedImage, DiagnosticArray, EpisodeEvent, Header, Image, JointState, Progress,
    RosMessage, SampleWeight, Time,
};
use sarm_ros::trainer::protocol::{Ack, Heartbeat, SpoolQuery};
use sarm_ros::trainer::Record;

fn decode_all(bytes: &[u8]) {
    // The trainer link's messages from the network and from disk.
    if let Ok((record, used)) = Record::from_frame(bytes) {
        assert!(used <= bytes.len());
        let _ = record.decode();
    }
    let _ = Heartbeat::from_bytes(bytes);
    let _ = Ack::from_bytes(bytes);
    let _ = SpoolQuery::parse(&String::from_utf8_lossy(bytes));
    let _ = JointState::from_cdr(bytes);
    let _ = Image::from_cdr(bytes);
    let _ = CompressedImage::from_cdr(bytes);
    let _ = DiagnosticArray::from_cdr(bytes);
    let _ = Progress::from_cdr(bytes);
    let _ = SampleWeight::from_cdr(bytes);
    let _ = EpisodeEvent::from_cdr(bytes);
}

fn sample_joint_state() -> Vec<u8> {
    JointState {
        header: Header {
            stamp: Time { sec: 5, nanosec: 7 },
            frame_id: "base".into(),
        },
        name: vec!["a".into(), "bb".into(), "ccc".into()],
        position: vec![0.1, 0.2, 0.3],
        velocity: vec![],
        effort: vec![1.0],
    }
    .to_cdr()
    .unwrap()
}

fn sample_image() -> Image {
    Image {
        header: Header::default(),
        height: 4,
        width: 4,
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: 12,
        data: (0..48).collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
        let mut with_header = vec![0, 1, 0, 0];
        with_header.extend_from_slice(&bytes);
        decode_all(&with_header);
    }

    #[test]
    fn mutated_messages_never_panic(pos in 0usize..200, val in any::<u8>(), cut in 0usize..200) {
        let mut bytes = sample_joint_state();
        let p = pos % bytes.len();
        bytes[p] = val;
        decode_all(&bytes);
        bytes.truncate(cut % (bytes.len() + 1));
        decode_all(&bytes);
    }

    #[test]
    fn huge_length_fields_are_errors(count in (1u32 << 20)..u32::MAX) {
        // The name-sequence count of a JointState, claiming far more than is there.
        let mut bytes = sample_joint_state();
        bytes[24..28].copy_from_slice(&count.to_le_bytes());
        prop_assert!(JointState::from_cdr(&bytes).is_err());
    }

    #[test]
    fn raw_images_with_bad_geometry_are_errors(w in 0u32..64, h in 0u32..64, step in 0u32..256, len in 0usize..4096) {
        let img = Image { width: w, height: h, step, data: vec![0; len], ..sample_image() };
        let mut out = RgbImage::new(1, 1);
        let ok = decode_raw(&img, &mut out).is_ok();
        let valid = w > 0 && h > 0 && step >= w * 3 && len as u64 == step as u64 * h as u64;
        prop_assert_eq!(ok, valid);
    }

    #[test]
    fn compressed_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048), jpeg in any::<bool>()) {
        let mut data = if jpeg { vec![0xFF, 0xD8, 0xFF] } else { vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A] };
        data.extend_from_slice(&bytes);
        let msg = CompressedImage { format: "jpeg".into(), data, ..Default::default() };
        let mut out = RgbImage::new(1, 1);
        let _ = decode_compressed(&msg, &mut out);
    }
}
