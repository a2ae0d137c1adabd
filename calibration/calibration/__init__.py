"""SimOpt calibration of the dynamics randomization distribution from real trajectories.

Pure cores (no ROS): ``discrepancy`` (trajectory discrepancy D), ``search`` (the Gaussian
search distribution, read from and written back to randomization files), ``updates``
(REPS under a KL bound, CEM), ``episodes`` (real episodes from bags or the arm emulator),
``rollouts`` (batched closed-/open-loop simulation: native ``mujoco.rollout`` + a batched
ONNX policy), ``simopt`` (settings, search space, iterations), ``job`` (one run end to end),
``sysid`` (the mujoco.sysid baseline), ``transfer`` (success on the emulator), ``plots``.
ROS and CLI shells: ``node`` (the calibration node), ``cli`` (``sim2real calibrate``),
``loop`` (``sim2real loop``). See docs/architecture.md, "calibration".
"""
