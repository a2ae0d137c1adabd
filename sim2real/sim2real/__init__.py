"""The sim2real application: the ``sim2real`` command line, the sim demo, the launch-graph
runner, the deployment runner and the sim-to-real loop, on top of the four libraries
(sim_bridge <- policies, real_bridge <- calibration). Also the bringup: the launch files,
graphs and parameter files of ``launch/`` install into ``share/sim2real/launch``.

Nothing in the libraries imports this package (an import-linter contract checks it).
"""
