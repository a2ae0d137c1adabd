"""Gymnasium task envs of the stack. ``Sim2Real/Reach-v0`` is registered on import."""
from __future__ import annotations

REACH_ID = "Sim2Real/Reach-v0"


def register_envs() -> None:
    import gymnasium as gym

    if REACH_ID not in gym.registry:
        gym.register(id=REACH_ID, entry_point="sim_bridge.envs.reach:ReachEnv",
                     max_episode_steps=None, disable_env_checker=False)


register_envs()
