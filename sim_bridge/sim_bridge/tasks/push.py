"""``push`` (``Sim2Real/Push-v0``): push a puck across the table to a goal.

The experiment behind dynamics randomization (Peng et al. 2018, arXiv 1710.06537) is a
pushing task: the object's mass, friction and damping decide where a push takes it, so a
policy must infer them online (the LSTM) or be robust to them.

Scene (:meth:`PushTask.add_to_scene`, added to any arm's MJCF)
    A puck: a cylinder, nominal radius 4 cm, height 3 cm, 0.2 kg, on a free joint, resting
    on the arm's table (the geom ``table_geom``, whose top is the table surface); a pusher:
    a rod (capsule, radius 1.5 cm) that sticks ``pusher_length_m`` (5 cm) out of the
    end-effector site along its z axis (the tool axis), so the rod's tip, the site
    ``pusher_tip``, is the arm's lowest point and the hand stays above the 3 cm puck. The puck's friction is the puck-table
    (and puck-pusher) sliding friction: the puck geom has contact priority, so its own
    coefficient is used instead of MuJoCo's max over the pair. The goal is shown by the
    profile's target marker.
Episode
    Reset samples the goal uniformly in ``goal_region_m`` (x, y on the table), the puck's
    start ``push_distance_m`` (10-25 cm) from the goal in a random direction (inside
    ``start_region_m``) with a random yaw, the arm at the default pose with noise (the env),
    and new dynamics (arm and object physics, from the randomization file). The puck is
    placed on the table as randomized (``table_height``, ``object_size``).
Observation (task part)
    ``object_pose`` [5]: puck x, y, z (m, robot base frame), sin(yaw), cos(yaw), as a motion
    capture or fiducial tracker gives it: with the episode's sampled tracker noise, latency
    (whole control steps) and dropouts (no new pose: the last one is held). No object
    velocity: the policy infers it. On a robot it comes from the ``object_pose`` topic
    (geometry_msgs/PoseStamped).
    ``goal_pos`` [3]: the goal (x, y on the table, z = puck centre height over the nominal
    table top); on a robot from ``current_goal`` (geometry_msgs/PointStamped).
Reward (per control step; d_b = distance from the pusher tip (site ``pusher_tip``) to the
    pushing point b: the point touching the puck on the side away from the goal,
    ``b = puck - u (puck radius + rod radius)`` with u the unit vector puck -> goal in the table
    plane, at ``push_height_m`` (2.5 cm) over the table; d_g = puck centre to goal in the table
    plane; both m)
    ``-reach_weight * d_b + contact_weight * (1 - tanh(d_b / precision_scale_m))
    - push_weight * d_g + precision_weight * (1 - tanh(d_g / precision_scale_m))
    + success_bonus * [d_g < success radius] - action_cost * mean(a^2)``
    (the first two terms bring the pusher behind the puck, where a push moves it toward the
    goal, the tanh kernel peaking there; while pushing the tip stays at b. The next two reward
    moving the puck to the goal, again with a kernel toward the centre). A first version used the
    gap to the nearest side of the puck: trained policies then touched the puck from any side.
    Weights: reach 0.5, contact 0.1, push 5, precision 0.5, bonus 1, action cost 0.01. With the
    earlier contact 0.5 / push 2, a policy learnt to sit at b and not push: a push moves b ahead
    of a lagging pusher and lost more contact reward (0.5 (tanh(0.6) - tanh(0.2)) = 0.17 per step
    for d_b 1 -> 3 cm) than a centimetre of puck progress paid (0.02 per step).
Success
    ``d_g`` below 5 cm for 10 consecutive control steps (Peng used 7 cm); 400 steps (8 s at
    50 Hz) leave time for approach and push: the scripted pusher, with the Cartesian action and
    the fixes of docs/push_training.md and its push height taken from the tracked puck, succeeds
    in 455 of 500 push_default episodes (91.0%, seeds 10000-10499) within 400 steps, a median of
    94 steps to success (2026-12-07; at the nominal table's height 436/500, 103 steps; in joint
    space it had finished 70% within 400: the arm under low gains and high damping is slow).
Assisted start (training only, the env's ``assist_start_prob``)
    :meth:`PushTask.assist_target`: the pusher tip 1 cm behind b, at push height.
Privileged state (critic only; the dynamics vector before it holds the object physics)
    the true puck velocity in the table plane ``object_vel/x,y`` (m/s), the true puck-to-goal
    vector ``object_to_goal/x,y`` and pusher-to-puck vector ``pusher_to_object/x,y,z`` (m).
"""
from __future__ import annotations

