"""Gymnasium envs of the stack: one :class:`~sim_bridge.envs.task_env.TaskEnv` per registered
task (:mod:`sim_bridge.tasks`), under the task's ``env_id`` (``Sim2Real/Reach-v0``, ...).
Registered on import; :func:`register_envs` registers tasks added later."""
from __future__ import annotations

REACH_ID = "Sim2Real/Reach-v0"
#: keyword arguments TaskEnv keeps for itself; every other one is a setting of the task
ENV_OPTIONS = frozenset({"task", "profile", "randomization", "action_scale_rad", "terminate_on_success",
                         "start_pose_noise_rad", "render_mode", "assist_start_prob", "assist_episodes",
                         "action_type", "ee_action"})


def task_settings_of(env_kwargs: dict) -> dict:
    """The task's settings among an env's keyword arguments."""
    return {k: v for k, v in env_kwargs.items() if k not in ENV_OPTIONS}


def register_envs() -> None:
    """Give every registered task its gymnasium id (idempotent)."""
    import gymnasium as gym

    from sim_bridge.tasks import get_task, task_names

    for name in task_names():
        env_id = get_task(name).env_id
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="sim_bridge.envs.task_env:TaskEnv", kwargs={"task": name},
                         max_episode_steps=None, disable_env_checker=False)


register_envs()
