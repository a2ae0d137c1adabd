# syntax=docker/dockerfile:1
#
# sim2real stack on the official ROS 2 Jazzy image (Ubuntu 24.04 "noble",
# Python 3.12, rclpy & message packages from apt under /opt/ros/jazzy).
#
#   docker build -t sim2real .
#   docker run --rm -it sim2real                        # the simulation (CMD below)
#   docker run --rm -it sim2real ros2 run sim_bridge sim_bridge_node
#   docker run --rm -it sim2real bash
#
# Unlike the developer setup (`make setup`), ROS itself is NOT installed from
# the PyPI ros-jazzy-* wheels here: the apt packages of the image are used.
FROM ros:jazzy

ARG DEBIAN_FRONTEND=noninteractive
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# ROS packages named as <exec_depend> in the package.xml files (most already
# ship with ros:jazzy; listing them keeps the image correct if the base slims
# down), colcon, and python3-venv for the virtual environment below.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        python3-pip \
        python3-venv \
        python3-numpy \
        python3-yaml \
        python3-colcon-common-extensions \
        ros-jazzy-rclpy \
        ros-jazzy-rmw-fastrtps-cpp \
        ros-jazzy-sensor-msgs \
        ros-jazzy-std-msgs \
        ros-jazzy-std-srvs \
        ros-jazzy-geometry-msgs \
        ros-jazzy-diagnostic-msgs \
        ros-jazzy-rosgraph-msgs \
        ros-jazzy-lifecycle-msgs \
        ros-jazzy-trajectory-msgs \
 && rm -rf /var/lib/apt/lists/*

# Python packages that have no apt package (mujoco, gymnasium, onnxruntime,
# rosbags, matplotlib; scipy from pip for the pinned version) go into a virtual environment
# created WITH --system-site-packages, instead of `pip install
# --break-system-packages` into the system interpreter:
#  * pip never modifies or removes apt-owned files (with
#    --break-system-packages it would happily "upgrade" a dependency such as
#    numpy or PyYAML over the Debian copy, or fail with "Cannot uninstall ...
#    RECORD file not found");
#  * apt's numpy, PyYAML, colcon, catkin_pkg, ... stay importable, and rclpy
#    (/opt/ros/jazzy/..., put on PYTHONPATH by setup.bash) is visible from any
#    interpreter anyway;
#  * it is the layout the ROS 2 docs recommend ("Using Python Packages with
#    ROS 2": venv on the system interpreter + `python -m colcon build`).
# numpy and PyYAML are constrained to the apt versions: the apt rclpy/rosidl C
# extensions are built against Debian's numpy 1.26 and would break under a
# numpy 2.x pulled in by pip.  The pins themselves come from
# requirements/runtime.txt (single source of truth).
ENV VIRTUAL_ENV=/opt/venv
RUN python3 -m venv --system-site-packages "${VIRTUAL_ENV}"
ENV PATH="${VIRTUAL_ENV}/bin:${PATH}"

COPY requirements/runtime.txt /tmp/requirements/runtime.txt
RUN grep -E '^(mujoco|gymnasium|onnxruntime|onnx|rosbags|scipy|matplotlib|tyro)==' /tmp/requirements/runtime.txt \
        > /tmp/requirements/docker.txt \
 && python3 -c 'import numpy, yaml; print(f"numpy=={numpy.__version__}"); print(f"pyyaml=={yaml.__version__}")' \
        > /tmp/requirements/constraints.txt \
 && python3 -m pip install --no-cache-dir \
        -r /tmp/requirements/docker.txt -c /tmp/requirements/constraints.txt \
 && rm -rf /tmp/requirements

# The workspace: the five ament_python packages copied straight into src/
# (in the repository ros2_ws/src/ holds symlinks to them).
WORKDIR /opt/sim2real/ros2_ws
COPY sim_bridge/ src/sim_bridge/
COPY real_bridge/ src/real_bridge/
COPY policies/ src/policies/
COPY calibration/ src/calibration/
COPY sim2real/ src/sim2real/
# launch files, graphs and parameter files: sim2real's setup.py installs ../launch (next to
# the package folder) into share/sim2real/launch/; colcon ignores the folder itself.
COPY launch/ src/launch/

# `python3 -m colcon` (the venv's interpreter; colcon itself comes from apt via
# the system site-packages): ament_python packages are installed by running
# `python setup.py` with the interpreter that runs colcon, so the executables
# under install/<pkg>/lib/<pkg>/ get `#!/opt/venv/bin/python3` and can import
# mujoco & co.  (Plain `colcon` would be /usr/bin/python3 and could not.)
RUN source /opt/ros/jazzy/setup.bash \
 && python3 -m colcon build --event-handlers console_direct+ \
 && rm -rf build log

COPY docker/entrypoint.sh /usr/local/bin/sim2real-entrypoint.sh

# Same policy as the Makefile and the tests: DDS discovery stays on this host
# (inside a container: its network namespace).  Override at `docker run -e`
# time, e.g. ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET, to reach a real robot.
ENV ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST \
    RMW_IMPLEMENTATION=rmw_fastrtps_cpp

ENTRYPOINT ["/usr/local/bin/sim2real-entrypoint.sh"]
# The sim graph (sim bridge + policy node with the shipped reach_lstm). Other graphs:
#   docker run --rm -it sim2real ros2 launch sim2real real.launch.py emulator:=true
#   docker run --rm -it sim2real ros2 launch sim2real calibrate.launch.py bags:=/data/bag1
#   docker run --rm -it sim2real ros2 run sim2real sim2real sim      # the demo with a summary
CMD ["ros2", "launch", "sim2real", "sim.launch.py"]
