"""ament_python package: the sim2real application (CLI, sim demo, launch-graph runner,
deployment runner, sim-to-real loop) and the bringup files of launch/."""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "sim2real"

# The repository's launch/ folder (launch files, graphs/, config/) is installed into
# share/sim2real/launch/ with the same layout, so `ros2 launch sim2real sim.launch.py`
# works after a colcon build and the launch files find graphs/ and config/ next to
# themselves. It lives outside this package's folder: the paths are taken from this file's
# real location (ros2_ws/src/sim2real is a symlink) and made relative to the working
# directory (setuptools wants relative data_files sources; colcon and pip run setup.py in
# the package folder).
_LAUNCH = os.path.join(os.path.dirname(os.path.realpath(__file__)), os.pardir, "launch")


def _launch_files(pattern: str) -> list:
    return sorted(os.path.relpath(p) for p in glob(os.path.join(_LAUNCH, pattern)))


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", _launch_files("*.launch.py")),
        (f"share/{PACKAGE}/launch/graphs", _launch_files("graphs/*.yaml")),
        (f"share/{PACKAGE}/launch/config", _launch_files("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    description="The sim2real application: command line and bringup over the sim2real libraries.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            # The project's single CLI (also `ros2 run sim2real sim2real ...` after a colcon build).
            "sim2real = sim2real.cli:main",
            # `ros2 run sim2real sim_policy_node`: the sim bridge and the policy node in one process
            "sim_policy_node = sim2real.composed:main",
            # `ros2 run sim2real real_policy_node`: the real bridge and the policy node in one process
            "real_policy_node = sim2real.composed:main_real",
        ],
        # `sim2real node NAME`: the composed deployment (sim2real/composed.py)
        "sim2real.nodes": [
            "sim_policy = sim2real.composed:main",
            "real_policy = sim2real.composed:main_real",
        ],
        # Subcommands: the application's own, listed here; other installed packages may add
        # theirs to the same group (plug-ins), without this package knowing them.
        "sim2real.commands": [
            "node = sim2real.cli:add_node_command",
            "bench = sim2real.cli:add_bench_command",
            "sim = sim2real.sim:add_sim_command",
            "launch = sim2real.launch_graph:add_launch_command",
            "real = sim2real.real:add_real_command",
            "record = sim2real.record:add_record_command",
            "train = sim2real.training:add_train_command",
            "export = sim2real.training:add_export_command",
            "eval = sim2real.training:add_eval_command",
            "calibrate = sim2real.calibrate:add_calibrate_command",
            "loop = sim2real.loop:add_loop_command",
            "explain = sim2real.explain:add_explain_command",
            "robot = sim2real.robot:add_robot_command",
        ],
    },
)
