"""Benchmark: task env throughput (Reach-v0, Push-v0) against a bare MuJoCo loop, and vectorized scaling.

Run as ``sim2real bench env`` (or ``python bench/env.py``). In one run it measures

1. baseline: a bare loop over the same compiled models (the task's scene included: Push's
   puck and pusher) that sets ``ctrl`` and calls ``mujoco.mj_step(model, data, nstep=decimation)``
   once per control step (the cheapest way to advance MuJoCo by the same physics sub-steps,
   no Python per sub-step). The target's baseline steps the env's own models: copies of the
   randomized models of ``--models`` episodes the env sampled, one after the other, an episode
   length each (a randomized model can step slower than the nominal one: heavier, stiffer
   contacts); the loop over the nominal model is printed too, as before;
2. the env of each ``--task`` with the task's default randomization (resets included,
   random actions), and one more run of it with every ``mj_step`` call timed: the env's step
   against its own physics on the states its episodes reach (is the gap Python, or dearer
   physics?);
3. the vectorized env (``VectorTaskEnv``) with 1 worker process and with 2.

It prints env steps/s and the ratios. Targets (issue 2): overhead ratio baseline/env
<= 1.5x; 2-worker throughput >= 1.7x one worker. The numbers depend on the machine and
on what else runs; the ratios are the point.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import mujoco
import numpy as np

_BENCH_DIR = str(Path(__file__).resolve().parent)
sys.path.insert(0, _BENCH_DIR)  # bench/ helpers, also under runpy
from _machine import machine_info, machine_line

sys.path.remove(_BENCH_DIR)  # bench/'s module names (env, policy, train, ...) shadow nothing afterwards


def bare_loop_steps_per_s(models: list[mujoco.MjModel], decimation: int, seconds: float, ctrl_low, ctrl_high,
                          episode_steps: int = 100) -> float:
    """Steps/s of the bare loop; with several models, each in turn for ``episode_steps`` steps
    (a multiple of 100), each from its own state (as the env's episodes)."""
    pairs = [(m, mujoco.MjData(m)) for m in models]
    rng = np.random.default_rng(0)
    targets = rng.uniform(ctrl_low, ctrl_high, (1000, models[0].nu))
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        model, data = pairs[(steps // episode_steps) % len(pairs)]
        for k in range(100):
            data.ctrl[:] = targets[(steps + k) % 1000]
            mujoco.mj_step(model, data, nstep=decimation)
        steps += 100
    return steps / (time.perf_counter() - start)


def env_models(env, count: int) -> list[mujoco.MjModel]:
    """Copies of the randomized models of ``count`` episodes of ``env`` (seeds 1000...)."""
    import copy

    models = []
    for i in range(count):
        env.reset(seed=1000 + i)
        models.append(copy.deepcopy(env.sim.model))
    return models


def env_steps_per_s(env, seconds: float) -> float:
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (1000,) + env.action_space.shape).astype(np.float32)
    env.reset(seed=0)
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for k in range(100):
            _, _, term, trunc, _ = env.step(actions[(steps + k) % 1000])
            if term or trunc:
                env.reset()
        steps += 100
    return steps / (time.perf_counter() - start)


def env_physics_per_step(env, seconds: float) -> tuple[float, float]:
    """(env steps/s, seconds of ``mujoco.mj_step`` per env step) of one timed run of ``env``: the
    env's own physics on the states its episodes reach (pushing means contacts that a bare loop
    of random joint targets does not have), each ``mj_step`` call timed. The rest of an env step
    is the env's own work (Python, the end-effector action's kinematics, resets)."""
    real = mujoco.mj_step
    spent = 0.0

    def timed(*args, **kwargs):
        nonlocal spent
        t0 = time.perf_counter()
        real(*args, **kwargs)
        spent += time.perf_counter() - t0

    mujoco.mj_step = timed   # the env's simulator calls mujoco.mj_step through the module
    try:
        start = time.perf_counter()
        rate = env_steps_per_s(env, seconds)
        steps = rate * (time.perf_counter() - start)
    finally:
        mujoco.mj_step = real
    return rate, spent / max(steps, 1.0)


def vector_steps_per_s(num_envs: int, num_workers: int, seconds: float) -> float:
    from sim_bridge.envs.vector import VectorTaskEnv

    with VectorTaskEnv(num_envs, num_workers) as venv:
        rng = np.random.default_rng(0)
        actions = rng.uniform(-1, 1, (16, num_envs) + venv.single_action_space.shape).astype(np.float32)
        venv.reset(seed=0)
        for k in range(20):  # warm-up
            venv.step(actions[k % 16])
        steps = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            venv.step(actions[steps % 16])
            steps += 1
        return steps * num_envs / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per variant")
    parser.add_argument("--num-envs", type=int, default=16, help="envs in the vectorized runs")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats; the best of each is kept")
    parser.add_argument("--task", action="append", choices=["reach", "push"],
                        help="task env(s) to measure (repeat; default: reach and push)")
    parser.add_argument("--models", type=int, default=8,
                        help="randomized episode models the same-model baseline steps (one after the other)")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)
    machine = machine_info()  # before the measurements, while this process is the only load it adds
    print(machine_line(machine), flush=True)

    import gymnasium as gym

    import sim_bridge.envs  # noqa: F401  (registers the envs)
    from sim_bridge.simulator import build_model

    per_task = {}
    for task in args.task or ["reach", "push"]:
        env = gym.make(f"Sim2Real/{task.capitalize()}-v0", randomization="default", disable_env_checker=True).unwrapped
        profile = env.profile
        nominal_model = build_model(profile, env.task.add_to_scene)
        same_models = env_models(env, args.models)
        episode = max(100, 100 * round(env.max_episode_steps / 100))
        limits = (profile.position_lower_rad, profile.position_upper_rad)
        nominal, same, single = [], [], []
        for _ in range(args.repeats):  # alternate so drifts in machine load hit all alike
            nominal.append(bare_loop_steps_per_s([nominal_model], profile.decimation, args.seconds, *limits))
            same.append(bare_loop_steps_per_s(same_models, profile.decimation, args.seconds, *limits, episode))
            single.append(env_steps_per_s(env, args.seconds))
        timed_rate, physics_s = env_physics_per_step(env, args.seconds)
        nominal_best, same_best, env_best = max(nominal), max(same), max(single)
        overhead = same_best / env_best
        name = f"{task.capitalize()}-v0"
        print(f"{name}: bare mj_step loop ({profile.decimation} sub-steps/step), nominal model: {nominal_best:9.0f} steps/s")
        print(f"{name}: bare loop on the env's models ({args.models} randomized):   {same_best:9.0f} steps/s")
        print(f"{name}: env, its default randomization:                   {env_best:9.0f} steps/s")
        print(f"{name}: overhead ratio against the nominal model:          {nominal_best / env_best:9.2f}x")
        print(f"{name}: overhead ratio (bare on the same models / env):    {overhead:9.2f}x   (target <= 1.5x)",
              flush=True)
        step_us, physics_us = 1e6 / timed_rate, 1e6 * physics_s
        print(f"{name}: of an env step ({step_us:.0f} us, a timed run), mj_step on the env's own states: "
              f"{physics_us:.0f} us (the bare loop: {1e6 / same_best:.0f} us) -> env / its own physics "
              f"{step_us / physics_us:.2f}x", flush=True)
        per_task[task] = {"bare_steps_per_s": same_best, "bare_nominal_steps_per_s": nominal_best,
                          "env_steps_per_s": env_best, "overhead_ratio": overhead,
                          "overhead_ratio_nominal": nominal_best / env_best,
                          "env_physics_us_per_step": physics_us, "env_timed_steps_per_s": timed_rate,
                          "overhead_ratio_own_physics": step_us / physics_us,
                          "raw": {"bare": same, "bare_nominal": nominal, "env": single}}

    one, two = [], []
    for _ in range(args.repeats):
        one.append(vector_steps_per_s(args.num_envs, 1, args.seconds))
        two.append(vector_steps_per_s(args.num_envs, 2, args.seconds))
    scaling = max(two) / max(one)
    print(f"vector env, {args.num_envs} envs, 1 worker:          {max(one):9.0f} steps/s")
    print(f"vector env, {args.num_envs} envs, 2 workers:         {max(two):9.0f} steps/s")
    print(f"vectorized scaling (2 workers / 1):       {scaling:9.2f}x   (target >= 1.7x)")
    results = {"tasks": per_task, **per_task.get("reach", {}),
               "vector_1_worker_steps_per_s": max(one), "vector_2_workers_steps_per_s": max(two),
               "vector_scaling": scaling, "num_envs": args.num_envs, "decimation": profile.decimation,
               "raw_vector": {"vector_1": one, "vector_2": two}, "machine_info": machine}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
