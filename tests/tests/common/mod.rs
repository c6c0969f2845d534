//! What the end-to-end tests share about the project's ALOHA sim.

/// The sim's 14 joints in its recording order (models/tools/sim/README.md,
/// "Recording conventions"): each arm's six joints and gripper, left first.
pub fn aloha_joint_names() -> Vec<String> {
    let joints = [
        "waist",
        "shoulder",
        "elbow",
        "forearm_roll",
        "wrist_angle",
        "wrist_rotate",
        "gripper",
    ];
    ["left", "right"]
        .iter()
        .flat_map(|side| joints.iter().map(move |j| format!("{side}_{j}")))
        .collect()
}
