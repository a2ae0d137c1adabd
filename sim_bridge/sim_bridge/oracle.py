"""A scripted reach controller: damped-least-squares IK on the nominal model.

Used to test that the reach task is solvable, and by ``sim2real sim`` to drive the arm
before a trained policy is shipped. It sees only what a policy sees (measured joint
positions and the target) and computes kinematics on its own nominal copy of the model,
so it works unchanged against the ROS sim bridge.
"""
from __future__ import annotations

import mujoco
import numpy as np

from sim_bridge.actions import EE_DELTA, action_from_dict
from sim_bridge.profile import RobotProfile
from sim_bridge.simulator import build_model, make_action


def action_settings(action) -> dict:
    """The oracles' keyword arguments that make them act in ``action``'s space (:mod:`sim_bridge.actions`):
    for an end-effector action, a replica of it (the oracle replays its own commands on it)."""
    if action.type == EE_DELTA:
        return {"ee_action": action_from_dict(action.describe(), num_joints=len(action.default),
                                              default_pose_rad=action.default, lower_rad=action.lower,
                                              upper_rad=action.upper)}
    return {"action_scale_rad": action.scale_rad}


class ReachOracle:
    """Task-space P+I controller mapped to joint deltas with damped least squares."""

    def __init__(self, profile: RobotProfile, action_scale_rad: float = 0.05, gain: float = 0.5,
                 integral_gain: float = 0.05, damping: float = 0.05, posture_gain: float = 0.05,
                 scene=None, site: str | None = None, ee_action=None):
        """``scene``: a task's ``add_to_scene`` hook; ``site``: the point to move (default: the
        profile's end-effector site; Push: its ``pusher_tip``); ``ee_action``: act in end-effector
        steps: a private replica of the policy's ``ee_position_delta`` action (its site = ``site``)."""
        self.profile = profile
        self.ee_action = ee_action
        self.model = build_model(profile, scene)
        self.data = mujoco.MjData(self.model)
        self.action_scale_rad = action_scale_rad
        self.gain, self.integral_gain = gain, integral_gain
        self.damping, self.posture_gain = damping, posture_gain
        m = self.model
        jids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in profile.joint_names]
        self._qadr = np.array([m.jnt_qposadr[j] for j in jids])
        self._dadr = np.array([m.jnt_dofadr[j] for j in jids])
        self._site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, site or profile.end_effector_site)
        self._jacp = np.zeros((3, m.nv))
        self._jacr = np.zeros((3, m.nv))
        self._integral = np.zeros(3)
        self.observed_command: np.ndarray | None = None  # this step's ee_cmd, set by action()

    def reset(self) -> None:
        self._integral[:] = 0.0
        if self.ee_action is not None:
            self.ee_action.reset()

    def end_effector(self, joint_pos: np.ndarray) -> np.ndarray:
        self.data.qpos[self._qadr] = joint_pos
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self._site].copy()

    def commanded(self, joint_pos: np.ndarray) -> np.ndarray:
        """Where the site is commanded to be: the observed command (``ee_cmd``) when the caller
        gave one this step; else with ``ee_action`` by the replica's last target; else measured."""
        if self.observed_command is not None:
            return self.observed_command
        last = None if self.ee_action is None else self.ee_action.last_target
        return self.end_effector(joint_pos) if last is None else self.ee_action.site_position(last)

    def joint_delta(self, joint_pos: np.ndarray, target: np.ndarray, down_gain: float = 0.0) -> np.ndarray:
        """Joint position change (rad) that moves the end effector toward ``target``;
        ``down_gain`` > 0 also turns the site's z axis (the tool axis) toward -z (pointing down)."""
        err = np.asarray(target, float) - self.end_effector(joint_pos)
        self._integral = np.clip(self._integral + err, -0.5, 0.5)
        mujoco.mj_comPos(self.model, self.data)
        mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self._site)
        jac = self._jacp[:, self._dadr]
        task = self.gain * err + self.integral_gain * self._integral
        if down_gain > 0:
            axis = self.data.site_xmat[self._site].reshape(3, 3)[:, 2]
            turn = np.cross(axis, np.array([0.0, 0.0, -1.0]))  # rotation vector toward pointing down
            jac = np.vstack([jac, self._jacr[:, self._dadr]])
            task = np.concatenate([task, down_gain * turn])
        jjt = jac @ jac.T + self.damping**2 * np.eye(len(task))
        dq = jac.T @ np.linalg.solve(jjt, task)
        # Null-space pull toward the default pose keeps the elbow tidy.
        null = np.eye(len(dq)) - np.linalg.pinv(jac) @ jac
        dq += null @ (self.posture_gain * (self.profile.default_pose_rad - joint_pos))
        return dq

    def solve(self, joint_pos: np.ndarray, target: np.ndarray, *, down_gain: float = 0.0,
              iterations: int = 100, tolerance_m: float = 0.003) -> np.ndarray | None:
        """Inverse kinematics: joint positions (within the limits) that put the site at ``target``,
        iterating :meth:`joint_delta` from ``joint_pos``; None if it ends farther than ``tolerance_m``."""
        p = self.profile
        q = np.asarray(joint_pos, dtype=float).copy()
        self.reset()
        for _ in range(iterations):
            q = np.clip(q + self.joint_delta(q, target, down_gain=down_gain), p.position_lower_rad, p.position_upper_rad)
        self.reset()
        return q if np.linalg.norm(self.end_effector(q) - target) <= tolerance_m else None

    def action(self, joint_pos: np.ndarray, target: np.ndarray, down_gain: float = 0.0,
               ee_gain: float = 1.0, commanded=None) -> np.ndarray:
        """The step toward ``target`` as a policy action in [-1, 1]: joint deltas, or with
        ``ee_action`` ``ee_gain`` x the commanded site's way to the target this step (saturated). An
        end-effector action integrates its command (:mod:`sim_bridge.actions`), so the oracle
        steers that command (replayed on its replica: the same function of the measured joints and
        the actions), not the measured site, which sags under gravity. ``commanded``: the
        observation's ``ee_cmd`` (the env's own command): used instead of the replica, which
        only knows this controller's actions: when another policy drives (DAgger, a teacher
        labelling a student's rollout) the replica's command is not the env's."""
        self.observe_command(commanded)
        return self.step_toward(joint_pos, target, down_gain=down_gain, ee_gain=ee_gain)

    def observe_command(self, commanded) -> None:
        """This step's ``ee_cmd`` from the observation (None: the layout has none; the replica is used)."""
        self.observed_command = None if commanded is None else np.asarray(commanded, float)

    def step_toward(self, joint_pos: np.ndarray, target: np.ndarray, down_gain: float = 0.0,
                    ee_gain: float = 1.0) -> np.ndarray:
        """:meth:`action` with this step's command already observed (:meth:`observe_command`)."""
        if self.ee_action is not None and self.observed_command is not None:
            return np.clip(ee_gain * (np.asarray(target, float) - self.observed_command)
                           / self.ee_action.settings.scale_m, -1.0, 1.0)
        if self.ee_action is not None:
            a = np.clip(ee_gain * (np.asarray(target, float) - self.commanded(joint_pos)) / self.ee_action.settings.scale_m,
                        -1.0, 1.0)
            self.ee_action.targets(np.asarray(joint_pos, float), a)  # the replica takes the same step
            return a
        return np.clip(self.joint_delta(joint_pos, target, down_gain=down_gain) / self.action_scale_rad, -1.0, 1.0)


