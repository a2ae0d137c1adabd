"""Helpers for the calibration tests: reference episodes written into rosbag2 bags the way
``sim2real real --record`` records them (real_bridge.recorder.BagRecorder, no ROS).

Topics are the recorder node's defaults in the ``/sim2real`` namespace: joint states,
policy commands, the current goal, the hardware (forward position controller) commands and
episode markers; the sidecar metadata names the robot profile and the policy, as the
recorder node writes it. Per episode: the goal (latched, before the start marker), a start
marker, then one joint state per control period, each followed by the command sent after it
(policy command 5 ms later, the filtered hardware command 6 ms later), and an end marker.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

from real_bridge.recorder import BagRecorder
from synthetic_bags import FLOAT_ARRAY, JOINT_STATE, POINT_STAMPED, float_array, joint_state, point_stamped

JOINT_STATES = "/sim2real/joint_states"
JOINT_COMMANDS = "/sim2real/joint_commands"
CURRENT_GOAL = "/sim2real/current_goal"
HARDWARE_COMMANDS = "/forward_position_controller/commands"
EPISODE = "/sim2real/episode"
TOPICS = {JOINT_STATES: JOINT_STATE, JOINT_COMMANDS: FLOAT_ARRAY, CURRENT_GOAL: POINT_STAMPED,
          HARDWARE_COMMANDS: FLOAT_ARRAY}
ROLES = {"joint_states": JOINT_STATES, "joint_commands": JOINT_COMMANDS, "hardware_commands": HARDWARE_COMMANDS,
         "current_goal": CURRENT_GOAL, "episode": EPISODE}
MS = 1_000_000  # ns


def write_episode_bag(path: str | os.PathLike, episodes: Sequence, joint_names: Sequence[str], *,
                      policy: str | None = "reach_lstm", profile: str | None = "panda_like",
                      period_ms: int = 20, end_last: bool = True, markers: bool = True) -> None:
    """Record ``episodes`` (calibration.episodes.ReferenceEpisode) into a new bag at ``path``.

    ``policy``/``profile``: names stored in the sidecar metadata (None: not stored).
    ``end_last=False`` leaves the last episode without an end marker (recording stopped);
    ``markers=False`` writes no episode markers at all (a plain recording).
    """
    meta = {"topics": ROLES, "note": "calibration test bag"}
    if profile:
        meta["robot_profile"] = {"name": profile, "source": profile, "joint_names": list(joint_names)}
    if policy:
        meta["policy"] = {"name": policy, "sha256": ""}
    t_ms = 1000
    with BagRecorder(path, TOPICS, meta, episode_topic=EPISODE) as rec:
        for k, ep in enumerate(episodes, start=1):
            rec.record(CURRENT_GOAL, (t_ms - 2) * MS, point_stamped(t_ms / 1e3, ep.goal))
            if markers:
                rec.mark_episode("start", k, stamp_ns=(t_ms - 1) * MS)
            for t in range(ep.steps):
                stamp = t_ms * MS
                rec.record(JOINT_STATES, stamp, joint_state(t_ms / 1e3, joint_names, ep.position[t], ep.velocity[t]))
                if t < ep.steps - 1:
                    rec.record(JOINT_COMMANDS, stamp + 5 * MS, float_array(ep.command[t]))
                    rec.record(HARDWARE_COMMANDS, stamp + 6 * MS, float_array(ep.command[t]))
                t_ms += period_ms
            if markers and (end_last or k < len(episodes)):
                rec.mark_episode("end", k, True, stamp_ns=(t_ms - period_ms + 10) * MS)
            t_ms += 100

