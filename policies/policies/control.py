"""What the policy node does, without ROS: the control cycle, its guards, and policy swaps.

:class:`PolicyController` owns the active :class:`~policies.runtime.PolicyRuntime` and the
inputs of the next cycle (the latest joint state in the profile's joint order, the goal,
the previous action). The ROS node (:mod:`policies.node`) is a thin shell over it; tests
drive it directly. numpy + the runtime only.

Rules:

* **Policies come from one folder.** A policy is named by its artifact folder inside
  ``policy_dir``; paths (absolute, ``..``, separators) and symlinks that resolve outside
  the folder are refused. The runtime checks the artifact's seal (graph + manifest,
  :mod:`policies.manifest`). A loaded policy is validated against the robot profile: the
  robot it was trained for (manifest ``robot_profile`` = the profile's name), joint names
  equal and in order, action and observation sizes, the default pose inside the position
  limits, the action scale (``scale_rad``, the largest target offset one command can ask
  for, at most ``ACTION_STEP_MARGIN`` x the velocity limit x the trained control period,
  for every joint), and the control rate (a mismatch is refused unless
  ``allow_rate_mismatch``).
* **Warm-up.** ``WARMUP_STEPS`` runs on a zero observation (first runs are slow), then
  ``WARMUP_SAMPLES`` measured runs on representative observations, in one recurrent
  sequence: the profile's default pose at rest with a sampled goal, then random states
  within the position and velocity limits (seeded: the same for every load). A non-finite
  output refuses the policy, naming the input; so does a median inference time above
  ``WARMUP_MAX_PERIOD_FRACTION`` of the control period (the better of two measured rounds).
  The median, not the p99: of 20 runs the p99 is the slowest, and one preemption on a busy
  robot computer (10 ms, seen beside two busy loops) must not refuse a 0.2 ms policy at
  startup; a slow graph is slow in every run (the 90 ms test graph: median 74 ms). A tail
  above the limit is logged as a warning with the numbers; sustained overruns at runtime are
  the fall-back's job.
* **Swaps happen at a cycle boundary.** :meth:`swap` loads and validates in the calling
  thread (the node's parameter thread, never the control thread), each step right after a
  control cycle ended (:meth:`yield_to_control`, paced by :meth:`end_cycle`), then leaves
  the new policy *pending*; the next :meth:`cycle` installs it before it runs (a pointer
  switch and a zeroed state). Only one swap may be loading or pending at a time; a second
  is refused with the reason. The new policy starts cold (zero LSTM state, as at the start
  of every training episode); the previous action stays, as it is what was really
  commanded last. A runtime loaded before (or preloaded) from unchanged files is reused.
* **Joint states are mapped by name** (reordered and extra joints are fine). A message
  that lacks a profile joint, or holds NaN/inf for one, is rejected on arrival and the
  last good state is kept.
* **Staleness is judged by arrival time** (a monotonic clock read when the message
  arrives), not header stamps: the sim bridge stamps sim time, which runs slower or faster
  than the wall clock (lockstep, a loaded machine) and restarts with the process, and a
  real arm's computer has its own clock. What matters for safety is how long ago *this*
  process last heard from the arm. A cycle more than ``stale_after_periods`` control
  periods after the last state publishes nothing (the bridge keeps its last command).
* **Hold.** When the policy output (or its observation) is non-finite, the cycle
  commands the measured joint positions latched at the first held cycle (re-targeting the
  live measurement every cycle would let a gravity-loaded arm creep down), and feeds back
  a zero action. The recurrent state is not advanced (the runtime guarantees it). The
  first good output ends the hold.
* **Faults and fall-back.** The policy a swap replaced stays loaded (warm) as the
  *previous* policy. A non-finite output in the first ``PROBATION_CYCLES`` cycles after
  a swap reverts to the previous policy at once (in the same cycle); later,
  ``FAULT_LIMIT`` consecutive non-finite outputs do. ``FAULT_LIMIT`` consecutive overruns
  spanning at least ``OVERRUN_FAULT_S`` fall back to the previous policy, or, without one, disable the policy: every cycle then
  holds (the latched measured positions) until another policy is swapped in. A fall-back
  or disable sets :attr:`PolicyController.fault` (the reason; cleared by the next swap) and
  is reported once in :attr:`CycleResult.fault`. Without a previous policy, non-finite
  outputs hold as above, and the hold ends with the first finite output.
* **Timing.** In periodic (timer) mode a cycle that starts more than 1.5 periods after the
  previous one counts the skipped periods as missed (``round(gap / period) - 1``; timer
  jitter below half a period is not a miss); a cycle whose work takes longer than a period
  is an overrun. Inference time and loop latency (state arrival -> command ready) are kept
  in sliding windows with p50/p99, per policy (cleared at a swap).
"""
from __future__ import annotations

import os
import stat
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from policies.manifest import MANIFEST_FILE
from policies.runtime import NonFiniteObservationError, NonFiniteOutputError, PolicyRuntime
from sim_bridge.actions import JOINT_DELTA
from sim_bridge.joints import JointMapper
from sim_bridge.observations import clip, layout_size
from sim_bridge.tasks import DEFAULT_TASK, Task, get_task, task_from_record
from sim_bridge.profile import RobotProfile
from sim_bridge.rates import RateMeter

