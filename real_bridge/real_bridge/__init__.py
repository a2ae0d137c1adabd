"""real_bridge: the sim2real policy interface on a real ros2_control arm.

- ``node``: the bridge node (hardware side: ``/joint_states`` in, ``/<controller>/commands``
  out; policy side: exactly the sim bridge's topics), with the ``safety`` filter and the
  ``watchdog`` in its control loop;
- ``recorder`` / ``recorder_node`` / ``bagload``: rosbag2 recording and loading of episodes;
- ``emulator`` / ``emulator_node``: a MuJoCo arm with hidden physics that stands in for
  hardware in tests and demos.
"""
