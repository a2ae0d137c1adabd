"""ament_python package: bridge to a ros2_control arm, safety filter, watchdog, recorder, arm emulator."""
from setuptools import find_packages, setup

PACKAGE = "real_bridge"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["config/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    description="Bridge from the sim2real policy interface to a ros2_control arm, with safety filter, "
                "watchdog, trajectory recording and an arm emulator.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            # `ros2 run real_bridge <name>` after a colcon build.
            "real_bridge_node = real_bridge.node:main",
            "arm_emulator = real_bridge.emulator_node:main",
            "recorder = real_bridge.recorder_node:main",
        ],
        "sim2real.nodes": [
            "real_bridge = real_bridge.node:main",
            "arm_emulator = real_bridge.emulator_node:main",
            "recorder = real_bridge.recorder_node:main",
        ],
    },
)