WAITING, COMMAND, HOLD, STALE = "waiting", "command", "hold", "stale"
WARMUP_STEPS = 10                 # unmeasured runs on a zero observation (first runs are slow)
WARMUP_SAMPLES = 20               # measured runs on representative observations
WARMUP_MAX_PERIOD_FRACTION = 0.5  # warm-up median inference time must stay below this share of the period
WARMUP_SEED = 0
ACTION_STEP_MARGIN = 2.0  # scale_rad <= this x velocity limit x trained period (rad), every joint
# (the action is a target offset from the measured position that a PD-tracked arm lags: the
# shipped policies use 0.05 rad at 50 Hz, 1.15x what 2.175 rad/s covers in 20 ms)
FAULT_LIMIT = 5         # consecutive overruns or non-finite outputs -> fall back (or disable)
OVERRUN_FAULT_S = 0.1   # ... overruns also spanning at least this long (s): at 500 Hz, 5 cycles
                        # are 10 ms, which one preemption on a busy machine can cover
PROBATION_CYCLES = 50   # after a swap: one non-finite output reverts to the previous policy


class PolicyRejected(ValueError):
    """A policy, a swap, a joint state or a goal was refused; the message says why."""


@dataclass(frozen=True)
class LoadedPolicy:
    """A validated, warmed-up policy, ready to be installed."""

    name: str
    path: Path
    runtime: PolicyRuntime
    load_s: float
    warnings: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        return self.runtime.manifest.onnx_sha256

    @property
    def short_sha(self) -> str:
        return self.sha256[:12]


@dataclass(frozen=True)
class CycleResult:
    """``command`` is what to publish (profile joint order, rad), or None for nothing."""

    status: str                  # waiting | command | hold | stale
    command: np.ndarray | None = None
    reason: str = ""
    swapped_to: str | None = None  # name of the policy installed at this cycle's boundary
    fault: str = ""                # set on the cycle that fell back or disabled the policy: why


@dataclass
class ControlCounters:
    cycles: int = 0
    commands: int = 0
    missed_cycles: int = 0
    overruns: int = 0
    stale_cycles: int = 0
    swaps: int = 0
    fallbacks: int = 0   # fall-backs to the previous policy, or disables without one
    holds: Counter = field(default_factory=Counter)        # by reason kind
    rejections: Counter = field(default_factory=Counter)   # joint_state | goal | policy
    last_rejection: str = ""
    last_hold: str = ""


class LatencyWindow:
    """The last ``size`` durations (s), with percentiles."""

    def __init__(self, size: int = 500):
        self._values: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self._values.append(seconds)

    def clear(self) -> None:
        self._values.clear()

    def __len__(self) -> int:
        return len(self._values)

    def percentile(self, q: float) -> float:
        return float(np.percentile(np.fromiter(self._values, float), q)) if self._values else float("nan")

    def p50(self) -> float:
        return self.percentile(50)

    def p99(self) -> float:
        return self.percentile(99)


# --- the policy folder ----------------------------------------------------------------

def _inside(path: Path, root: Path) -> bool:
    real = path.resolve()
    return real != root and real.is_relative_to(root)


def _listed(root: Path, path: Path) -> Path | None:
    """The resolved artifact folder if ``path`` (an entry of ``root``) is a policy that
    :func:`list_policies` lists, else None. Touches only this entry: a swap checks its name
    without scanning the folder (every file-system call in the parameter thread is GIL time
    the control thread may be waiting for)."""
    if path.name.startswith((".", "_")) or not path.is_dir():
        return None
    real = path.resolve()
    if real == root or not real.is_relative_to(root):
        return None
    manifest = real / MANIFEST_FILE
    if not manifest.is_file() or (manifest.is_symlink() and not _inside(manifest, root)):
        return None
    return real


def list_policies(policy_dir: str | os.PathLike) -> list[str]:
    """Names of the artifact folders (with a manifest.json) that resolve inside ``policy_dir``."""
    root = Path(policy_dir).resolve()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if _listed(root, p) is not None)


def resolve_policy(policy_dir: str | os.PathLike, name: str) -> Path:
    """The artifact folder of policy ``name``; PolicyRejected for anything but a listed name."""
    root = Path(policy_dir).resolve()
    if not isinstance(name, str) or not name.strip():
        raise PolicyRejected("the policy name is empty")
    if os.path.isabs(name) or "/" in name or "\\" in name or name in (".", ".."):
        raise PolicyRejected(f"'{name}' is a path; give the name of an artifact folder inside "
                             f"policy_dir ({root}), paths are refused")
    path = root / name
    if (path.exists() or path.is_symlink()) and not _inside(path, root):
        raise PolicyRejected(f"'{name}' resolves outside policy_dir ({root}); refused")
    real = _listed(root, path)
    if real is None:
        manifest = path / MANIFEST_FILE
        if path.is_dir() and manifest.is_symlink():
            target = os.readlink(manifest)
            if not manifest.exists():
                raise PolicyRejected(f"'{name}/{MANIFEST_FILE}' is a symlink to {target}, which does not exist")
            if not _inside(manifest, root):
                raise PolicyRejected(f"'{name}/{MANIFEST_FILE}' is a symlink to {target}, which resolves outside "
                                     f"policy_dir ({root}); refused")
        if path.is_dir():
            raise PolicyRejected(f"'{name}' in {root} is not a policy artifact (no {MANIFEST_FILE})")
        raise PolicyRejected(f"no policy '{name}' in {root}; available: {list_policies(root)}")
    for file in real.iterdir():  # the runtime reads files next to the manifest
        if file.is_symlink() and not _inside(file, root):
            raise PolicyRejected(f"'{name}/{file.name}' resolves outside policy_dir ({root}); refused")
    return real


