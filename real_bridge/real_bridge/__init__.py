"""Bridge from the sim2real policy interface to a ros2_control arm.

Not built yet: the safety filter, watchdog, recorder and arm emulator arrive with the
real-bridge issue. The package exists so the workspace layout and colcon build are final.
"""
