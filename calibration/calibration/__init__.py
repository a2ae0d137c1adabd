"""SimOpt calibration of the dynamics randomization distribution from real trajectories.

Built so far (pure maths, no ROS): ``discrepancy`` (trajectory discrepancy D between
simulated and real observation sequences), ``search`` (the Gaussian search distribution
over named randomization elements, written back as the file's ``joint_gaussian``) and
``updates`` (REPS with a KL bound, and CEM). Still to come: closed-loop and open-loop
simulated rollouts, the calibration node and ``sim2real calibrate``.
"""
