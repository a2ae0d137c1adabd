"""Another arm plugs in with an MJCF and a robot profile, no code changes."""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from gymnasium.utils.env_checker import check_env

from sim_bridge.envs.task_env import TaskEnv
from sim_bridge.profile import load_profile
from sim_bridge.randomization import load_randomization
from sim_bridge.simulator import ArmSimulator

THREE_LINK_MJCF = """
<mujoco model="three_link">
  <option timestep="0.001"/>
  <default><joint axis="0 1 0" damping="0.5" armature="0.05"/></default>
  <worldbody>
    <body name="target" mocap="true" pos="0.3 0 0.3"><site name="goal" size="0.02"/></body>
    <body name="base" pos="0 0 0">
      <geom type="cylinder" size="0.05 0.05"/>
      <body name="upper" pos="0 0 0.1">
        <joint name="shoulder" axis="0 0 1"/>
        <geom type="capsule" fromto="0 0 0 0 0 0.3" size="0.03" mass="2"/>
        <body name="fore" pos="0 0 0.3">
          <joint name="elbow"/>
          <geom type="capsule" fromto="0 0 0 0.25 0 0" size="0.025" mass="1"/>
          <body name="wrist" pos="0.25 0 0">
            <joint name="wrist_pitch"/>
            <geom type="capsule" fromto="0 0 0 0.1 0 0" size="0.02" mass="0.3"/>
            <site name="tool" pos="0.1 0 0"/>
          </body>
        </body>
      </body>
    </body>
  </worldbody>
  <actuator>
    <position name="m_shoulder" joint="shoulder" kp="1"/>
    <position name="m_elbow" joint="elbow" kp="1"/>
    <position name="m_wrist" joint="wrist_pitch" kp="1"/>
  </actuator>
</mujoco>
"""


@pytest.fixture
def three_link_profile(tmp_path):
    (tmp_path / "three_link.xml").write_text(THREE_LINK_MJCF)
    profile = {
        "profile_version": 1, "name": "three_link", "mjcf": "three_link.xml",
        "joint_names": ["shoulder", "elbow", "wrist_pitch"],
        "actuator_names": ["m_shoulder", "m_elbow", "m_wrist"],
        "link_names": ["upper", "fore", "wrist"],
        "end_effector_site": "tool", "target_body": "target",
        "limits": {"position_lower_rad": [-3.0, -2.0, -2.0], "position_upper_rad": [3.0, 2.0, 2.0],
                   "velocity_rad_s": [3.0, 3.0, 3.0], "effort_nm": [40.0, 20.0, 5.0]},
        "default_pose_rad": [0.0, 0.3, 0.3],
        "control_rate_hz": 100.0, "physics_rate_hz": 1000.0,
        "gains": {"kp": [300.0, 200.0, 50.0], "kd": [20.0, 10.0, 2.0]},
        "reach_workspace": {"low": [0.2, -0.2, 0.2], "high": [0.35, 0.2, 0.35]},
    }
    path = tmp_path / "three_link.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


def test_default_randomization_resolves_against_another_arm(three_link_profile):
    profile = load_profile(three_link_profile)
    sim = ArmSimulator(profile, load_randomization("default"), seed=0)
    assert sim.decimation == 10
    assert "body_mass/wrist" in sim.randomizer.names and "joint_damping/elbow" in sim.randomizer.names
    assert "actuator_kp/wrist_pitch" in sim.randomizer.names
    assert sim.model.actuator_gainprm[1, 0] == pytest.approx(200.0 * sim.dynamics_dict()["actuator_kp/elbow"])


def test_reach_env_runs_on_another_arm(three_link_profile):
    env = TaskEnv("reach", profile=str(three_link_profile), randomization="default")
    assert env.observation_space.shape == (3 * 3 + 3,)
    assert env.action_space.shape == (3,)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=1)
    for _ in range(20):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert np.all(np.isfinite(obs)) and np.isfinite(reward)
    assert info["dynamics"].shape == (len(env.dynamics_names),)