def goal_signal_of(task: Task) -> str:
    """The task signal the ``current_goal`` topic feeds (Reach: target_pos), else its first."""
    return next((i.signal for i in task.inputs if i.topic == "current_goal"), task.signals()[0].name)


def warmup_inputs(profile: RobotProfile, task: Task, rng: np.random.Generator, count: int,
                  action_size: int | None = None) -> list[tuple]:
    """``count`` representative (label, (joint_pos, joint_vel, prev_action, task_values)) for
    a warm-up: the default pose at rest with a sampled goal, then random joint positions,
    velocities (rad, rad/s, within the profile's limits), previous actions in [-1, 1] and
    sampled goals. Task signals other than the goal are zero. ``action_size``: of the previous
    action (default one per joint)."""
    n, goal_name = profile.num_joints, goal_signal_of(task)
    k = n if action_size is None else int(action_size)

    def task_values():
        return tuple(task.sample_goal(rng, profile) if sig.name == goal_name else np.zeros(sig.size)
                     for sig in task.signals())

    out = [("the default pose at rest with a sampled goal",
            (profile.default_pose_rad.copy(), np.zeros(n), np.zeros(k), task_values()))]
    for i in range(1, count):
        q = rng.uniform(profile.position_lower_rad, profile.position_upper_rad)
        qd = rng.uniform(-profile.velocity_limit_rad_s, profile.velocity_limit_rad_s)
        out.append((f"random state {i} of {count - 1} within the profile's limits",
                    (q, qd, rng.uniform(-1.0, 1.0, k), task_values())))
    return out


def _files_key(path: Path) -> tuple:
    """What identifies an artifact's files: name, size and modification time of each."""
    key = []
    for f in sorted(path.iterdir()):
        try:
            st = f.stat()
        except OSError:  # e.g. a dangling symlink: not a file of the artifact
            continue
        if stat.S_ISREG(st.st_mode):
            key.append((f.name, st.st_size, st.st_mtime_ns))
    return tuple(key)


# --- the controller -------------------------------------------------------------------

