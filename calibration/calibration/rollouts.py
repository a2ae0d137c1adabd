"""Simulated rollouts for calibration: many dynamics samples x the recorded episodes, batched.

Pure core (numpy, MuJoCo, onnxruntime; no ROS). For S dynamics vectors and E recorded
episodes, :class:`BatchSimulator` produces S x E simulated joint trajectories that start
from each episode's recorded initial state:

* **closed loop** (SimOpt): the same ONNX policy runs on the *simulated* states, with the
  recorded goal, its recurrent state starting at zero as at every episode start;
* **open loop** (replay): the recorded hardware commands are applied as they were.

All S x E rollouts advance together, one control period at a time: the policy runs once
per period on a batch of S x E observations (the ONNX graph with its batch axis made
symbolic, see :class:`BatchPolicy`), and the physics run in MuJoCo's native multi-threaded
``mujoco.rollout`` (one ``MjModel`` per sample, ``threads`` worker threads, the GIL
released). The command latency of each sample is applied exactly as
:class:`sim_bridge.simulator.ArmSimulator` applies it (sub-step resolution); rollouts are
deterministic: observation and action noise are not simulated (they are not dynamics a
trajectory can be matched against). :func:`naive_rollouts` is the same computation as a
plain per-sample, per-step Python loop over ``ArmSimulator`` (the speed baseline, and the
reference the batched path is tested against).

Trajectory row t is the joint state after t control periods (row 0: the initial state),
the same rows a recorded episode has (one per joint state).

**Tasks with an object** (``task="push"``): the models hold the task's scene (the puck), each
sample's object physics come from the same dynamics vector (puck mass, friction, damping,
size, table height), the object starts at each episode's first recorded pose (x, y, yaw;
resting on that sample's table) and every trajectory row also holds the object's (x, y)
after the joint state: [S, T, 2J + 2]. In closed loop the policy sees the object's true pose
``object_latency`` control periods late (the sample's tracker delay; tracker noise and
dropouts are not simulated, like the joints' noise) and the recorded goal.

**End-effector policies** (Push acts in Cartesian space): every row keeps its own integrated
joint command, and the Cartesian step becomes joint targets through the same damped
least-squares step the deployed policy node runs (:mod:`sim_bridge.actions`), evaluated for
all rows at once (``targets_batch``, batched numpy kinematics).

One difference from :class:`ArmSimulator` is known: ``mujoco.rollout`` starts the constraint
solver of every call (one control period) cold, where ``ArmSimulator`` warm-starts it from the
previous step. For the bare arm (Reach: joint friction and limits are its only constraints)
the two agree within 1e-6; with the puck the cold start moves a solution within the solver's
tolerance (~1e-6 after 10 periods), which contacts then amplify over tens of periods
(chaotic, as a real push is). The Push test compares against the naive loop with the same
cold start (then they agree exactly).
"""
from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Sequence

import mujoco
import numpy as np
import onnx
import onnxruntime as ort
from mujoco import rollout as mj_rollout

from calibration.episodes import ReferenceEpisode
from policies.runtime import PolicyRuntime
from sim_bridge.observations import ObservationBuilder, clip
from sim_bridge.profile import RobotProfile
from sim_bridge.randomization import DynamicsRandomizer, NominalModel, RandomizationSpec
from sim_bridge.simulator import BLOWUP_VELOCITY_RAD_S, ArmSimulator, build_model
from sim_bridge.tasks import Task, make_task

log = logging.getLogger(__name__)

__all__ = ["BatchPolicy", "BatchSimulator", "naive_rollouts", "MODES"]

MODES = ("closed_loop", "open_loop")
#: the task signals a batched closed-loop rollout can feed a policy: the recorded goal (Reach's
#: target, Push's goal) and the object's pose as the tracker reports it (Push)
TASK_SIGNALS = ("target_pos", "goal_pos", "object_pose")
_FULLPHYSICS = int(mujoco.mjtState.mjSTATE_FULLPHYSICS)


