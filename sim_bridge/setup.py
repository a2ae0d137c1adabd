"""ament_python package: MuJoCo arm simulation, dynamics randomization, sim bridge node."""
from setuptools import find_packages, setup

PACKAGE = "sim_bridge"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["models/*.xml", "config/*.yaml", "config/randomization/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    description="MuJoCo simulation of a robot arm with dynamics randomization, published over ROS 2.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            # `ros2 run sim_bridge sim_bridge_node` after a colcon build.
            "sim_bridge_node = sim_bridge.node:main",
        ],
        "sim2real.nodes": [
            "sim_bridge = sim_bridge.node:main",
        ],
    },
)
