"""Benchmark: the Ray backend against the local backend on the same work, and a scaling model.

Run as ``sim2real bench scale`` (or ``python bench/scale.py``). In one run, on this machine:

1. **Training**: ``--iterations`` PPO iterations of ``--num-envs`` envs over ``--num-workers``
   workers, ``--num-steps`` steps each, once with worker processes (local) and once with Ray
   actors (a Ray instance started here, ``--ray-cpus`` CPUs): env steps/s of the whole
   iteration (collect + update), the time spent waiting for the env workers per step, and the
   bytes moved per iteration (actions out, observations/rewards/infos back; array payload).
   The first iteration of each run is a warm-up and not counted; the backends alternate
   (``--rounds`` runs each: local, ray, local, ray, ...) so a change of the machine's load
   falls on both. Reported: env steps/s of the whole iteration and of the collect phase alone
   (the part the backend changes; the PPO update runs in the driver either way).
   **Env stepping alone** (the transport): the same vector env, local vs Ray, stepped with
   zero actions in alternating blocks of 100 steps (``--blocks`` each): ms per step.
2. **Calibration**: ``--calib-iterations`` SimOpt iterations of ``--samples`` samples on
   ``--episodes`` emulator episodes, local (one batch, ``--calib-threads`` threads) vs Ray
   (one chunk per worker, 1 thread each): seconds per iteration, bytes per iteration.
3. **Scaling model** (on paper, from the numbers above): projected env steps/s for 8, 64 and
   512 Ray workers of ``--num-envs / --num-workers`` envs each. Per step the driver waits
   for the slowest worker (its envs' step time + one Ray round trip), then runs the policy
   on every env's observation; per iteration it updates on every sample. The driver's terms
   grow with the worker count, so the projection saturates: it says where one learner stops
   scaling, not what a cluster measured.

Targets (issue 15): Ray >= 0.85x the local env steps/s; a Ray calibration iteration within
1.2x of local.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

_BENCH_DIR = str(Path(__file__).resolve().parent)
sys.path.insert(0, _BENCH_DIR)  # bench/ helpers, also under runpy
from _machine import machine_info, machine_line  # noqa: E402

sys.path.remove(_BENCH_DIR)

ZOO = Path(__file__).resolve().parents[1] / "policies" / "policies" / "zoo"


def train_run(backend: str, args, out: Path) -> dict:
    from policies.config import TrainConfig
    from policies.train import Trainer

    cfg = TrainConfig(num_envs=args.num_envs, num_workers=args.num_workers, num_steps=args.num_steps,
                      seq_len=min(50, args.num_steps), total_env_steps=args.num_envs * args.num_steps * args.iterations,
                      checkpoint_every=10 ** 6, backend=backend, seed=args.seed,
                      env_kwargs={"max_episode_steps": args.num_steps, "terminate_on_success": False})
    trainer = Trainer(cfg, out, quiet=True)
    waits: list[float] = []
    step = trainer.venv.step

    def timed_step(actions):
        t0 = time.perf_counter()
        result = step(actions)
        waits.append(time.perf_counter() - t0)
        return result

    trainer.venv.step = timed_step
    try:
        trainer.train()
        venv = trainer.venv
        rows = trainer.history[1:] or trainer.history  # the first iteration warms up
        per_iter = len(waits) // len(trainer.history)
        counted = waits[per_iter * (len(trainer.history) - len(rows)):]
        result = {"backend": backend, "rows": rows, "waits": counted}
        if backend == "ray":
            iters = len(trainer.history)
            result["bytes_out_per_iteration"] = venv.bytes_sent / iters
            result["bytes_back_per_iteration"] = venv.bytes_received / iters
        return result
    finally:
        trainer.close()


def transport_run(args) -> dict:
    """Env stepping alone, ms per step: the local workers; Ray as it runs here (actors on this
    machine step into the driver's shared buffers and take their steps over a Unix socket); the
    same actors driven with one plain Ray call per step (the baseline the socket replaced); Ray
    as an actor on another node is driven (plain calls, its rows in every answer), whose bytes
    per step are what a cluster moves; and, alone afterwards (its idle actors busy-wait, which
    would slow the others), the opt-in compiled graph over the shared buffers."""
    import numpy as np
    import ray

    from policies.ray_backend import RayVectorEnv
    from sim_bridge.envs.vector import VectorTaskEnv

    kwargs = {"terminate_on_success": False, "max_episode_steps": args.num_steps}
    # three Ray vector envs live at once: their actors share the instance's CPUs
    cpus = min(1.0, ray.cluster_resources().get("CPU", 1.0) / (3 * args.num_workers))
    envs = {"local": VectorTaskEnv(args.num_envs, args.num_workers, env_kwargs=kwargs),
            "ray": RayVectorEnv(args.num_envs, args.num_workers, env_kwargs=kwargs, cpus_per_worker=cpus),
            "ray_plain_calls": RayVectorEnv(args.num_envs, args.num_workers, env_kwargs=kwargs,
                                            cpus_per_worker=cpus, socket_signals=False),
            "ray_remote_path": RayVectorEnv(args.num_envs, args.num_workers, env_kwargs=kwargs, cpus_per_worker=cpus,
                                            shared_memory=False)}
    actions = np.zeros((args.num_envs, envs["local"].single_action_space.shape[0]), np.float32)
    ms: dict[str, list[float]] = {k: [] for k in (*envs, "ray_compiled_graph")}

    def block(name, venv, seed):
        venv.reset(seed=seed)
        t0 = time.perf_counter()
        for _ in range(100):
            venv.step(actions)
        ms[name].append((time.perf_counter() - t0) * 10.0)  # ms per step

    try:
        for b in range(args.blocks):
            for name, venv in envs.items():
                block(name, venv, b)
        remote = envs["ray_remote_path"]
        # per block: one seeded reset and 100 steps, as one training iteration of 100 steps
        per_iteration = args.num_steps / 100.0 / args.blocks
        moved = {"bytes_out_per_iteration": remote.bytes_sent * per_iteration,
                 "bytes_back_per_iteration": remote.bytes_received * per_iteration}
    finally:
        for venv in envs.values():
            venv.close()
    compiled = RayVectorEnv(args.num_envs, args.num_workers, env_kwargs=kwargs, compiled_graph=True)
    try:
        for b in range(args.blocks):
            block("ray_compiled_graph", compiled, b)
    finally:
        compiled.close()
    local, on_ray = statistics.median(ms["local"]), statistics.median(ms["ray"])
    remote_ms = statistics.median(ms["ray_remote_path"])
    compiled_ms = statistics.median(ms["ray_compiled_graph"])
    plain_ms = statistics.median(ms["ray_plain_calls"])
    return {"local_ms_per_step": local, "ray_ms_per_step": on_ray, "ratio": local / on_ray,
            "ray_plain_calls_ms_per_step": plain_ms, "plain_calls_ratio": local / plain_ms,
            "ray_remote_path_ms_per_step": remote_ms, "remote_path_ratio": local / remote_ms,
            "ray_compiled_graph_ms_per_step": compiled_ms, "compiled_graph_ratio": local / compiled_ms,
            **moved, "blocks": ms}


def summarize(backend: str, runs: list[dict], args) -> dict:
    rows = [r for run in runs for r in run["rows"]]
    steps = args.num_envs * args.num_steps
    out = {"backend": backend, "steps_per_s": statistics.median(r["steps_per_s"] for r in rows),
           "collect_steps_per_s": statistics.median(steps / r["collect_s"] for r in rows),
           "collect_s": statistics.median(r["collect_s"] for r in rows),
           "update_s": statistics.median(r["update_s"] for r in rows),
           "env_wait_ms_per_step": 1e3 * statistics.median(w for run in runs for w in run["waits"]),
           "iterations_counted": len(rows)}
    for key in ("bytes_out_per_iteration", "bytes_back_per_iteration"):
        if key in runs[0]:
            out[key] = runs[0][key]
    return out


def calibration_run(backend: str, args, episodes) -> dict:
    from calibration.simopt import Calibration, load_settings
    from sim_bridge.profile import load_profile
    from sim_bridge.randomization import load_randomization

    settings = load_settings().with_overrides(samples=args.samples, iterations=args.calib_iterations,
                                              seed=args.seed, backend=backend, workers=args.num_workers,
                                              threads=args.calib_threads if backend == "local" else 1)
    calib = Calibration(load_profile("panda_like"), load_randomization("default"), episodes, settings,
                        ZOO / "reach_lstm")
    try:
        calib.run()
        times = [r.elapsed_s for r in calib.history]
        result = {"backend": backend, "iteration_s": statistics.median(times[1:] or times),
                  "final_mean": calib.search.mean.tolist()}
        if calib._pool is not None:
            n = len(calib.history)
            result.update(bytes_out_per_iteration=calib._pool.bytes_sent / n,
                          bytes_back_per_iteration=calib._pool.bytes_received / n,
                          setup_bytes=calib._pool.setup_bytes)
        return result
    finally:
        calib.close()


def projection(local: dict, ray_run: dict, transport: dict, args) -> dict:
    """Env steps/s for W workers of the benchmark's envs per worker (a model, see the docstring).
    On a cluster most actors are on other nodes than the driver: Ray's cost per step is the
    transport those get (plain calls, their rows in every answer), measured here against the
    local workers' stepping alone, and so are the bytes."""
    n, w, t = args.num_envs, args.num_workers, args.num_steps
    envs_per_worker = n / w
    env_ms = local["env_wait_ms_per_step"]  # one worker's envs' step (the workers run in parallel)
    rtt_ms = max(transport["ray_remote_path_ms_per_step"] - transport["local_ms_per_step"], 0.0)
    driver_ms_per_env = (ray_run["collect_s"] * 1e3 / t - ray_run["env_wait_ms_per_step"]) / n  # policy, buffers
    update_ms_per_sample = ray_run["update_s"] * 1e3 / (n * t)
    out = {"model": {"env_ms_per_step_per_worker": env_ms, "ray_round_trip_ms": rtt_ms,
                     "driver_ms_per_env_step": driver_ms_per_env, "update_ms_per_sample": update_ms_per_sample}}
    for workers in (8, 64, 512):
        envs = workers * envs_per_worker
        step_ms = env_ms + rtt_ms + driver_ms_per_env * envs
        iteration_s = t * step_ms / 1e3 + update_ms_per_sample * envs * t / 1e3
        out[workers] = {"envs": envs, "steps_per_s": envs * t / iteration_s,
                        "bytes_per_iteration": (transport["bytes_out_per_iteration"]
                                                + transport["bytes_back_per_iteration"]) * workers / w}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--num-envs", type=int, default=32)
    ap.add_argument("--num-workers", type=int, default=2)
    ap.add_argument("--num-steps", type=int, default=100)
    ap.add_argument("--iterations", type=int, default=4, help="training iterations per run (the first warms up)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating runs per backend")
    ap.add_argument("--blocks", type=int, default=6, help="alternating blocks of 100 steps (env stepping alone)")
    ap.add_argument("--samples", type=int, default=128, help="calibration samples per iteration")
    ap.add_argument("--episodes", type=int, default=2, help="calibration: emulator episodes")
    ap.add_argument("--steps", type=int, default=60, help="calibration: joint states per episode")
    ap.add_argument("--calib-iterations", type=int, default=3)
    ap.add_argument("--calib-threads", type=int, default=2, help="local calibration: mujoco.rollout threads")
    ap.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the local Ray instance (None: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", nargs="*", default=[], choices=["train", "calibrate"])
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    args = ap.parse_args(argv)
    machine = machine_info()
    print(machine_line(machine), flush=True)
    os.environ.pop("RAY_ADDRESS", None)
    import ray

    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=200 * 1024 * 1024)
    results: dict = {"machine_info": machine, "args": {k: str(v) for k, v in vars(args).items()}}
    try:
        if "train" not in args.skip:
            runs: dict[str, list] = {"local": [], "ray": []}
            with tempfile.TemporaryDirectory() as tmp:
                for r in range(args.rounds):
                    for backend in ("local", "ray"):
                        runs[backend].append(train_run(backend, args, Path(tmp) / f"{backend}{r}"))
            local, on_ray = summarize("local", runs["local"], args), summarize("ray", runs["ray"], args)
            ratio = on_ray["steps_per_s"] / local["steps_per_s"]
            collect_ratio = on_ray["collect_steps_per_s"] / local["collect_steps_per_s"]
            transport = transport_run(args)
            results["train"] = {"local": local, "ray": on_ray, "ratio": ratio, "collect_ratio": collect_ratio,
                                "transport": transport, "projection": projection(local, on_ray, transport, args)}
            print(f"\ntraining, {args.num_envs} envs over {args.num_workers} workers, {args.num_steps} steps/iteration "
                  f"(medians of {local['iterations_counted']} iterations per backend, {args.rounds} alternating runs):")
            for r in (local, on_ray):
                print(f"  {r['backend']:>5}: {r['steps_per_s']:7.0f} env steps/s per iteration, "
                      f"{r['collect_steps_per_s']:7.0f} in the collect phase (collect {r['collect_s']:.2f} s, "
                      f"update {r['update_s']:.2f} s, waiting for the env workers {r['env_wait_ms_per_step']:.2f} ms/step)")
            print(f"  ratio ray/local: {ratio:.2f}x per iteration, {collect_ratio:.2f}x in the collect phase "
                  f"(target >= 0.85x)")
            print(f"  env stepping alone (median of {args.blocks} alternating blocks of 100 steps): local "
                  f"{transport['local_ms_per_step']:.2f} ms/step, ray {transport['ray_ms_per_step']:.2f} ms/step "
                  f"(actors step into the driver's shared buffers, steps signalled over Unix sockets): "
                  f"ray at {transport['ratio']:.2f}x the local env steps/s; the same actors with one plain Ray "
                  f"call per step: {transport['ray_plain_calls_ms_per_step']:.2f} ms/step "
                  f"({transport['plain_calls_ratio']:.2f}x); the opt-in compiled graph, measured "
                  f"alone: {transport['ray_compiled_graph_ms_per_step']:.2f} ms/step "
                  f"({transport['compiled_graph_ratio']:.2f}x)")
            print(f"  the transport of an actor on another node (plain calls, its rows in every answer), here: "
                  f"{transport['ray_remote_path_ms_per_step']:.2f} ms/step ({transport['remote_path_ratio']:.2f}x); "
                  f"it moves per iteration {transport['bytes_out_per_iteration'] / 1e3:.0f} kB of actions out, "
                  f"{transport['bytes_back_per_iteration'] / 1e6:.2f} MB of observations/rewards/infos back "
                  f"(on this machine, in place: {on_ray['bytes_out_per_iteration'] / 1e3:.0f} kB / "
                  f"{on_ray['bytes_back_per_iteration'] / 1e6:.2f} MB)")
            proj = results["train"]["projection"]
            m = proj["model"]
            print(f"  scaling model (on paper): per step {m['env_ms_per_step_per_worker']:.2f} ms of env stepping "
                  f"per worker + {m['ray_round_trip_ms']:.2f} ms Ray round trip + {m['driver_ms_per_env_step']:.4f} ms "
                  f"driver work per env; update {m['update_ms_per_sample']:.4f} ms per sample")
            for workers in (8, 64, 512):
                p = proj[workers]
                print(f"    {workers:4d} workers ({p['envs']:.0f} envs): {p['steps_per_s']:8.0f} env steps/s, "
                      f"{p['bytes_per_iteration'] / 1e6:.1f} MB per iteration")
        if "calibrate" not in args.skip:
            from calibration.episodes import emulator_episodes

            episodes = emulator_episodes(ZOO / "reach_lstm", args.episodes, steps=args.steps, seed=args.seed)
            local = calibration_run("local", args, episodes)
            on_ray = calibration_run("ray", args, episodes)
            ratio = on_ray["iteration_s"] / local["iteration_s"]
            same = local["final_mean"] == on_ray["final_mean"]
            results["calibrate"] = {"local": local, "ray": on_ray, "ratio": ratio, "same_result": same}
            print(f"\ncalibration, {args.samples} samples x {args.episodes} episodes x {args.steps} steps "
                  f"per iteration:")
            print(f"  local ({args.calib_threads} threads): {local['iteration_s']:.2f} s/iteration; "
                  f"ray ({args.num_workers} workers x 1 thread): {on_ray['iteration_s']:.2f} s/iteration; "
                  f"ratio {ratio:.2f}x (target <= 1.2x); same result: {same}")
            print(f"  moved per iteration: {on_ray['bytes_out_per_iteration'] / 1e3:.1f} kB of samples out, "
                  f"{on_ray['bytes_back_per_iteration'] / 1e3:.1f} kB of costs back; once per run: "
                  f"{on_ray['setup_bytes'] / 1e3:.0f} kB (episodes, prior, settings, policy) per worker")
    finally:
        ray.shutdown()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
