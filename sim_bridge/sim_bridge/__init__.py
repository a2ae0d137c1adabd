"""sim_bridge: a MuJoCo arm with dynamics randomization, published over ROS 2.

Importing the package registers the gymnasium env ``Sim2Real/Reach-v0`` when gymnasium
is installed (a robot computer that only runs the policy runtime does not need it).
"""
try:
    import gymnasium as _gymnasium  # noqa: F401
except ImportError:  # pragma: no cover - deployment without the training stack
    pass
else:
    from sim_bridge import envs as _envs  # noqa: F401  (registers Sim2Real/Reach-v0)
