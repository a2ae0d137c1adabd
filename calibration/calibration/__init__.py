"""SimOpt calibration of the dynamics randomization distribution.

Not built yet: arrives with the calibration issue.
"""
