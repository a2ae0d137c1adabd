"""Calibration graph: calibration node (SimOpt) + sim bridge, the result pushed to the bridge.

    ros2 launch sim2real calibrate.launch.py bags:=/data/bag1,/data/bag2 prior:=default
    ros2 launch sim2real calibrate.launch.py --show-args

With bags given, the calibration node starts a run at once (auto_calibrate); more bags can
arrive on ~/new_bag, and ~/calibrate starts a run on demand. The calibrated distribution is
written atomically to `output` and set as the sim bridge's randomization_file (push_to), so
the bridge's next episode samples from it. Nodes and parameters come from
graphs/calibrate.yaml through sim2real.launch_graph, as for `sim2real launch calibrate`.
"""
from pathlib import Path

from sim2real.launch_graph import launch_description


def generate_launch_description():
    return launch_description(Path(__file__).resolve().parent / "graphs" / "calibrate.yaml")