# --- the policy, batched ---------------------------------------------------------------
class BatchPolicy:
    """An exported ONNX policy run on a batch of observations at once.

    The artifact is first loaded and validated by :class:`policies.runtime.PolicyRuntime`
    (manifest, hash, graph). Exported graphs have a fixed batch of 1; here the batch axis
    of every input and output is made symbolic and the result is checked against the
    batch-1 graph on random inputs. A graph that does not batch this way (it reshapes
    with a hard-coded batch) falls back to running the batch-1 graph row by row.
    """

    def __init__(self, path: str | os.PathLike, threads: int = 1):
        self.runtime = PolicyRuntime(path)
        m = self.manifest = self.runtime.manifest
        self.recurrent = m.recurrent_state is not None
        self.hidden_shape = tuple(m.recurrent_state.shape) if self.recurrent else None
        self.batched = False
        try:
            graph = onnx.load_model_from_string(m.onnx_path.read_bytes())
            for value in (*graph.graph.input, *graph.graph.output):
                dims = value.type.tensor_type.shape.dim
                axis = 0 if value.name in ("obs", "actions") else 1  # LSTM state: [layers, batch, hidden]
                dims[axis].ClearField("dim_value")
                dims[axis].dim_param = "batch"
            options = ort.SessionOptions()
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            self._session = ort.InferenceSession(graph.SerializeToString(), options,
                                                 providers=["CPUExecutionProvider"])
            self.batched = self._agrees_with_runtime()
        except Exception as exc:  # noqa: BLE001 - any failure means: use the batch-1 fallback
            self.batched = False  # the check may have failed while trying the batched path
            log.warning("policy %s: batched graph unusable (%s); running row by row", m.name, exc)
        if not self.batched:
            log.warning("policy %s does not batch; closed-loop rollouts run it row by row (slow)", m.name)

    @property
    def name(self) -> str:
        return self.manifest.name

    def initial_state(self, batch: int) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.recurrent:
            return None
        layers, _, hidden = self.hidden_shape
        return (np.zeros((layers, batch, hidden), np.float32), np.zeros((layers, batch, hidden), np.float32))

    def step(self, obs: np.ndarray, state):
        """Actions [B, A] (unclipped means) and the next recurrent state for obs [B, O]."""
        obs = np.ascontiguousarray(obs, dtype=np.float32)
        if self.batched:
            feed = {"obs": obs}
            if self.recurrent:
                feed.update(h_in=state[0], c_in=state[1])
            out = self._session.run(None, feed)
            names = [o.name for o in self._session.get_outputs()]
            out = dict(zip(names, out))
            return out["actions"], ((out["h_out"], out["c_out"]) if self.recurrent else None)
        actions = np.empty((len(obs), self.manifest.action.size), np.float32)
        h_next = None if state is None else (np.empty_like(state[0]), np.empty_like(state[1]))
        rt = self.runtime
        for b in range(len(obs)):
            if self.recurrent:
                rt.set_state(state[0][:, b:b + 1], state[1][:, b:b + 1])
            actions[b] = rt.step(obs[b])
            if self.recurrent:
                h, c = rt.state
                h_next[0][:, b:b + 1], h_next[1][:, b:b + 1] = h, c
        return actions, h_next

    def _agrees_with_runtime(self) -> bool:
        rng = np.random.default_rng(0)
        batch = 3
        obs = rng.normal(size=(batch, self.manifest.observation.size)).astype(np.float32)
        state = None
        if self.recurrent:
            layers, _, hidden = self.hidden_shape
            state = tuple(rng.normal(size=(layers, batch, hidden)).astype(np.float32) for _ in range(2))
        self.batched = True
        got, _ = self.step(obs, state)
        self.batched = False
        want, _ = self.step(obs, state)
        return got.shape == want.shape and bool(np.allclose(got, want, atol=1e-5))