class PolicyController:
    """The active policy, its inputs, and the cycle rules (see the module docstring).

    Thread safety: :meth:`on_joint_state` and :meth:`set_goal` only take a short lock to
    store their input, so states keep arriving while a (slow) cycle runs; :meth:`cycle`,
    :meth:`reset` and installing a policy share the run lock (held for a whole cycle);
    :meth:`swap` loads without either, so the control loop keeps running while a policy loads.
    """

    def __init__(self, profile: RobotProfile, policy_dir: str | os.PathLike, *,
                 control_rate_hz: float | None = None, stale_after_periods: int = 5,
                 allow_rate_mismatch: bool = False, periodic: bool = True, window: int = 500,
                 clock=time.monotonic, task_input_stale_s: float = 0.25, sample_seed: int | None = None):
        """``sample_seed``: load every policy sampling its trained Gaussian from a generator seeded
        with it (:class:`~policies.runtime.PolicyRuntime`); None: the deterministic mean."""
        self.profile = profile
        self.sample_seed = None if sample_seed is None else int(sample_seed)
        self.policy_dir = Path(policy_dir).resolve()
        self.control_rate_hz = float(control_rate_hz) if control_rate_hz else None  # None: the first policy's
        self.stale_after_periods = int(stale_after_periods)
        # a streamed task input (not latched: Push's object_pose) older than this -> hold
        self.task_input_stale_s = float(task_input_stale_s)
        self.allow_rate_mismatch = bool(allow_rate_mismatch)
        self.periodic = periodic
        self.counters = ControlCounters()
        self.inference = LatencyWindow(window)     # runtime.act, s
        self.loop_latency = LatencyWindow(window)  # state arrival -> command ready, s
        self._clock = clock
        self._cycle_starts = RateMeter(max(10, window // 5))  # cycle start times: achieved_rate_hz
        self._run_lock = threading.Lock()     # the runtime, prev_action, hold: held for a whole cycle
        self._inputs_lock = threading.Lock()  # the latest state and goal: held only to copy them
        self._swap_lock = threading.Lock()    # the loading / pending slot
        self._loading: str | None = None
        self._pending: LoadedPolicy | None = None
        # Validated, warmed-up runtimes by artifact folder, reused while the files are unchanged:
        # creating an onnxruntime session holds the GIL for milliseconds, which stalls a 500 Hz
        # control thread; a swap to a policy loaded before (or preloaded) creates none.
        self._runtimes: dict[Path, tuple[tuple, PolicyRuntime]] = {}
        # End of the last control cycle (see end_cycle): loads do their work right after it.
        self._cycle_end = threading.Condition(threading.Lock())
        self._cycles_ended = 0
        self._last_cycle_end_s: float | None = None
        self._timed_out_at = -1  # _cycles_ended when a wait last timed out
        self.active: LoadedPolicy | None = None
        self.previous: LoadedPolicy | None = None  # what the last swap replaced: the fall-back
        self.last_swap_cycle = 0  # the cycle that installed the last swapped-in policy
        self.fault = ""           # why the last fall-back / disable happened ('' none since the last swap)
        self.disabled = False     # the active policy overran with nothing to fall back to: hold
        self._overrun_run = 0     # consecutive overrunning cycles of the active policy
        self._overrun_since = 0.0  # start of the first of them (s, the cycle clock)
        self._non_finite_run = 0  # consecutive non-finite outputs of the active policy
        self._new_fault = ""      # a fault to report in this cycle's result
        self._probation_end = 0   # the last cycle of the current policy's probation after a swap
        n = profile.num_joints
        self._joints = JointMapper.for_profile(profile)  # JointState names -> profile order
        self.q: np.ndarray | None = None        # last good joint state, profile order
        self.qd: np.ndarray | None = None
        self.state_arrival_s: float | None = None
        # The task's observation signals, fed by its ROS inputs (Reach: target_pos <- current_goal).
        # The first policy installed fixes the task (its inputs are the node's subscriptions).
        self._task_fixed = False
        self._set_task(get_task(DEFAULT_TASK)())
        self.task_values: dict[str, np.ndarray] = {}
        self.task_arrival_s: dict[str, float] = {}  # when each task input last arrived (the cycle clock)
        self.prev_action = np.zeros(n)
        self.hold_target: np.ndarray | None = None  # latched while holding
        self.stale = False

    # --- loading and swapping -----------------------------------------------------------
    @property
    def period_s(self) -> float:
        return 1.0 / (self.control_rate_hz or self.profile.control_rate_hz)

    @property
    def active_name(self) -> str:
        return self.active.name if self.active is not None else ""

    @property
    def holding(self) -> bool:
        return self.hold_target is not None

    @property
    def non_finite_run(self) -> int:
        """Consecutive cycles in which the active policy's output was not finite."""
        return self._non_finite_run

    def available_policies(self) -> list[str]:
        return list_policies(self.policy_dir)

    def load_policy(self, name: str, *, allow_rate_mismatch: bool | None = None) -> LoadedPolicy:
        """Resolve, load, validate and warm up ``name``; PolicyRejected says why not.

        ``allow_rate_mismatch`` overrides the controller's setting for this load. While a
        control loop runs, each step (name check, manifest, hash, session, probe, validation,
        warm-up) waits for the end of a control cycle first (:meth:`yield_to_control`), so the
        GIL it holds falls in the idle part of a period. A runtime loaded before from unchanged
        files is reused without a new session or warm-up (it passed both already).
        """
        start = time.perf_counter()
        allow = self.allow_rate_mismatch if allow_rate_mismatch is None else allow_rate_mismatch
        try:
            self.yield_to_control()
            path = resolve_policy(self.policy_dir, name)
            key = _files_key(path)
            runtime = self._cached_runtime(path, key)
            if runtime is None:
                self.yield_to_control()
                runtime = PolicyRuntime(path, pause=self.yield_to_control, sample_seed=self.sample_seed)
                warnings = self._validate(runtime, allow)
                self.yield_to_control()
                runtime.warmup(WARMUP_STEPS)
                warnings += self._warm_up(runtime)
                self._runtimes[path] = (key, runtime)
            else:
                warnings = self._validate(runtime, allow)
        except PolicyRejected as exc:
            raise self._reject("policy", f"policy '{name}' rejected: {exc}") from None
        except (NonFiniteOutputError, NonFiniteObservationError) as exc:
            raise self._reject("policy", f"policy '{name}' rejected: outputs non-finite values on a zero "
                                         f"observation during warm-up ({exc})") from None
        except Exception as exc:  # noqa: BLE001 - PolicyLoadError, and anything a broken file may raise
            raise self._reject("policy", f"policy '{name}' rejected: {exc}") from None
        return LoadedPolicy(name, path, runtime, time.perf_counter() - start, tuple(warnings))

    def _policy_period_s(self, runtime: PolicyRuntime) -> float:
        """The period the policy will run at: the node's, or (first policy) its own."""
        return 1.0 / (self.control_rate_hz or runtime.manifest.control_rate_hz)

    def _warm_up(self, runtime: PolicyRuntime) -> list[str]:
        """Measured runs on representative observations (see the module docstring); PolicyRejected
        for a non-finite output or a median inference time the control period cannot carry; returns
        a warning when only the slowest runs exceed it."""
        inputs = warmup_inputs(self.profile, task_from_record(runtime.manifest.task),
                               np.random.default_rng(WARMUP_SEED), WARMUP_SAMPLES, runtime.manifest.action.size)
        period = self._policy_period_s(runtime)
        limit = WARMUP_MAX_PERIOD_FRACTION * period
        rounds = []
        for _ in range(2):
            runtime.reset()
            times = []
            for i, (label, (q, qd, prev, task_values)) in enumerate(inputs):
                if i % 5 == 0:
                    self.yield_to_control()  # the GIL the steps hold falls in the idle part of a period
                start = time.perf_counter()
                try:
                    runtime.act(q, qd, prev, *task_values)
                except NonFiniteOutputError:
                    runtime.reset()
                    raise PolicyRejected(f"outputs non-finite values during warm-up on {label} "
                                         f"(joint_pos {np.round(q, 3).tolist()} rad)") from None
                times.append(time.perf_counter() - start)
            rounds.append((float(np.percentile(times, 50)), float(np.percentile(times, 99))))
            if rounds[-1][0] <= limit:  # fast enough: no second round
                break
        runtime.reset()
        p50, p99 = min(rounds)
        timing = (f"warm-up inference median {1e3 * p50:.1f} ms (p99 {1e3 * p99:.1f} ms, {len(inputs)} runs, "
                  f"{'the better of 2 rounds' if len(rounds) == 2 else 'one round'})")
        if p50 > limit:
            raise PolicyRejected(
                f"too slow for {1.0 / period:g} Hz: {timing} exceeds {WARMUP_MAX_PERIOD_FRACTION:.0%} "
                f"of the {1e3 * period:.1f} ms control period ({1e3 * limit:.1f} ms)")
        if p99 > limit:  # a warning the node logs with the load line
            return [f"{timing}: the slowest runs exceed {WARMUP_MAX_PERIOD_FRACTION:.0%} of the "
                    f"{1e3 * period:.1f} ms period (a busy machine, or a policy near its limit)"]
        return []

    def _cached_runtime(self, path: Path, key: tuple) -> PolicyRuntime | None:
        """The runtime loaded (validated and warmed up) before from the same files, unless it
        is the active one (its state belongs to the control thread); None: load anew."""
        cached = self._runtimes.get(path)
        active = self.active.runtime if self.active is not None else None
        if cached is not None and cached[0] == key and cached[1] is not active:
            return cached[1]
        return None

    def end_cycle(self) -> None:
        """Mark the end of a control cycle's work (the node calls it once the command is
        published). A load in another thread waits for this before each of its steps."""
        with self._cycle_end:
            self._cycles_ended += 1
            self._last_cycle_end_s = self._clock()
            self._cycle_end.notify_all()

    @property
    def cycles_ended(self) -> int:
        """How many times :meth:`end_cycle` was called."""
        return self._cycles_ended

    def yield_to_control(self) -> bool:
        """Wait for the end of the next control cycle, if a control loop runs; True once one
        ended, False at once when no loop runs, or after the timeout below.

        Python threads share one GIL: whatever a loading thread runs (file checks, manifest
        parsing, session creation, warm-up) holds it, and a control thread that wakes up
        meanwhile waits, up to the interpreter's 5 ms switch interval, and longer when the
        loader keeps dropping and re-taking the GIL in short system calls. Starting each step
        just after a cycle ended puts it in the idle part of the period instead. A loop counts
        as running if a cycle ended within the last 3 periods and none of these waits has
        timed out since; a wait ends after 2 periods at most. So a loop that stalls or stops
        (or that the calling thread itself would have to run: a single-threaded executor)
        delays a load by 2 periods once, not at every step.
        """
        with self._cycle_end:
            last, seen = self._last_cycle_end_s, self._cycles_ended
            if last is None or seen == self._timed_out_at or self._clock() - last > 3 * self.period_s:
                return False
            if self._cycle_end.wait_for(lambda: self._cycles_ended != seen, timeout=2 * self.period_s):
                return True
            self._timed_out_at = seen
            return False

    def preload(self, names) -> list[str]:
        """Load (and cache) policies ahead of swaps; returns the reasons of those refused."""
        refused = []
        for name in names:
            try:
                self.load_policy(name)
            except PolicyRejected as exc:
                refused.append(str(exc))
        return refused

    def _validate(self, runtime: PolicyRuntime, allow_rate_mismatch: bool) -> list[str]:
        m, p = runtime.manifest, self.profile
        if m.robot_profile != p.name:
            raise PolicyRejected(f"trained for robot '{m.robot_profile}'; this node runs robot profile '{p.name}'")
        if tuple(m.joint_names) != tuple(p.joint_names):
            if sorted(m.joint_names) == sorted(p.joint_names):
                why = f"same joints in another order: {list(m.joint_names)}"
            else:
                missing = [j for j in p.joint_names if j not in m.joint_names]
                extra = [j for j in m.joint_names if j not in p.joint_names]
                why = f"missing {missing}, unknown {extra}"
            raise PolicyRejected(f"trained for joints {list(m.joint_names)}, robot profile '{p.name}' has "
                                 f"{list(p.joint_names)} ({why})")
        if m.action.type == JOINT_DELTA and m.action.size != p.num_joints:
            raise PolicyRejected(f"action size {m.action.size}, the profile has {p.num_joints} joints")
        if self._task_fixed and m.task_name != self.task.name:
            raise PolicyRejected(f"trained for task '{m.task_name}'; this node runs task '{self.task.name}' "
                                 "(its inputs are fixed when the node is configured)")
        expected = layout_size(task_from_record(m.task).observation_layout(p.num_joints, m.action))
        if m.observation.size != expected:
            raise PolicyRejected(f"observation size {m.observation.size}, expected {expected} for task "
                                 f"'{m.task_name}' and {p.num_joints} joints")
        pose = np.asarray(m.default_pose_rad)
        outside = np.flatnonzero((pose < p.position_lower_rad) | (pose > p.position_upper_rad))
        if outside.size:
            raise PolicyRejected("default_pose_rad outside the profile's position limits: " + ", ".join(
                f"{p.joint_names[i]} {pose[i]:g} rad not in [{p.position_lower_rad[i]:g}, {p.position_upper_rad[i]:g}]"
                for i in outside))
        warnings = []
        if self.control_rate_hz is not None and abs(m.control_rate_hz - self.control_rate_hz) > 1e-6:
            text = f"trained at {m.control_rate_hz:g} Hz, the node runs at {self.control_rate_hz:g} Hz"
            if not allow_rate_mismatch:
                raise PolicyRejected(f"{text} (set allow_rate_mismatch to run it anyway)")
            warnings.append(f"{text} (allowed by allow_rate_mismatch)")
        trained_period = 1.0 / m.control_rate_hz
        max_step = ACTION_STEP_MARGIN * p.velocity_limit_rad_s * trained_period
        step = m.action.max_joint_step_rad
        if step > max_step.min():
            i = int(np.argmin(max_step))
            field = "scale_rad" if m.action.type == JOINT_DELTA else "max_joint_step_rad"
            raise PolicyRejected(
                f"action.{field} {step:g} rad per command is more than {ACTION_STEP_MARGIN:g} x "
                f"{p.joint_names[i]}'s velocity limit {p.velocity_limit_rad_s[i]:g} rad/s x the "
                f"{1e3 * trained_period:g} ms control period = {max_step[i]:.4g} rad")
        return warnings

    def set_policy(self, loaded: LoadedPolicy) -> None:
        """Install ``loaded`` now (no control loop running: configure, or while inactive).

        The first policy fixes the control rate if none was given.
        """
        with self._run_lock:
            if self.control_rate_hz is None:
                self.control_rate_hz = loaded.runtime.manifest.control_rate_hz
            if not self._task_fixed:
                self._set_task(task_from_record(loaded.runtime.manifest.task))
                self._task_fixed = True
            self._install(loaded)
            self.previous = None

    def swap(self, name: str, *, allow_rate_mismatch: bool | None = None) -> LoadedPolicy:
        """Load ``name`` in the calling thread and make it pending (the next cycle installs it)."""
        with self._swap_lock:
            busy = self._busy()
            if busy:
                raise self._reject("policy", f"policy '{name}' rejected: {busy}")
            self._loading = name
        try:
            loaded = self.load_policy(name, allow_rate_mismatch=allow_rate_mismatch)
        except BaseException:
            with self._swap_lock:
                self._loading = None
            raise
        with self._swap_lock:
            self._loading = None
            self._pending = loaded
        return loaded

    def request_swap(self, loaded: LoadedPolicy) -> None:
        """Make an already loaded policy pending; refused while another swap loads or is pending."""
        with self._swap_lock:
            busy = self._busy()
            if busy:
                raise self._reject("policy", f"policy '{loaded.name}' rejected: {busy}")
            self._pending = loaded

    def _busy(self) -> str:
        if self._loading is not None:
            return f"another swap is in progress (policy '{self._loading}' is loading)"
        if self._pending is not None:
            return f"another swap is in progress (policy '{self._pending.name}' takes control at the next cycle)"
        return ""

    @property
    def pending_name(self) -> str:
        pending = self._pending
        return pending.name if pending is not None else ""

    @property
    def loading_name(self) -> str:
        return self._loading or ""

    def apply_pending_swap(self) -> str | None:
        """Install the pending policy now, if any (the node calls this while inactive)."""
        with self._run_lock:
            return self._apply_pending()

    def _apply_pending(self) -> str | None:
        with self._swap_lock:
            loaded, self._pending = self._pending, None
        if loaded is None:
            return None
        if self.active is not None and self.active.runtime is not loaded.runtime:
            self.previous = self.active  # kept loaded: the fall-back if the new one fails
        self._install(loaded)
        self.counters.swaps += 1
        self.fault = ""
        self._probation_end = self.counters.cycles + PROBATION_CYCLES
        return loaded.name

    def _install(self, loaded: LoadedPolicy) -> None:
        loaded.runtime.reset()  # cold start: zero LSTM state
        if self.prev_action.shape != (loaded.runtime.manifest.action.size,):  # another action type
            self.prev_action = np.zeros(loaded.runtime.manifest.action.size)
        self.active = loaded
        self.hold_target = None
        self.disabled = False
        self._overrun_run = self._non_finite_run = 0
        self._probation_end = 0
        self.inference.clear()  # timing statistics are per policy
        self.loop_latency.clear()

    def _fall_back(self, why: str, q: np.ndarray) -> None:
        """The active policy failed (``why``): install the previous policy, or disable the
        active one (every cycle holds) when there is none. Called with the run lock held."""
        failed, previous = self.active, self.previous
        self.counters.fallbacks += 1
        if previous is not None:
            self.previous = None  # no ping-pong: the failed policy is not a fall-back
            self._install(previous)
            self.fault = (f"policy '{failed.name}' {why}; fell back to the previous policy '{previous.name}' "
                          "(zero recurrent state); set the policy parameter to swap in another")
        else:
            self.disabled = True
            self.hold_target = clip(q, self.profile.position_lower_rad, self.profile.position_upper_rad)
            self.fault = (f"policy '{failed.name}' {why}; no previous policy to fall back to: holding the "
                          "measured joint positions until another policy is swapped in")
        self._new_fault = self.fault

    # --- inputs -------------------------------------------------------------------------
    def on_joint_state(self, names, position, velocity, arrival_s: float) -> tuple[bool, str]:
        """Map a JointState by name into profile order; (accepted, reason)."""
        m = self._joints.lookup(names)
        n_pos, n_vel = len(position), len(velocity)
        reason = ""
        if not m.complete:
            reason = m.missing_reason()
        elif n_pos != len(m.names) or n_vel != len(m.names):
            reason = f"has {len(m.names)} names but {n_pos} positions and {n_vel} velocities"
        else:
            q = m.take(position, "positions")
            qd = m.take(velocity, "velocities")
            bad = np.flatnonzero(~(np.isfinite(q) & np.isfinite(qd)))
            if bad.size:
                reason = f"non-finite position/velocity for joint(s) {[self.profile.joint_names[i] for i in bad]}"
        if reason:
            self._reject("joint_state", f"joint_states rejected: {reason}; kept the last good state")
            return False, self.counters.last_rejection
        with self._inputs_lock:
            self.q, self.qd, self.state_arrival_s = q, qd, arrival_s
        return True, ""

    def _set_task(self, task: Task) -> None:
        self.task = task
        #: (name, size) of the task's observation signals, in layout order
        self.task_signals: tuple[tuple[str, int], ...] = tuple((sig.name, sig.size) for sig in task.signals())
        self._task_signal_names = tuple(name for name, _ in self.task_signals)
        self._streamed_signals = tuple(i.signal for i in task.inputs if not i.latched)

    def _input_topic(self, signal: str) -> str:
        return next((i.topic for i in self.task.inputs if i.signal == signal), signal)

    def set_task_input(self, signal: str, values) -> tuple[bool, str]:
        """The latest value of a task signal (from its ROS input); refused (old value kept) when
        it has the wrong size or is not finite. Counted as a rejected goal."""
        sizes = dict(self.task_signals)
        value = np.asarray(values, dtype=float)
        if signal not in sizes:
            self._reject("goal", f"{signal} rejected: task '{self.task.name}' has no such input "
                                 f"(inputs: {list(sizes)})")
            return False, self.counters.last_rejection
        if value.shape != (sizes[signal],) or not np.isfinite(value).all():
            old = self.task_values.get(signal)
            self._reject("goal", f"{self._input_topic(signal)} rejected: expected {sizes[signal]} finite numbers "
                                 f"for {signal}, got {value.tolist()}; kept {None if old is None else old.tolist()}")
            return False, self.counters.last_rejection
        with self._inputs_lock:
            self.task_values[signal] = value
            self.task_arrival_s[signal] = self._clock()
        return True, ""

    @property
    def goal_signal(self) -> str:
        """The task signal the ``current_goal`` topic feeds (Reach: target_pos)."""
        return goal_signal_of(self.task)

    def set_goal(self, xyz) -> tuple[bool, str]:
        """The goal from ``current_goal`` (:meth:`set_task_input` of :attr:`goal_signal`)."""
        return self.set_task_input(self.goal_signal, xyz)

    @property
    def goal(self) -> np.ndarray | None:
        return self.task_values.get(self.goal_signal)

    def reset(self) -> None:
        """Zero the recurrent state and the previous action; end a hold."""
        with self._run_lock:
            if self.active is not None:
                self.active.runtime.reset()
            self.prev_action = np.zeros_like(self.prev_action)
            self.hold_target = None

    def attribution(self) -> dict[str, float] | None:
        """Occlusion attribution of the active policy's action now, per observation signal (see
        :meth:`PolicyRuntime.occlusion`), against the mean of the observations seen at earlier
        calls (the first ~20 calls average them, then an exponential mean with a 20-call time
        constant). Runs outside the control cycle (a copy of the inputs and of the recurrent
        state; the runtime's own state is not advanced); None until a policy has every input."""
        active = self.active
        with self._inputs_lock:
            q, qd = self.q, self.qd
            values = tuple(self.task_values.get(n) for n in self._task_signal_names)
        if active is None or q is None or any(v is None for v in values):
            return None
        runtime = active.runtime
        obs = runtime.observation(q, qd, self.prev_action.copy(), *values)
        if not np.isfinite(obs).all():
            return None
        mean = getattr(self, "_attribution_mean", None)
        count = getattr(self, "_attribution_count", 0) + 1
        if mean is None or mean.shape != obs.shape:
            mean, count = obs.astype(np.float64), 1
        else:
            mean += (obs - mean) / min(count, 20)
        self._attribution_mean, self._attribution_count = mean, count
        return runtime.occlusion(obs, mean, runtime.state)

    def wait_idle(self) -> None:
        """Return once no cycle is running (a cycle in progress finishes first)."""
        with self._run_lock:
            pass

    # --- the cycle ----------------------------------------------------------------------
    def cycle(self, now_s: float) -> CycleResult:
        """One control cycle starting at ``now_s`` (same monotonic clock as the arrivals)."""
        with self._run_lock:
            swapped = self._apply_pending()
            self._count_timing(now_s)
            if swapped:
                self.last_swap_cycle = self.counters.cycles
            with self._inputs_lock:
                values = self.task_values
                inputs = self.q, self.qd, self.state_arrival_s, tuple(values.get(n) for n in self._task_signal_names)
            ran = self.active is not None and not self.disabled
            result = self._decide(now_s, *inputs)
            if result.status in (COMMAND, HOLD):
                self.counters.commands += 1
                elapsed = self._clock() - now_s
                if elapsed > self.period_s:
                    self.counters.overruns += 1
                    self._overrun_run += 1
                    if self._overrun_run == 1:
                        self._overrun_since = now_s
                    span = now_s + elapsed - self._overrun_since
                    if (ran and not self.disabled and self._overrun_run >= FAULT_LIMIT
                            and span >= OVERRUN_FAULT_S):
                        self._fall_back(f"overran the {1e3 * self.period_s:g} ms control period in "
                                        f"{self._overrun_run} consecutive cycles over {1e3 * span:.0f} ms "
                                        f"(last cycle {1e3 * elapsed:.1f} ms)", inputs[0])
                else:
                    self._overrun_run = 0
            fault, self._new_fault = self._new_fault, ""
        if swapped or fault:
            result = CycleResult(result.status, result.command, result.reason, swapped, fault)
        return result

    def _count_timing(self, now_s: float) -> None:
        c = self.counters
        c.cycles += 1
        last = self._cycle_starts.last_s
        if self.periodic and last is not None:
            gap = now_s - last
            if gap > 1.5 * self.period_s:
                c.missed_cycles += int(round(gap / self.period_s)) - 1
        self._cycle_starts.tick(now_s)

    def _decide(self, now_s: float, q, qd, arrival_s, task_values) -> CycleResult:
        if self.active is None:
            return CycleResult(WAITING, reason="no policy loaded")
        if q is None or any(v is None for v in task_values):
            waiting = (["joint_states"] if q is None else []) + [
                self._input_topic(name) for (name, _), v in zip(self.task_signals, task_values) if v is None]
            return CycleResult(WAITING, reason=f"waiting for {' and '.join(waiting)}")
        age = now_s - arrival_s
        limit = self.stale_after_periods * self.period_s
        if age > limit:
            self.stale = True
            self.counters.stale_cycles += 1
            return CycleResult(STALE, reason=f"joint state is stale: last one arrived {1e3 * age:.0f} ms ago "
                                             f"(limit {self.stale_after_periods} periods = {1e3 * limit:.0f} ms); "
                                             "no command sent")
        self.stale = False
        for name in self._streamed_signals:  # e.g. the object pose: a tracker that stopped -> hold
            age = now_s - self.task_arrival_s.get(name, now_s)
            if age > self.task_input_stale_s:
                return self._hold("stale_task_input", f"{self._input_topic(name)} is stale: the last one arrived "
                                  f"{1e3 * age:.0f} ms ago (limit task_input_stale_s = "
                                  f"{1e3 * self.task_input_stale_s:.0f} ms)", q)
        if self.disabled:
            return self._hold("policy_disabled", self.fault, q)
        runtime = self.active.runtime
        start = time.perf_counter()
        try:
            action = runtime.act(q, qd, self.prev_action, *task_values)
        except NonFiniteObservationError as exc:
            return self._hold("non_finite_observation", str(exc), q)
        except NonFiniteOutputError as exc:
            self._non_finite_run += 1
            probation = self.counters.cycles <= self._probation_end
            if self.previous is not None and (probation or self._non_finite_run >= FAULT_LIMIT):
                when = (f"in its first {PROBATION_CYCLES} cycles after the swap" if probation
                        else f"in {FAULT_LIMIT} consecutive cycles")
                self._fall_back(f"output non-finite values {when} ({exc})", q)
                return self._decide(now_s, q, qd, arrival_s, task_values)  # the previous policy, this cycle
            return self._hold("non_finite_output", str(exc), q)
        self._non_finite_run = 0
        self.inference.add(time.perf_counter() - start)
        target = runtime.joint_targets(action, q, self.profile.position_lower_rad,
                                       self.profile.position_upper_rad)
        self.prev_action = clip(action.astype(float), -1.0, 1.0)
        self.hold_target = None
        self.loop_latency.add(self._clock() - arrival_s)
        return CycleResult(COMMAND, target)

    def _hold(self, kind: str, why: str, q: np.ndarray) -> CycleResult:
        if self.hold_target is None:
            self.hold_target = clip(q, self.profile.position_lower_rad, self.profile.position_upper_rad)
        self.prev_action = np.zeros_like(self.prev_action)
        if self.active is not None:  # after the hold, an integrated (end-effector) command restarts from here
            self.active.runtime.reset_action()
        c = self.counters
        c.holds[kind] += 1
        c.last_hold = why if kind == "policy_disabled" else f"{kind}: {why}; holding the measured joint positions"
        return CycleResult(HOLD, self.hold_target.copy(), c.last_hold)

    # --- reporting ----------------------------------------------------------------------
    def achieved_rate_hz(self) -> float:
        """Cycles per second over the last ``max(10, window // 5)`` cycle starts."""
        return self._cycle_starts.rate_hz()

    def _reject(self, kind: str, reason: str) -> PolicyRejected:
        self.counters.rejections[kind] += 1
        self.counters.last_rejection = reason
        return PolicyRejected(reason)
