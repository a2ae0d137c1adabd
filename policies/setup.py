"""ament_python package 'policies' of the sim2real stack."""
from setuptools import find_packages, setup

PACKAGE = "policies"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    package_data={PACKAGE: ["zoo/*/*.onnx", "zoo/*/*.json", "zoo/*/*.pt"]},
    zip_safe=False,
    entry_points={
        "console_scripts": [
            # `ros2 run policies policy_node` after a colcon build.
            "policy_node = policies.node:main",
        ],
        "sim2real.nodes": [
            "policy = policies.node:main",
        ],
    },
    license="Apache-2.0",
)
