"""ament_python package: MuJoCo arm simulation, dynamics randomization, sim bridge node."""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "sim_bridge"

# The repository's launch/ folder (launch files, graphs/, config/) is installed into
# share/sim_bridge/launch/ with the same layout, so `ros2 launch sim_bridge sim.launch.py`
# works after a colcon build and the launch files find graphs/ and config/ next to
# themselves. It lives outside this package's folder: the paths are taken from this file's
# real location (ros2_ws/src/sim_bridge is a symlink) and made relative to the working
# directory (setuptools wants relative data_files sources; colcon and pip run setup.py in
# the package folder).
_LAUNCH = os.path.join(os.path.dirname(os.path.realpath(__file__)), os.pardir, "launch")


def _launch_files(pattern: str) -> list:
    return sorted(os.path.relpath(p) for p in glob(os.path.join(_LAUNCH, pattern)))

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["models/*.xml", "config/*.yaml", "config/randomization/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", _launch_files("*.launch.py")),
        (f"share/{PACKAGE}/launch/graphs", _launch_files("graphs/*.yaml")),
        (f"share/{PACKAGE}/launch/config", _launch_files("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    description="MuJoCo simulation of a robot arm with dynamics randomization, published over ROS 2.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            # `sim2real` is the project's single CLI; subcommands come from the
            # `sim2real.commands` entry point group of every installed package.
            "sim2real = sim_bridge.cli:main",
            # `ros2 run sim_bridge sim_bridge_node` after a colcon build.
            "sim_bridge_node = sim_bridge.node:main",
        ],
        "sim2real.commands": [
            "node = sim_bridge.cli:add_node_command",
            "sim = sim_bridge.demo:add_sim_command",
            "bench = sim_bridge.cli:add_bench_command",
            "launch = sim_bridge.launch_graph:add_launch_command",
        ],
        "sim2real.nodes": [
            "sim_bridge = sim_bridge.node:main",
        ],
    },
)
