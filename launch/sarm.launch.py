"""Starts the sarm reward-model node.

    ros2 launch launch/sarm.launch.py config:=launch/aloha.toml robot_id:=aloha-1 transport:=dds

Arguments: config (TOML, see default.toml), bundle (model folder; empty = the config's),
robot_id, transport (dds | zenoh; empty = the config's), use_sim_time (true: follow /clock,
as a simulator publishes it; empty = the config's `time.source`). The `sarm` binary must be on PATH
(`cargo install --path ros`) or given with sarm_bin:=/path/to/sarm. Parameters also come
from sarm_params.yaml next to this file.
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.substitutions import LaunchConfiguration

HERE = os.path.dirname(os.path.abspath(__file__))


def generate_launch_description():
    args = [
        DeclareLaunchArgument("config", default_value=os.path.join(HERE, "default.toml"),
                              description="sarm node configuration (TOML)"),
        DeclareLaunchArgument("bundle", default_value="",
                              description="model bundle folder (empty: the config's)"),
        DeclareLaunchArgument("robot_id", default_value="robot",
                              description="robot id on the trainer link and in messages"),
        DeclareLaunchArgument("transport", default_value="",
                              description="dds or zenoh (empty: the config's)"),
        DeclareLaunchArgument("use_sim_time", default_value="",
                              description="true: ROS 2 simulated time from /clock (empty: the config's)"),
        DeclareLaunchArgument("sarm_bin", default_value="sarm", description="the sarm binary"),
    ]
    node = ExecuteProcess(
        cmd=[
            LaunchConfiguration("sarm_bin"), "run",
            "--ros-args",
            "--params-file", os.path.join(HERE, "sarm_params.yaml"),
            "-p", ["config:=", LaunchConfiguration("config")],
            "-p", ["bundle:=", LaunchConfiguration("bundle")],
            "-p", ["robot_id:=", LaunchConfiguration("robot_id")],
            "-p", ["transport:=", LaunchConfiguration("transport")],
            "-p", ["use_sim_time:=", LaunchConfiguration("use_sim_time")],
        ],
        name="sarm",
        output="screen",
    )
    return LaunchDescription(args + [node])