PUSH_PHASES = ("approach", "push", "hold")  # PushOracle.targets' phase codes


class PushOracle:
    """A scripted pusher for the Push task, on top of :class:`ReachOracle`'s IK.

    It sees what a policy sees (measured joints, the tracked puck pose, the goal) and
    computes kinematics on its own nominal model. Phases, chosen every step from this step's
    observation alone: go to the point behind the puck (on the line goal -> puck), at hover
    height while far from it and descending as it gets near; push toward the goal while the
    tip is low and in the corridor behind the puck on that line; if the puck slides off the
    pushing line, lift and go around again; hold once the puck is at the goal. Used to test
    that the task is solvable, by ``sim2real sim --task push`` before a trained policy is
    given, and as the teacher of Push training (policies/imitation.py).

    No memory: its action is a function of the observation (with ``ee_cmd``), so a policy
    imitating it learns labels that the observation determines. An earlier version entered the
    push phase near the pushing point and kept it until the tip left the line (hysteresis): the
    same observation could then have two labels, "move to the pushing point" and "push". Measured
    on the same 80 push_default episodes (2026-12-06): 72/80 either way (median 105 vs 113.5
    steps to success). It did not close the students' mean-action gap, though: one training run
    with it reached the shipped policy's success, not more (docs/push_training.md).
    """

    def __init__(self, profile: RobotProfile, task=None, action_scale_rad: float = 0.05, *,
                 table_top_z: float = 0.0, hover_m: float = 0.07, ee_action=None, hold_m: float = 0.02,
                 ee_gain: float = 0.5):
        """``task``: the :class:`~sim_bridge.tasks.push.PushTask` (its scene and sizes; default settings if None);
        ``ee_action``: act in pusher-tip steps (a replica of the policy's ``ee_position_delta`` action);
        ``hold_m``: with the puck this close to the goal, hold the command; ``ee_gain``: the share of
        the way to its target the commanded tip takes per step (0.5: proportional near the target,
        saturated far from it). Why the last two: a policy imitates this controller, and both make
        its actions a smoother function of the observation without costing success (measured: 12,000
        steps of 30 randomized episodes that run on after success, an MLP regressing its actions:
        error 0.16 of variance 0.32 without either; 0.065 of 0.16 with the hold (success 77%, 30
        other episodes); 0.036 of 0.11 with both (success 83%))."""
        from sim_bridge.tasks.push import PUSHER_TIP, PushTask  # noqa: PLC0415

        task = task or PushTask()
        self.reach = ReachOracle(profile, action_scale_rad=action_scale_rad, gain=0.6, integral_gain=0.1,
                                 scene=task.add_to_scene, site=PUSHER_TIP, ee_action=ee_action)
        self.action_scale_rad = action_scale_rad
        self.contact_m = task.puck_radius_m + task.pusher_radius_m
        self.puck_half_height_m = 0.5 * task.puck_height_m
        self.table_top_z, self.hover_m = float(table_top_z), float(hover_m)
        self.push_above_table_m = task.pusher_radius_m + 0.012  # the rod clear of the table
        self._heights(self.table_top_z)
        self.hold_m = hold_m
        self.ee_gain = ee_gain
        self.phase = "approach"

    def _heights(self, table_top_z: float) -> None:
        self.table_z = table_top_z
        self.push_z = table_top_z + self.push_above_table_m
        self.hover_z = table_top_z + self.hover_m

    def reset(self) -> None:
        self.reach.reset()
        self.phase = "approach"

    def target(self, joint_pos: np.ndarray, puck_xy: np.ndarray, goal_xy: np.ndarray) -> np.ndarray:
        """The end-effector point to move to now (and update the phase)."""
        ee, command = self.reach.end_effector(joint_pos), self.reach.commanded(joint_pos)
        targets, phases = self.targets(ee[None], command[None], np.asarray(puck_xy, float)[None, :2],
                                       np.asarray(goal_xy, float)[None, :2], np.array([self.table_z]))
        self.phase = PUSH_PHASES[phases[0]]
        return targets[0]

    def targets(self, ee: np.ndarray, command: np.ndarray, puck_xy: np.ndarray, goal_xy: np.ndarray,
                table_z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`target` for rows: the measured tip [B, 3], the commanded tip [B, 3], the puck
        [B, 2], the goal [B, 2] and the table top under the puck [B] -> the points to move to
        [B, 3] and each row's phase (an index into ``PUSH_PHASES``). One function of the rows,
        whether one env asks (:meth:`target`) or training's teacher labels all its envs at once
        (:meth:`actions`)."""
        c = self.contact_m
        push_z, hover_z = table_z + self.push_above_table_m, table_z + self.hover_m
        to_goal = goal_xy - puck_xy
        dist = np.sqrt((to_goal * to_goal).sum(1))
        far = dist > 1e-6
        u = np.where(far[:, None], to_goal / np.where(far, dist, 1.0)[:, None], (1.0, 0.0))
        behind = puck_xy - u * (c + 0.02)
        # where the pusher is relative to the pushing line: along u (negative = behind) and across it
        rel = ee[:, :2] - puck_xy
        along, across = (rel * u).sum(1), np.abs(rel[:, 0] * u[:, 1] - rel[:, 1] * u[:, 0])
        # pushing: low, within 3 cm of the line, from 3.5 cm behind the contact point up to
        # touching it (the tip ahead of that is past the puck: go around again)
        pushing = (ee[:, 2] < push_z + 0.01) & (across < 0.03) & (along > -(c + 0.035)) & (along < -0.6 * c)
        # approach: toward the point behind the puck, descending as the command nears it (by the
        # command: it integrates, and the measured tip sags a centimetre or two below it): at
        # hover height from 5 cm away, at push height within 1 cm. A smooth descent, not a
        # separate phase: a policy imitating a hover/descend switch averaged the two targets and
        # stalled between them, 4 cm over the table
        d_xy = np.sqrt(((command[:, :2] - behind) ** 2).sum(1))
        w = np.minimum(1.0, np.maximum(0.0, (d_xy - 0.01) / 0.04))
        out = np.empty((len(ee), 3))
        out[:, :2], out[:, 2] = behind, push_z + w * (hover_z - push_z)
        # beside, ahead or on top of the puck and low: lift away (never sweep across it; a tip
        # resting on the puck while its command sits at the target would stay there)
        lift = ~pushing & (along > -0.5 * c) & (ee[:, 2] < hover_z - 0.01) & (np.sqrt((rel * rel).sum(1)) < c + 0.03)
        out[lift, :2], out[lift, 2] = (puck_xy + rel * 1.5)[lift], hover_z[lift]
        # pushing: move the contact point toward the goal, by at most 4 cm; the height by the
        # measured tip: the arm sags ~1 cm under its command, and a command at push height
        # dragged the rod along the table (friction held the tip 4-5 cm behind it)
        step = np.minimum(0.04, dist)[:, None]
        out[pushing, :2] = (puck_xy - u * c + u * step)[pushing]
        out[pushing, 2] = (command[:, 2] + (push_z - ee[:, 2]))[pushing]
        # there: stay (the direction to the goal is tracker noise now)
        hold = dist < self.hold_m
        out[hold] = command[hold]
        return out, np.where(hold, 2, np.where(pushing, 1, 0))

    def actions(self, joint_pos: np.ndarray, puck_pose: np.ndarray, goal: np.ndarray,
                commanded: np.ndarray) -> np.ndarray:
        """:meth:`action` for a batch of observations (rows: measured joints, the tracked puck
        (x, y, z, ...), the goal, the observation's ``ee_cmd``), for an end-effector action
        whose command the observation gives: training's teacher labels all its envs with one
        oracle, which keeps no state between calls then. The same numbers as :meth:`action` row by
        row (a test holds them to 1e-12): 232 us for 12 envs, where the per-env loop took 928 us."""
        if self.reach.ee_action is None:
            raise ValueError("PushOracle.actions needs an end-effector action (ee_position_delta)")
        commanded = np.asarray(commanded, float)
        ee = np.array([self.reach.end_effector(q) for q in np.asarray(joint_pos, float)])
        puck_pose = np.asarray(puck_pose, float)
        targets, _ = self.targets(ee, commanded, puck_pose[:, :2], np.asarray(goal, float)[:, :2],
                                  puck_pose[:, 2] - self.puck_half_height_m)
        return np.clip(self.ee_gain * (targets - commanded) / self.reach.ee_action.settings.scale_m, -1.0, 1.0)

    def action(self, joint_pos: np.ndarray, puck_xy: np.ndarray, goal_xy: np.ndarray, commanded=None,
               puck_z: float | None = None) -> np.ndarray:
        """``commanded``: the observation's ``ee_cmd`` when the policy's layout has it (see
        :meth:`ReachOracle.action`). ``puck_z``: the tracked puck centre's height; given, the push
        and hover heights follow the table under the puck (its centre minus half the nominal
        puck height) instead of ``table_top_z``. Why: the table's height is randomized by
        +-2 cm (push_default), and at the nominal table's push height the rod passed over the
        puck on a table 1.5 cm lower and dragged along one 2 cm higher (the scripted pusher
        succeeded in 78% and 80% of those episodes, 90-95% in between; the students imitating
        it in 15-38% on the lower tables)."""
        self.reach.observe_command(commanded)   # target() steers from it too
        self._heights(self.table_top_z if puck_z is None else float(puck_z) - self.puck_half_height_m)
        target = self.target(joint_pos, np.asarray(puck_xy, float)[:2], np.asarray(goal_xy, float)[:2])
        return self.reach.step_toward(joint_pos, target, down_gain=0.5, ee_gain=self.ee_gain)


class PushStrike(PushOracle):
    """An identification strike for calibration: the pusher tip goes over the point just behind
    the puck, down to push height, then pushes fast (``strike_steps`` control steps with the
    command running ahead at full speed) and the command is held where it was, so the arm stops
    and the puck slides on alone. The push goes straight away from where the tip is when the
    episode starts (through the puck's centre), not toward the goal: the approach never has to go
    around the puck. Heights are held by the measured tip (the emulator's heavy arm sags 1.5 cm
    under its command: a command at push height dragged the tip along the table).

    Why: a policy pushes the puck along until it is at the goal, and a pushed puck moves with
    the pusher whatever its friction; such recordings hardly constrain friction (the
    calibration's friction in three loop runs: +23, -50 and -33% of the emulator's truth). A
    puck that slides free decelerates at mu g (plus its damping): its slide length fixes mu.
    Episodes recorded with it are replayed open loop in calibration (``sim2real calibrate
    --replay-bags``): no policy produced them. ``settle_steps``: steps at the pushing point
    before the strike starts."""

    def __init__(self, profile: RobotProfile, task=None, *, strike_steps: int = 8, settle_steps: int = 3, **kwargs):
        if strike_steps < 1 or settle_steps < 1:
            raise ValueError(f"strike_steps and settle_steps must be >= 1, got {strike_steps} and {settle_steps}")
        super().__init__(profile, task, **kwargs)
        self.strike_steps, self.settle_steps = int(strike_steps), int(settle_steps)
        self._start()

    def _start(self) -> None:
        self.phase = "approach"  # approach -> strike -> hold
        self._ready = self._struck = 0
        self._direction = self._hold = None

    def reset(self) -> None:
        super().reset()
        self._start()

    def actions(self, *args, **kwargs) -> np.ndarray:
        raise ValueError("PushStrike keeps its strike's state per episode: act one env at a time (action)")

    def target(self, joint_pos: np.ndarray, puck_xy: np.ndarray, goal_xy: np.ndarray) -> np.ndarray:
        ee, command = self.reach.end_effector(joint_pos), self.reach.commanded(joint_pos)
        if self._direction is None:  # the episode's first step: away from the tip, through the puck
            away = puck_xy - ee[:2]
            self._direction = away / max(float(np.linalg.norm(away)), 1e-9)
        if self.phase == "approach":
            behind = puck_xy - self._direction * (self.contact_m + 0.01)
            over = float(np.linalg.norm(command[:2] - behind)) < 0.015
            height = self.push_z if over else self.hover_z  # over the point first, then down
            low = abs(ee[2] - self.push_z) < 0.015  # the rod meets the puck anywhere in this band
            near = float(np.linalg.norm(ee[:2] - behind)) < 0.03  # the measured tip too (it lags its command)
            self._ready = self._ready + 1 if over and low and near else 0
            if self._ready < self.settle_steps:  # the command's height moves by a tenth of the measured
                # tip's error per step (more, with the arm's lag, oscillated by +-4 cm)
                return np.array([*behind, command[2] + 0.1 / self.ee_gain * (height - ee[2])])
            self.phase = "strike"
        if self.phase == "strike":
            self._struck += 1
            if self._struck <= self.strike_steps:  # full speed along the line: an end-effector action
                # of exactly the unit direction (a longer step clipped per axis turned the push aside)
                ahead = 0.1 if self.reach.ee_action is None else self.reach.ee_action.settings.scale_m / self.ee_gain
                return np.array([*(command[:2] + ahead * self._direction), command[2]])
            self.phase, self._hold = "hold", command.copy()
        return self._hold


class ActingPusher:
    """A push oracle (:class:`PushOracle`, or :class:`PushStrike` with ``strike_steps`` > 0) acting
    through the task's own action (push: end-effector steps integrated into a command), which it
    owns: the oracle steers from that command, and :meth:`targets` turns its actions into joint
    targets. What drives an arm without a policy's runtime: the ROS node
    (:class:`sim_bridge.controller.ScriptedPushNode`) and the emulator episodes of calibration."""

    def __init__(self, profile: RobotProfile, task, strike_steps: int = 0):
        self.action = make_action(profile, task)
        settings = action_settings(self.action)
        self.oracle = (PushStrike(profile, task, strike_steps=strike_steps, **settings) if strike_steps
                       else PushOracle(profile, task, **settings))

    def reset(self) -> None:
        self.oracle.reset()
        self.action.reset()

    def act(self, joint_pos: np.ndarray, puck_pose, goal) -> np.ndarray:
        """The action for the measured joints, the tracked puck (x, y, z, ...) and the goal."""
        last = getattr(self.action, "last_target", None)  # joint-delta actions keep no command
        commanded = None if last is None else self.action.site_position(last)
        return self.oracle.action(np.asarray(joint_pos, float), np.asarray(puck_pose[:2], float),
                                  np.asarray(goal[:2], float), commanded=commanded, puck_z=float(puck_pose[2]))

    def targets(self, joint_pos: np.ndarray, action: np.ndarray) -> np.ndarray:
        return self.action.targets(np.asarray(joint_pos, float), np.asarray(action, float))


class ScriptedPolicy:
    """A scripted controller behind a policy's interface (what ``Task.scripted_controller`` returns)."""

    def __init__(self, oracle, act, act_batch=None):
        """``act``: parts -> action; ``act_batch`` (optional): batched parts -> actions, or None
        where these parts cannot be labelled in one call (see :meth:`act_batch`)."""
        self.oracle, self._act, self._act_batch = oracle, act, act_batch

    def reset(self) -> None:
        self.oracle.reset()

    def act(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        """The action in [-1, 1]^n for the observation ``parts`` (signal name -> values)."""
        return self._act(parts)

    def act_batch(self, parts: dict[str, np.ndarray]) -> np.ndarray | None:
        """The actions [B, n] for a batch of observations (signal name -> [B, size] values) with
        this one controller, or None where it keeps state between steps or these signals do not
        allow it (the caller then asks one controller per row with :meth:`act`)."""
        return None if self._act_batch is None else self._act_batch(parts)