# --- the physics, batched --------------------------------------------------------------
class BatchSimulator:
    """S copies of the profile's MuJoCo model, each with its own dynamics vector.

    ``spec`` defines the dynamics vector (names and semantics, as in training); the
    values come from :meth:`set_dynamics`. ``threads``: MuJoCo rollout threads. ``task``:
    a task whose scene the models hold (name or instance; None: the bare arm).
    """

    def __init__(self, profile: RobotProfile, spec: RandomizationSpec, threads: int = 2,
                 task: str | Task | None = None):
        self.profile = profile
        self.task = None if task is None else make_task(task)
        scene = None if self.task is None else self.task.add_to_scene
        self.model = build_model(profile, scene)
        self.object = _ObjectLayout(self.model, self.task) if scene is not None else None
        self.nominal = NominalModel(self.model)
        self.randomizer = DynamicsRandomizer(spec, self.model, profile, self.nominal)
        self.threads = max(1, int(threads))
        m = self.model
        jids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in profile.joint_names]
        # FULLPHYSICS state layout: [time, qpos (nq), qvel (nv), act, ...]
        self._q_idx = 1 + np.array([m.jnt_qposadr[j] for j in jids])
        self._v_idx = 1 + m.nq + np.array([m.jnt_dofadr[j] for j in jids])
        self._act = np.array([mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, a)
                              for a in profile.actuator_names])
        self._nstate = mujoco.mj_stateSize(m, _FULLPHYSICS)
        self._scratch = mujoco.MjData(m)
        self._datas = [mujoco.MjData(m) for _ in range(self.threads)]
        self._pool = mj_rollout.Rollout(nthread=self.threads if self.threads > 1 else 0)
        self._models: list[mujoco.MjModel] = []
        self._latency = np.zeros(0, dtype=int)
        self._object_latency = np.zeros(0, dtype=int)
        self.dynamics = np.zeros((0, self.randomizer.size))

    @property
    def names(self) -> tuple[str, ...]:
        return self.randomizer.names

    @property
    def columns(self) -> int:
        """Values per trajectory row: joint positions and velocities, then the object's x, y."""
        return 2 * self.profile.num_joints + (2 if self.object is not None else 0)

    @property
    def samples(self) -> int:
        return len(self._models)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def set_dynamics(self, values: np.ndarray) -> None:
        """One model per row of ``values`` [S, len(names)] (the training semantics)."""
        values = np.atleast_2d(np.asarray(values, dtype=float))
        if values.shape[1] != self.randomizer.size:
            raise ValueError(f"expected dynamics vectors of {self.randomizer.size} values "
                             f"({list(self.names)}), got shape {values.shape}")
        while len(self._models) < len(values):
            self._models.append(copy.copy(self.model))
        del self._models[len(values):]
        latency = np.empty(len(values), dtype=int)
        object_latency = np.empty(len(values), dtype=int)
        for s, row in enumerate(values):
            effects = self.randomizer.apply(self._models[s], row)
            mujoco.mj_setConst(self._models[s], self._scratch)
            latency[s] = int(math.floor(effects.action_latency_steps * self.profile.decimation + 0.5))
            object_latency[s] = int(math.floor(effects.object_latency_steps + 0.5))  # whole periods, as the task rounds
        self._latency, self._object_latency = latency, object_latency
        self.dynamics = values.copy()

    # --- rollouts ---------------------------------------------------------------------
    def rollout(self, episodes: Sequence[ReferenceEpisode], mode: str = "closed_loop",
                policy: BatchPolicy | None = None) -> list[np.ndarray]:
        """Per episode e: [S, T_e, :attr:`columns`] simulated rows (positions, velocities, with an
        object its x, y); NaN after a blow-up."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not self._models:
            raise ValueError("call set_dynamics() first")
        if not episodes:
            raise ValueError("no episodes given")
        closed = [e for e, ep in enumerate(episodes) if mode == "closed_loop" and not ep.replay]
        if closed and policy is None:
            raise ValueError("closed-loop rollouts need the policy")
        j = self.profile.num_joints
        for ep in episodes:
            if ep.num_joints != j:
                raise ValueError(f"{ep.name}: {ep.num_joints} joints, the profile has {j}")
        if self.object is not None:
            missing = [ep.name for ep in episodes if not ep.has_object]
            if missing:
                raise ValueError(f"task {self.task.name!r}: episode(s) {missing} hold no object poses; the "
                                 "simulated object starts where the recording saw it")
        if policy is not None and closed:
            if tuple(policy.manifest.joint_names) != tuple(self.profile.joint_names):
                raise ValueError(f"policy {policy.name} is for joints {list(policy.manifest.joint_names)}, "
                                 f"the profile has {list(self.profile.joint_names)}")
            signals = [sig.name for sig in ObservationBuilder(policy.manifest.observation.layout).task_signals]
            unknown = [name for name in signals if name not in TASK_SIGNALS]
            if unknown:
                raise ValueError(f"policy {policy.name}: batched closed-loop rollouts know the task signals "
                                 f"{list(TASK_SIGNALS)}, not {unknown}")
            if "object_pose" in signals and self.object is None:
                raise ValueError(f"policy {policy.name} observes an object: the simulator needs its task "
                                 "(BatchSimulator(..., task=...))")
        if not closed or len(closed) == len(episodes):
            return self._run(episodes, "closed_loop" if closed else "open_loop", policy)
        # closed loop with some episodes that only replay (ReferenceEpisode.replay: a scripted
        # identification strike no policy produced): one batch per mode, in the episodes' order
        replayed = [e for e in range(len(episodes)) if e not in closed]
        out: list = [None] * len(episodes)
        for group, group_mode in ((closed, "closed_loop"), (replayed, "open_loop")):
            for e, rows in zip(group, self._run([episodes[e] for e in group], group_mode, policy)):
                out[e] = rows
        return out

    def _run(self, episodes, mode, policy) -> list[np.ndarray]:
        p, s_count, e_count = self.profile, len(self._models), len(episodes)
        j, dec = p.num_joints, p.decimation
        batch = s_count * e_count  # row b = e * S + s
        steps = max(ep.steps for ep in episodes)
        lengths = np.repeat([ep.steps for ep in episodes], s_count)
        models = self._models * e_count
        lower, upper = p.position_lower_rad, p.position_upper_rad
        q0 = np.repeat(np.stack([ep.position[0] for ep in episodes]), s_count, axis=0)
        v0 = np.repeat(np.stack([ep.velocity[0] for ep in episodes]), s_count, axis=0)
        goals = np.repeat(np.stack([ep.goal for ep in episodes]), s_count, axis=0).astype(np.float32)
        state = np.zeros((batch, self._nstate))
        if self.object is not None:
            state[:, 1:1 + self.model.nq] = self.model.qpos0  # the object's free joint: a unit quaternion
            self.object.place(state, models, [ep.object_pose[0] for ep in episodes], s_count)
        state[:, self._q_idx] = clip(q0, lower, upper)
        state[:, self._v_idx] = v0
        start = state.copy()
        # ctrl at sub-step k of period t = the command issued at period t + offset[b, k]
        # (issued at sub-step dec * t, due dec * t + latency); history rows 0, 1 = initial pose.
        latency = np.tile(self._latency, e_count)
        offset = np.floor_divide(np.arange(dec)[None, :] - latency[:, None], dec)  # [B, dec], >= -2 ... 0
        lag = int(max(0, -offset.min()))
        history = np.empty((steps - 1 + lag, batch, j))
        history[:lag] = clip(q0, lower, upper)
        if mode == "open_loop":
            for e, ep in enumerate(episodes):
                cmd = clip(ep.command, lower, upper)
                rows = slice(e * s_count, (e + 1) * s_count)
                history[lag:lag + len(cmd), rows] = cmd[:, None, :]
                history[lag + len(cmd):, rows] = cmd[-1]
        obj = self.object
        out = np.full((batch, steps, self.columns), np.nan)
        out[:, 0, :j], out[:, 0, j:2 * j] = state[:, self._q_idx], state[:, self._v_idx]
        if obj is not None:
            out[:, 0, 2 * j:] = state[:, obj.xy]
        alive = np.ones(batch, dtype=bool)
        closed = mode == "closed_loop"
        if closed:
            m = policy.manifest
            action = m.action.build(m.default_pose_rad, lower, upper)
            builder = ObservationBuilder(m.observation.layout)
            last = np.full((batch, j), np.nan)  # each row's previous target (an end-effector action's state)
            prev_action = np.zeros((batch, m.action.size), np.float32)
            hidden = policy.initial_state(batch)
            obs = np.zeros((batch, builder.size), np.float32)
            tracked = None
            if obj is not None:  # the object's true (x, y, z, yaw) after each period; the tracker reads it late
                tracked = np.empty((steps, batch, 4))
                tracker_lag = np.tile(self._object_latency, e_count)
        control_full = np.zeros((batch, dec, self.model.nu))
        rows = np.arange(batch)[:, None]
        result = np.empty((batch, dec, self._nstate))
        timestep = float(self.model.opt.timestep)
        for t in range(steps - 1):
            q, v = state[:, self._q_idx], state[:, self._v_idx]
            if closed:
                values = {"target_pos": goals, "goal_pos": goals}
                if tracked is not None:
                    tracked[t] = obj.pose(state)
                    values["object_pose"] = obj.observation(tracked[np.maximum(t - tracker_lag, 0), np.arange(batch)])
                ee = action.observed_batch(q, last) if builder.has_ee else None
                builder.build(q, v, prev_action, [values[sig.name] for sig in builder.task_signals], out=obs, ee=ee)
                mean, hidden = policy.step(obs, hidden)
                a = clip(mean.astype(float), -1.0, 1.0)
                last = history[lag + t] = action.targets_batch(q, a, last)
                prev_action = a.astype(np.float32)
            control_full[:, :, self._act] = history[lag + t + offset, rows]
            due = state[:, 0] + dec * timestep
            self._pool.rollout(models, self._datas, state, control_full, nstep=dec, state=result,
                               skip_checks=True, chunk_size=max(1, batch // (self.threads * 4)))
            state = result[:, -1].copy()
            q, v = state[:, self._q_idx], state[:, self._v_idx]
            bad = ~(np.isfinite(q).all(axis=1) & (np.abs(v).max(axis=1) < BLOWUP_VELOCITY_RAD_S))
            # MuJoCo resets the data (time included) on a bad qpos/qvel/qacc warning instead of
            # leaving NaN; ArmSimulator counts those warnings, here the reset shows in the time.
            bad |= ~(np.abs(state[:, 0] - due) < 0.5 * timestep)
            if bad.any():  # a blow-up: NaN from here on, restart the row from its initial state
                alive &= ~bad
                state[bad] = start[bad]
            live = alive & (t + 1 < lengths)
            out[live, t + 1, :j], out[live, t + 1, j:2 * j] = q[live], v[live]
            if obj is not None:
                out[live, t + 1, 2 * j:] = state[np.ix_(np.flatnonzero(live), obj.xy)]
        return [out[e * s_count:(e + 1) * s_count, :ep.steps] for e, ep in enumerate(episodes)]


class _ObjectLayout:
    """Where the task's object lives in the models' FULLPHYSICS state, and how it is placed."""

    def __init__(self, model: mujoco.MjModel, task: Task):
        from sim_bridge.tasks.push import PUCK_GEOM, PUCK_JOINT  # noqa: PLC0415 - the one object scene shipped

        try:
            joint, self.geom = model.joint(PUCK_JOINT).id, model.geom(PUCK_GEOM).id
            self.table = model.geom(task.table_geom).id
        except (KeyError, AttributeError):
            raise ValueError(f"task {task.name!r}: batched rollouts know the Push scene's puck and table only; "
                             "this scene has no such object") from None
        adr = 1 + int(model.jnt_qposadr[joint])    # FULLPHYSICS: [time, qpos, ...]
        self.pos = adr + np.arange(3)
        self.quat = adr + 3 + np.arange(4)
        self.xy = self.pos[:2]

    def pose(self, state: np.ndarray) -> np.ndarray:
        """The object's true (x, y, z, yaw) per row [B, 4] (yaw as the Push task reads it)."""
        w, x, y, z = (state[:, i] for i in self.quat)
        out = np.empty((len(state), 4))
        out[:, :3] = state[:, self.pos]
        out[:, 3] = np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
        return out

    @staticmethod
    def observation(poses: np.ndarray) -> np.ndarray:
        """The tracker's ``object_pose`` signal [B, 5]: x, y, z, sin(yaw), cos(yaw)."""
        return np.concatenate((poses[:, :3], np.sin(poses[:, 3:]), np.cos(poses[:, 3:])), axis=1)

    def place(self, state: np.ndarray, models: Sequence[mujoco.MjModel], poses: Sequence[np.ndarray],
              samples: int) -> None:
        """Rows b = e * samples + s: object e's recorded (x, y, yaw), resting on model b's table."""
        for b, model in enumerate(models):
            x, y, yaw = poses[b // samples]
            top = model.geom_pos[self.table, 2] + model.geom_size[self.table, 2]  # table_height randomized
            state[b, self.pos] = (x, y, top + model.geom_size[self.geom, 1] + 1e-4)  # half height (puck_size)
            state[b, self.quat] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))


