//! REP-2016 type hashes (`RIHS01_<sha256>`), which rmw_zenoh puts in every
//! data key and liveliness token of Iron and later.
//!
//! Computed from the same field tables as the CDR types (see [`crate::msg`]),
//! following `rosidl_generator_type_description.calculate_type_hash`: the
//! type's description and those of every type it references (sorted by
//! name), as JSON with `", "`/`": "` separators, hashed with SHA-256.
//! Constants and default values are not part of the hash.

use sha2::{Digest, Sha256};

use crate::msg::{fields_of, normalize_type, RosMessage};

/// The RIHS01 hash string of `T`, e.g. `RIHS01_a13ee3a3...`.
pub fn rihs01<T: RosMessage>() -> String {
    rihs01_of(T::TYPE_NAME).unwrap_or_default()
}

/// The RIHS01 hash of a type by name (`pkg/msg/Name`), if its field table
/// (and those of all types it references) is known.
pub fn rihs01_of(type_name: &str) -> Option<String> {
    let full = normalize_type(type_name);
    let mut referenced: Vec<String> = Vec::new();
    collect_referenced(&full, &mut referenced)?;
    referenced.sort();
    let mut json = String::from("{\"type_description\": ");
    json.push_str(&description(&full)?);
    json.push_str(", \"referenced_type_descriptions\": [");
    for (i, r) in referenced.iter().enumerate() {
        if i > 0 {
            json.push_str(", ");
        }
        json.push_str(&description(r)?);
    }
    json.push_str("]}");
    let digest = Sha256::digest(json.as_bytes());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("RIHS01_");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    Some(out)
}

/// One field type: (type id, capacity, string capacity, nested type name).
struct FieldType {
    id: u8,
    capacity: u64,
    string_capacity: u64,
    nested: String,
}

fn field_type(ros_type: &str) -> Option<FieldType> {
    // Array suffix: `[]` unbounded, `[N]` fixed, `[<=N]` bounded.
    let (base, offset, capacity) = match ros_type.find('[') {
        None => (ros_type, 0u8, 0u64),
        Some(i) => {
            let inner = ros_type[i + 1..].strip_suffix(']')?;
            let base = &ros_type[..i];
            if inner.is_empty() {
                (base, 144, 0)
            } else if let Some(n) = inner.strip_prefix("<=") {
                (base, 96, n.parse().ok()?)
            } else {
                (base, 48, inner.parse().ok()?)
            }
        }
    };
    // Bounded strings: `string<=N`.
    let (base, string_capacity) = match base.split_once("<=") {
        Some((b, n)) => (b, n.parse().ok()?),
        None => (base, 0),
    };
    let (id, nested) = match base {
        "int8" => (2, ""),
        "uint8" => (3, ""),
        "int16" => (4, ""),
        "uint16" => (5, ""),
        "int32" => (6, ""),
        "uint32" => (7, ""),
        "int64" => (8, ""),
        "uint64" => (9, ""),
        "float32" => (10, ""),
        "float64" => (11, ""),
        "char" => (13, ""),
        "bool" => (15, ""),
        "byte" => (16, ""),
        "string" if string_capacity > 0 => (21, ""),
        "string" => (17, ""),
        "wstring" if string_capacity > 0 => (22, ""),
        "wstring" => (18, ""),
        nested => (1, nested),
    };
    Some(FieldType {
        id: id + offset,
        capacity,
        string_capacity,
        nested: if nested.is_empty() {
            String::new()
        } else {
            normalize_type(nested)
        },
    })
}

fn collect_referenced(full: &str, acc: &mut Vec<String>) -> Option<()> {
    for (_, ty) in fields_of(full)? {
        let ft = field_type(ty)?;
        if !ft.nested.is_empty() && !acc.contains(&ft.nested) {
            acc.push(ft.nested.clone());
            collect_referenced(&ft.nested, acc)?;
        }
    }
    Some(())
}

fn description(full: &str) -> Option<String> {
    let mut s = format!("{{\"type_name\": \"{full}\", \"fields\": [");
    for (i, (name, ty)) in fields_of(full)?.iter().enumerate() {
        let ft = field_type(ty)?;
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!(
            "{{\"name\": \"{name}\", \"type\": {{\"type_id\": {}, \"capacity\": {}, \
             \"string_capacity\": {}, \"nested_type_name\": \"{}\"}}}}",
            ft.id, ft.capacity, ft.string_capacity, ft.nested
        ));
    }
    s.push_str("]}");
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{CompressedImage, Image, JointState};

    /// Published hashes (rosidl-generated, as shipped in ROS 2 Jazzy; the
    /// interop test checks the sarm_msgs ones against rosbags).
    #[test]
    fn standard_types_match_ros2() {
        assert_eq!(
            rihs01::<JointState>(),
            "RIHS01_a13ee3a330e346c9d87b5aa18d24e11690752bd33a0350f11c5882bc9179260e"
        );
        assert_eq!(
            rihs01::<Image>(),
            "RIHS01_d31d41a9a4c4bc8eae9be757b0beed306564f7526c88ea6a4588fb9582527d47"
        );
        assert_eq!(
            rihs01::<CompressedImage>(),
            "RIHS01_15640771531571185e2efc8a100baf923961a4d15d5569652e6cb6691e8e371a"
        );
        assert_eq!(
            rihs01_of("diagnostic_msgs/msg/DiagnosticArray").as_deref(),
            Some("RIHS01_5a8a36efb05fb25070fa0fb3810290c0e6cd4862b54a8fb975a1ee8dc55a333e")
        );
    }

    #[test]
    fn unknown_types_have_no_hash() {
        assert_eq!(rihs01_of("foo_msgs/msg/Bar"), None);
    }
}
