"""Hardware-in-the-loop: the MuJoCo ALOHA sim as a ROS 2 robot and the sarm node driving it on
sim time (the policy models/aloha-act through the safety layer, the reward model scoring).

    ros2 launch launch/hil.launch.py seeds:=0:20 mode:=lockstep

Both processes start together; the sim waits for the node (liveliness), runs the episodes and
exits, the node runs until the launch is stopped. transport:=zenoh (default): the sim listens on
tcp/127.0.0.1:7448, where hil.toml's `transport.zenoh_connect` points (rmw_zenoh keys: `ros2 topic
echo` through rmw_zenohd sees the same topics). transport:=dds: the sim is an rclpy node on Fast
DDS (loopback only; rclpy from ros/tests/interop/.venv, see ros_robot.py) and the node joins it on
DDS in ROS_DOMAIN_ID `domain`, so `ros2 topic echo` in that domain sees them. Arguments: config
(default hil.toml), bundle, robot_id, transport, domain, seeds (A:B or a,b,c), mode (lockstep:
deterministic; realtime: 50 Hz of wall time, the node's latency is real; set
`policy.inference_deadline_ms` back to its default in the config), python (an interpreter with
models/tools/sim/requirements.txt), sim_args (more ros_robot.py flags, e.g. `--fault
camera_stall@100:500`), sarm_bin. The node is started with use_sim_time:=true.
For a report (success rate, parity with LeRobot, latency, safety trips), use tests/hil/run.py.
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.substitutions import LaunchConfiguration

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def generate_launch_description():
    args = [
        DeclareLaunchArgument("config", default_value=os.path.join(HERE, "hil.toml"),
                              description="sarm node configuration (TOML): the HIL preset"),
        DeclareLaunchArgument("bundle", default_value="",
                              description="reward model bundle folder (empty: the config's)"),
        DeclareLaunchArgument("robot_id", default_value="aloha-sim",
                              description="robot id on the trainer link and in messages"),
        DeclareLaunchArgument("transport", default_value="zenoh",
                              description="zenoh (rmw_zenoh keys) | dds (the sim an rclpy node on Fast DDS)"),
        DeclareLaunchArgument("domain", default_value=os.environ.get("ROS_DOMAIN_ID", "0"),
                              description="ROS_DOMAIN_ID of both (DDS; Zenoh keys carry it too)"),
        DeclareLaunchArgument("seeds", default_value="0:20", description="episodes' seeds: A:B or a,b,c"),
        DeclareLaunchArgument("mode", default_value="lockstep", description="lockstep | realtime"),
        DeclareLaunchArgument("python", default_value=os.path.join(ROOT, "models/tools/.venv/bin/python"),
                              description="Python with models/tools/sim/requirements.txt"),
        DeclareLaunchArgument("sim_args", default_value="",
                              description="more ros_robot.py flags (space-separated)"),
        DeclareLaunchArgument("sarm_bin", default_value="sarm", description="the sarm binary"),
    ]
    sim = ExecuteProcess(
        cmd=[
            LaunchConfiguration("python"), os.path.join(ROOT, "models/tools/sim/ros_robot.py"),
            "--transport", LaunchConfiguration("transport"), "--domain", LaunchConfiguration("domain"),
            "--listen", "tcp/127.0.0.1:7448", "--sarm-control",
            "--seeds", LaunchConfiguration("seeds"), "--mode", LaunchConfiguration("mode"),
            "--command-form", "joint_state", "--out", os.path.join(ROOT, "sarm_out/hil/sim.json"),
            LaunchConfiguration("sim_args"),
        ],
        additional_env={"MUJOCO_GL": "egl"},
        name="aloha_sim",
        output="screen",
        shell=True,
    )
    node = ExecuteProcess(
        cmd=[
            LaunchConfiguration("sarm_bin"), "run", "--domain-id", LaunchConfiguration("domain"),
            "--ros-args",
            "--params-file", os.path.join(HERE, "sarm_params.yaml"),
            "-p", ["config:=", LaunchConfiguration("config")],
            "-p", ["bundle:=", LaunchConfiguration("bundle")],
            "-p", ["robot_id:=", LaunchConfiguration("robot_id")],
            "-p", ["transport:=", LaunchConfiguration("transport")],
            "-p", "use_sim_time:=true",
        ],
        cwd=ROOT,
        name="sarm",
        output="screen",
    )
    return LaunchDescription(args + [sim, node])