def naive_rollouts(profile: RobotProfile, spec: RandomizationSpec, values: np.ndarray,
                   episodes: Sequence[ReferenceEpisode], mode: str = "closed_loop",
                   policy_path: str | os.PathLike | None = None, task: str | Task | None = None) -> list[np.ndarray]:
    """The same rollouts as :class:`BatchSimulator`, one sample and one step at a time:
    an :class:`ArmSimulator` per sample and the batch-1 :class:`PolicyRuntime` (the speed
    baseline of ``sim2real bench calibrate``; the batched path is tested against it).
    ``values`` must hold zero observation/action noise (batched rollouts simulate none).
    ``task``: a scene with an object (Push): the object starts at each episode's first recorded
    pose, the policy sees its true pose ``object_latency`` periods late, rows end with its x, y."""
    values = np.atleast_2d(np.asarray(values, dtype=float))
    task = None if task is None else make_task(task)
    sim = ArmSimulator(profile, spec, scene=None if task is None else task.add_to_scene)
    obj = None if task is None else _ObjectLayout(sim.model, task)
    policy = PolicyRuntime(policy_path) if mode == "closed_loop" else None
    names = [] if policy is None else [sig.name for sig in ObservationBuilder(policy.manifest.observation.layout).task_signals]
    j = profile.num_joints
    columns = 2 * j + (2 if obj is not None else 0)
    out = [np.full((len(values), ep.steps, columns), np.nan) for ep in episodes]
    state = np.zeros((1, mujoco.mj_stateSize(sim.model, _FULLPHYSICS)))
    for e, ep in enumerate(episodes):
        for s, row in enumerate(values):
            sim.reset(dynamics=row, joint_pos=ep.position[0])
            sim.data.qvel[sim._dadr] = ep.velocity[0]
            if obj is not None:  # the object on this sample's table, at the recorded pose
                mujoco.mj_getState(sim.model, sim.data, state[0], _FULLPHYSICS)
                obj.place(state, [sim.model], [ep.object_pose[0]], 1)
                mujoco.mj_setState(sim.model, sim.data, state[0], _FULLPHYSICS)
                object_lag, seen = int(math.floor(sim.effects.object_latency_steps + 0.5)), []
            mujoco.mj_forward(sim.model, sim.data)
            drive = policy if policy is not None and not ep.replay else None  # replayed episodes: their commands
            if drive is not None:
                drive.reset()
            prev = np.zeros(drive.manifest.action.size if drive is not None else j)
            traj = out[e][s]

            def record(t):
                traj[t, :j], traj[t, j:2 * j] = sim.true_joint_positions(), sim.true_joint_velocities()
                if obj is not None:
                    mujoco.mj_getState(sim.model, sim.data, state[0], _FULLPHYSICS)
                    traj[t, 2 * j:] = state[0, obj.xy]

            record(0)
            for t in range(ep.steps - 1):
                q, v = sim.true_joint_positions(), sim.true_joint_velocities()
                if drive is not None:
                    signals = {"target_pos": ep.goal, "goal_pos": ep.goal}
                    if obj is not None:
                        mujoco.mj_getState(sim.model, sim.data, state[0], _FULLPHYSICS)
                        seen.append(obj.pose(state))
                        signals["object_pose"] = obj.observation(seen[max(0, t - object_lag)])[0]
                    a = np.clip(drive.act(q, v, prev, *(signals[name] for name in names)), -1.0, 1.0)
                    target = drive.joint_targets(a, q, profile.position_lower_rad, profile.position_upper_rad)
                    prev = a
                else:
                    target = ep.command[t]
                sim.command(target)
                if not sim.step():
                    break
                record(t + 1)
    return out
