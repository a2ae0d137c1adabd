"""ament_python package 'calibration' of the sim2real stack."""
from setuptools import find_packages, setup

PACKAGE = "calibration"

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
    description="SimOpt calibration of the dynamics randomization distribution from real trajectories.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            # `ros2 run calibration calibration_node` after a colcon build.
            "calibration_node = calibration.node:main",
        ],
        "sim2real.nodes": ["calibration = calibration.node:main"],
    },
)
