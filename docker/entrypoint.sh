#!/bin/bash
# Container entrypoint: ROS 2 Jazzy underlay + the sim2real colcon overlay,
# then run the command (default CMD: the simulation).
set -e
# shellcheck disable=SC1091
source /opt/ros/jazzy/setup.bash
# shellcheck disable=SC1091
source /opt/sim2real/ros2_ws/install/setup.bash
exec "$@"