import importlib
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim_bridge.episode import SuccessCriterion
from sim_bridge.observations import Signal
from sim_bridge.tasks.base import POINT_STAMPED, POSE_STAMPED, Task, TaskInput

PUCK_BODY, PUCK_GEOM, PUCK_JOINT, PUSHER_GEOM, PUSHER_TIP = "puck", "puck", "puck_joint", "pusher", "pusher_tip"


def _region(value, name: str) -> tuple[np.ndarray, np.ndarray]:
    low, high = (np.asarray(v, dtype=float) for v in value)
    if low.shape != (2,) or high.shape != (2,) or not np.all(low < high):
        raise ValueError(f"task 'push': {name} must be ((x, y) low, (x, y) high) with low < high, got {value!r}")
    return low, high


def _rotate(quat_wxyz: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``v`` rotated by the unit quaternion (w, x, y, z)."""
    w, x, y, z = quat_wxyz / np.linalg.norm(quat_wxyz)
    r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                  [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                  [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
    return r @ v


def yaw_of(quat_wxyz: np.ndarray) -> float:
    """Rotation about z of a unit quaternion (w, x, y, z)."""
    w, x, y, z = quat_wxyz
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


@dataclass
class PushState:
    """One episode's task state (ids resolved on the episode's model)."""

    goal: np.ndarray
    qadr: int  # puck free joint: qpos[qadr:qadr+7] = position, quaternion (w, x, y, z)
    dadr: int  # qvel[dadr:dadr+6] = linear, angular velocity
    tip: int  # site id of the pusher tip
    table_top_z: float
    latency_steps: int
    dropout_prob: float
    noise_pos_m: float
    noise_yaw_rad: float
    noise_scale: np.ndarray = field(init=False)  # the four standard deviations (x, y, z, yaw)
    history: deque = field(default_factory=deque)  # true (x, y, z, yaw), newest last
    observed: np.ndarray | None = None  # the tracker's last delivered observation
    delivered: bool = False  # whether the last observe() step delivered a new pose

    def __post_init__(self):
        self.noise_scale = np.array([self.noise_pos_m] * 3 + [self.noise_yaw_rad])


class PushTask(Task):
    name = "push"
    env_id = "Sim2Real/Push-v0"
    summary = "push a puck on the table to a goal (5 cm for 10 steps)"
    inputs = (TaskInput("object_pose", "object_pose", POSE_STAMPED, latched=False),
              TaskInput("goal_pos", "current_goal", POINT_STAMPED, latched=True))
    default_randomization = "push_default"
    action_site = PUSHER_TIP
    # docs/architecture.md, "Push acts in Cartesian space": 2 cm pusher-tip steps (1 m/s at 50 Hz)
    default_action = {"action_type": "ee_position_delta", "ee_action": {"scale_m": 0.02}}

    def __init__(self, *, success_radius_m: float = 0.05, success_hold_steps: int = 10,
                 max_episode_steps: int = 400, puck_radius_m: float = 0.04, puck_height_m: float = 0.03,
                 puck_mass_kg: float = 0.2, puck_friction: float = 0.4, puck_damping_ns_m: float = 0.05,
                 pusher_radius_m: float = 0.015, pusher_length_m: float = 0.05, table_geom: str = "table",
                 goal_region_m: tuple = ((0.40, -0.20), (0.56, 0.20)),
                 start_region_m: tuple = ((0.33, -0.28), (0.60, 0.28)),
                 push_distance_m: tuple = (0.10, 0.25), push_height_m: float = 0.025,
                 reach_weight: float = 0.5, contact_weight: float = 0.1, push_weight: float = 5.0,
                 precision_weight: float = 0.5,
                 precision_scale_m: float = 0.05, success_bonus: float = 1.0, action_cost: float = 0.01,
                 observe_prev_action: bool = True):
        super().__init__(SuccessCriterion(float(success_radius_m), int(success_hold_steps), "puck to goal"),
                         max_episode_steps, observe_prev_action=observe_prev_action)
        for key, value in (("puck_radius_m", puck_radius_m), ("puck_height_m", puck_height_m),
                           ("puck_mass_kg", puck_mass_kg), ("pusher_radius_m", pusher_radius_m),
                           ("pusher_length_m", pusher_length_m)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"task 'push': {key} must be > 0, got {value}")
        if not (puck_friction >= 0 and puck_damping_ns_m >= 0):
            raise ValueError("task 'push': puck_friction and puck_damping_ns_m must be >= 0")
        self.puck_radius_m, self.puck_height_m = float(puck_radius_m), float(puck_height_m)
        self.puck_mass_kg, self.puck_friction = float(puck_mass_kg), float(puck_friction)
        self.puck_damping_ns_m, self.pusher_radius_m = float(puck_damping_ns_m), float(pusher_radius_m)
        self.pusher_length_m = float(pusher_length_m)
        self.table_geom = str(table_geom)
        self.goal_region = _region(goal_region_m, "goal_region_m")
        self.start_region = _region(start_region_m, "start_region_m")
        low, high = (float(v) for v in push_distance_m)
        if not 0 < low <= high:
            raise ValueError(f"task 'push': push_distance_m must be (low, high) with 0 < low <= high, "
                             f"got {push_distance_m!r}")
        self.push_distance = (low, high)
        if not 0 < push_height_m < puck_height_m:
            raise ValueError(f"task 'push': push_height_m must be in (0, puck_height_m = {puck_height_m}), "
                             f"got {push_height_m}")
        self.push_height_m = float(push_height_m)
        self.reach_weight, self.push_weight = float(reach_weight), float(push_weight)
        self.contact_weight = float(contact_weight)
        self.precision_weight, self.precision_scale_m = float(precision_weight), float(precision_scale_m)
        self.success_bonus, self.action_cost = float(success_bonus), float(action_cost)

    def signals(self) -> tuple[Signal, ...]:
        return (Signal("object_pose", 5, "m, m, m, 1, 1",
                       "puck x, y, z in the robot base frame, sin(yaw), cos(yaw) (object tracker)"),
                Signal("goal_pos", 3, "m", "push goal on the table in the robot base frame"))

    def sample_goal(self, rng: np.random.Generator, profile) -> np.ndarray:
        low, high = self.goal_region
        return np.array([*rng.uniform(low, high), 0.5 * self.puck_height_m])

    # --- scene ------------------------------------------------------------------------
    def add_to_scene(self, spec, profile) -> None:
        """Add the puck and the pusher tip to the arm's ``mujoco.MjSpec``."""
        table = spec.geom(self.table_geom)
        if table is None:
            raise ValueError(f"task 'push' needs a table: no geom '{self.table_geom}' in the robot's MJCF "
                             f"(set the task's table_geom to the name of its table geom)")
        top = float(table.pos[2] + table.size[2])
        r, h = self.puck_radius_m, self.puck_height_m
        low, high = self.start_region
        puck = spec.worldbody.add_body(name=PUCK_BODY, pos=[*(0.5 * (low + high)), top + 0.5 * h])
        joint = puck.add_freejoint(name=PUCK_JOINT)
        joint.damping = [self.puck_damping_ns_m, 0.0, 0.0]  # (linear coefficient, polynomial terms)
        # MuJoCo's geom-type enum, taken from the table geom (this module never imports mujoco:
        # the robot computer imports the task declarations)
        geom_type = type(table.type)
        puck.add_geom(name=PUCK_GEOM, type=geom_type.mjGEOM_CYLINDER, size=[r, 0.5 * h, 0],
                      mass=self.puck_mass_kg, friction=[self.puck_friction, 0.005, 0.0001],
                      priority=1, condim=4, contype=1, conaffinity=1, rgba=[0.85, 0.2, 0.15, 1])
        site = spec.site(profile.end_effector_site)
        axis = _rotate(np.asarray(site.quat, dtype=float), np.array([0.0, 0.0, 1.0]))  # the site's z in its body
        start = np.asarray(site.pos, dtype=float)
        tip = start + self.pusher_length_m * axis
        site.parent.add_geom(name=PUSHER_GEOM, type=geom_type.mjGEOM_CAPSULE,
                             fromto=[*start, *tip], size=[self.pusher_radius_m, 0, 0], mass=0.02,
                             contype=1, conaffinity=0, rgba=[0.2, 0.2, 0.2, 1])
        site.parent.add_site(name=PUSHER_TIP, pos=list(tip), size=[0.005, 0, 0], rgba=[1, 0.5, 0, 1])

    def action_floor_m(self, model) -> float:
        """The nominal table top + the push height: the pusher tip is never commanded lower."""
        table = model.geom(self.table_geom).id
        return float(model.geom_pos[table, 2] + model.geom_size[table, 2]) + self.push_height_m

    # --- episode ----------------------------------------------------------------------
    def sample_start(self, rng: np.random.Generator, goal: np.ndarray) -> np.ndarray:
        """The puck's start (x, y): ``push_distance_m`` from the goal, inside ``start_region_m``."""
        low, high = self.start_region
        for _ in range(100):
            d = rng.uniform(*self.push_distance)
            angle = rng.uniform(-math.pi, math.pi)
            start = goal[:2] + d * np.array([math.cos(angle), math.sin(angle)])
            if np.all(start >= low) and np.all(start <= high):
                return start
        return np.clip(start, low, high)

    def reset(self, sim, rng: np.random.Generator, goal: np.ndarray, options: dict[str, Any]) -> PushState:
        m, d = sim.model, sim.data
        try:
            joint, geom = m.joint(PUCK_JOINT).id, m.geom(PUCK_GEOM).id
            table, tip = m.geom(self.table_geom).id, m.site(PUSHER_TIP).id
        except KeyError:
            raise ValueError("task 'push': the model has no puck or table (was it built with the task's scene?)") from None
        start = options.get("object_start")
        start = self.sample_start(rng, goal) if start is None else np.asarray(start, dtype=float)[:2]
        yaw = float(options.get("object_yaw", rng.uniform(-math.pi, math.pi)))
        top = float(m.geom_pos[table, 2] + m.geom_size[table, 2])  # as randomized (table_height)
        qadr, dadr = int(m.jnt_qposadr[joint]), int(m.jnt_dofadr[joint])
        d.qpos[qadr:qadr + 3] = (start[0], start[1], top + float(m.geom_size[geom, 1]) + 1e-4)
        d.qpos[qadr + 3:qadr + 7] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
        d.qvel[dadr:dadr + 6] = 0.0
        sim.forward()
        sim.set_target_marker(np.array([goal[0], goal[1], top + 0.5 * self.puck_height_m]))
        fx = sim.effects
        return PushState(goal=np.asarray(goal, dtype=float), qadr=qadr, dadr=dadr, tip=tip, table_top_z=top,
                         latency_steps=int(math.floor(fx.object_latency_steps + 0.5)),
                         dropout_prob=float(fx.object_dropout_prob),
                         noise_pos_m=float(fx.object_noise_std["position"]),
                         noise_yaw_rad=float(fx.object_noise_std["yaw"]))

    def true_pose(self, sim, state: PushState) -> np.ndarray:
        """The puck's true (x, y, z, yaw)."""
        return np.array(self._pose(sim, state))

    @staticmethod
    def _pose(sim, state: PushState) -> tuple[float, float, float, float]:
        """:meth:`true_pose` as plain floats (every step, twice: no array to build)."""
        q = sim.data.qpos[state.qadr:state.qadr + 7].tolist()
        return q[0], q[1], q[2], yaw_of(q[3:7])

    def observe(self, sim, state: PushState) -> tuple[np.ndarray, ...]:
        """The tracker's reading now; each call is one control step of the tracker."""
        state.history.append(self._pose(sim, state))
        while len(state.history) > state.latency_steps + 1:
            state.history.popleft()
        rng = sim.rng
        dropped = state.observed is not None and state.dropout_prob > 0 and rng.random() < state.dropout_prob
        state.delivered = not dropped
        if not dropped:
            x, y, z, yaw = state.history[0]  # the oldest kept = `latency_steps` steps ago
            if state.noise_pos_m > 0 or state.noise_yaw_rad > 0:  # one draw for the four
                nx, ny, nz, nyaw = rng.normal(0.0, state.noise_scale).tolist()
                x, y, z, yaw = x + nx, y + ny, z + nz, yaw + nyaw
            state.observed = np.array([x, y, z, math.sin(yaw), math.cos(yaw)])
        return state.observed, state.goal

    def measure(self, sim, state: PushState) -> dict[str, tuple[np.ndarray, float]]:
        """The tracker's pose this step (none on a dropout), ``latency_steps`` periods old."""
        self.observe(sim, state)
        if not state.delivered:
            return {}
        return {"object_pose": (state.observed, state.latency_steps * sim.profile.control_period_s)}

    def error(self, sim, state: PushState) -> float:
        q = sim.data.qpos
        dx, dy = q[state.qadr] - state.goal[0], q[state.qadr + 1] - state.goal[1]
        return math.sqrt(dx * dx + dy * dy)

    def pushing_point(self, sim, state: PushState) -> np.ndarray:
        """b: where the pusher tip touches the puck to push it straight toward the goal (m, world)."""
        q = sim.data.qpos
        x, y = q[state.qadr], q[state.qadr + 1]
        ux, uy = state.goal[0] - x, state.goal[1] - y
        norm = math.hypot(ux, uy)
        if norm < 1e-9:
            ux, uy, norm = 1.0, 0.0, 1.0
        reach = self.puck_radius_m + self.pusher_radius_m
        return np.array([x - ux / norm * reach, y - uy / norm * reach, state.table_top_z + self.push_height_m])

    def assist_target(self, sim, state: PushState) -> tuple[str, np.ndarray]:
        """The pusher tip 1 cm behind the pushing point b (on the goal line, not yet touching)."""
        b = self.pushing_point(sim, state)
        q = sim.data.qpos
        u = state.goal[:2] - q[state.qadr:state.qadr + 2]
        norm = float(np.linalg.norm(u))
        u = u / norm if norm > 1e-9 else np.array([1.0, 0.0])
        return PUSHER_TIP, np.array([b[0] - 0.01 * u[0], b[1] - 0.01 * u[1], b[2]])

    def reward(self, error: float, inside: bool, action: np.ndarray, sim, state: PushState) -> float:
        delta = sim.data.site_xpos[state.tip] - self.pushing_point(sim, state)
        d_b = math.sqrt(float(delta @ delta))
        return (-self.reach_weight * d_b
                + self.contact_weight * (1.0 - math.tanh(d_b / self.precision_scale_m))
                - self.push_weight * error
                + self.precision_weight * (1.0 - math.tanh(error / self.precision_scale_m))
                + self.success_bonus * inside - self.action_cost * float(action @ action) / action.size)

    def privileged_names(self) -> tuple[str, ...]:
        return ("object_vel/x", "object_vel/y", "object_to_goal/x", "object_to_goal/y",
                "pusher_to_object/x", "pusher_to_object/y", "pusher_to_object/z")

    def privileged(self, sim, state: PushState) -> np.ndarray:
        q, v = sim.data.qpos, sim.data.qvel
        pos = q[state.qadr:state.qadr + 3]
        out = np.empty(7)
        out[0:2] = v[state.dadr:state.dadr + 2]
        out[2:4] = state.goal[:2] - pos[:2]
        out[4:7] = pos - sim.data.site_xpos[state.tip]
        return out

    def info(self, sim, state: PushState) -> dict[str, Any]:
        x, y, z, yaw = self._pose(sim, state)
        return {"goal_pos": state.goal.copy(), "object_pos": np.array([x, y, z]), "object_yaw": yaw,
                "ee_pos": sim.end_effector_position(), "pusher_pos": sim.data.site_xpos[state.tip].copy()}

    def scripted_controller(self, profile, action):
        """:class:`sim_bridge.oracle.PushOracle` on the measured joints, the tracked puck and the goal."""
        # imported by name at call time: the oracle needs MuJoCo, and the robot computer (which
        # imports the task declarations) never calls this (import-linter checks the static imports)
        oracle_module = importlib.import_module("sim_bridge.oracle")

        oracle = oracle_module.PushOracle(profile, self, **oracle_module.action_settings(action))

        def act_batch(p):  # one call for many envs: with an end-effector action whose command is observed
            if oracle.reach.ee_action is None or p.get("ee_cmd") is None:
                return None
            return oracle.actions(p["joint_pos"], p["object_pose"], p["goal_pos"], p["ee_cmd"])

        return oracle_module.ScriptedPolicy(oracle, lambda p: oracle.action(p["joint_pos"].astype(float), p["object_pose"][:2],
                                                              p["goal_pos"][:2], commanded=p.get("ee_cmd"),
                                                              puck_z=float(p["object_pose"][2])), act_batch)
