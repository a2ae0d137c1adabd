"""Kickstarting PPO from the task's scripted controller (policies/imitation.py): DAgger rounds,
the critic warm-up, and a resumed run that does not repeat them; and the training options aimed at
the exported mean action (mean-action and mean-prefix envs, an annealed action std)."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from policies.config import TrainConfig
from policies.imitation import Experts, fit_actor
from policies.model import ActorCritic
from policies.ppo import build_sequences
from policies.train import Trainer, load_checkpoint_file
from sim_bridge.envs.task_env import TaskEnv
from sim_bridge.oracle import PushOracle, action_settings
from sim_bridge.profile import load_profile
from sim_bridge.tasks import make_task


@pytest.fixture(autouse=True)
def one_thread():
    """torch on one thread: the regressions here are tiny, and two threads beside a busy machine crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(task="push", **overrides) -> TrainConfig:
    values = dict(task=task, num_envs=4, num_workers=0, num_steps=40, seq_len=20, total_env_steps=4 * 40 * 4,
                  kickstart_rounds=2, kickstart_epochs=2, critic_warmup_iterations=1, hidden=16,
                  critic_hidden=(16,), num_minibatches=2, torch_threads=1,
                  env_kwargs={"max_episode_steps": 40, "terminate_on_success": False})
    values.update(overrides)
    return TrainConfig(**values)


def test_the_experts_label_each_env_with_the_scripted_pusher_on_its_observation():
    env = TaskEnv(task="push", randomization="none")
    task, profile = env.task, env.profile
    experts = Experts(task, profile, 2, env.action, env.observation_layout)
    obs = np.stack([env.reset(seed=s)[0] for s in (0, 1)])
    labels = experts.act(obs)
    for n in range(2):   # the same as the oracle fed by hand (Push acts in end-effector steps)
        oracle = PushOracle(profile, task, **action_settings(env.action))
        j, p, g = (experts.slices[k] for k in ("joint_pos", "object_pose", "goal_pos"))
        expected = oracle.action(obs[n, j].astype(float), obs[n, p][:2], obs[n, g][:2], puck_z=float(obs[n, p][2]))
        np.testing.assert_allclose(labels[n], expected)
    assert labels.shape == (2, 3) and np.all(np.abs(labels) <= 1.0)
    with pytest.raises(ValueError, match="observation of 3 values"):
        experts.act(np.zeros((2, 3), np.float32))


def test_one_pusher_labels_every_env_in_one_call_with_the_labels_of_one_pusher_per_env():
    """Training's teacher labels all its envs with one batched call (PushOracle.actions): the same
    labels, to the last bit, as a pusher per env asked row by row, in every phase (approach, push,
    hold at the goal), on states the teacher and random actions drive."""
    envs = [TaskEnv(task="push", randomization="default", terminate_on_success=False, max_episode_steps=150)
            for _ in range(4)]
    experts = Experts(envs[0].task, envs[0].profile, 4, envs[0].action, envs[0].observation_layout)
    obs = np.stack([env.reset(seed=s)[0] for s, env in enumerate(envs)])
    rng, phases = np.random.default_rng(0), set()
    for _ in range(150):
        labels = experts.act(obs)
        one_by_one = [e.act({k: o[s] for k, s in experts.slices.items()}) for e, o in zip(experts.experts, obs)]
        np.testing.assert_allclose(labels, np.stack(one_by_one), rtol=0, atol=1e-12)
        phases |= {e.oracle.phase for e in experts.experts}
        actions = np.where(rng.random((4, 1)) < 0.2, rng.uniform(-1, 1, (4, 3)), labels)
        obs = np.stack([env.step(a)[0] for env, a in zip(envs, actions)])
    assert phases == {"approach", "push", "hold"}, phases


def test_a_task_without_a_scripted_controller_cannot_kickstart():
    class NoScript:
        name = "toy"

        def scripted_controller(self, profile, action):
            return None

    with pytest.raises(ValueError, match="task 'toy' has no scripted controller.*kickstart_rounds to 0"):
        Experts(NoScript(), load_profile("panda_like"), 2, 0.05, make_task("reach").observation_layout(7))


@pytest.mark.parametrize("architecture", ["lstm", "mlp", "mlp_history"])
def test_fit_actor_learns_labels_that_depend_on_the_past(architecture):
    """The label at t is the observation at t-1 (only memory can give it; the MLP cannot, the others can)."""
    torch.manual_seed(0)
    T, N, O = 30, 16, 3
    obs = torch.randn(T, N, O)
    labels = torch.zeros(T, N, O)
    labels[1:] = obs[:-1]
    starts = np.zeros((T, N), bool)
    starts[0] = True
    model = ActorCritic(O, O, 1, architecture=architecture, hidden=32, history=2)
    model.actor.obs_norm.update(obs.reshape(-1, O))
    flat_obs, flat_lab = obs.reshape(T * N, O), labels.reshape(T * N, O)
    before = float((labels - 0).square().mean())
    log_std = model.actor.log_std.detach().clone()
    loss = fit_actor(model.actor, flat_obs, flat_lab, starts, epochs=150, minibatch_sequences=8,
                     learning_rate=1e-2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(model.actor.log_std, log_std)   # left to PPO
    if architecture == "mlp":
        assert loss > 0.5 * before, loss               # no memory: it cannot know o_{t-1}
    else:
        assert loss < 0.2 * before, (loss, before)


def test_a_value_only_update_leaves_the_actor_and_the_learning_rate_alone(tmp_path):
    trainer = Trainer(tiny("reach", kickstart_rounds=0), tmp_path, quiet=True)
    try:
        batch, starts, _ = trainer.collect()
        actor = {k: v.clone() for k, v in trainer.model.actor.state_dict().items()}
        critic = {k: v.clone() for k, v in trainer.model.critic.state_dict().items()}
        lr = trainer.ppo.learning_rate
        trainer.ppo.update(batch, build_sequences(starts, 20), trainer.batch_gen, value_only=True)
        assert all(torch.equal(actor[k], v) for k, v in trainer.model.actor.state_dict().items())
        assert not all(torch.equal(critic[k], v) for k, v in trainer.model.critic.state_dict().items())
        assert trainer.ppo.learning_rate == lr
        trainer.ppo.update(batch, build_sequences(starts, 20), trainer.batch_gen)   # a normal update moves it
        assert not all(torch.equal(actor[k], v) for k, v in trainer.model.actor.state_dict().items())
    finally:
        trainer.close()


def test_a_kickstarted_run_counts_its_steps_logs_its_rounds_and_is_not_repeated_on_resume(tmp_path):
    cfg = tiny()
    trainer = Trainer(cfg, tmp_path, quiet=True)
    try:
        trainer.train(stop_after_iterations=1)
        assert trainer.kickstarted and trainer.iteration == 1
        # 2 kickstart rounds + 1 PPO iteration, each one rollout of 4 envs x 40 steps
        assert trainer.env_steps == 3 * 4 * 40
        rows = list(csv.DictReader((tmp_path / "kickstart.csv").open()))
        assert [r["round"] for r in rows] == ["0", "1"] and [float(r["beta"]) for r in rows] == [1.0, 0.5]
        assert rows[0]["student_success"] == "nan" and int(rows[0]["expert_episodes"]) == 4
        assert int(rows[1]["samples"]) == 2 * 4 * 40 and float(rows[1]["loss"]) >= 0
        assert load_checkpoint_file(tmp_path / "checkpoints" / "latest.pt")["kickstarted"] is True
    finally:
        trainer.close()
    resumed = Trainer(cfg, tmp_path, quiet=True)
    try:
        resumed.load_checkpoint(tmp_path / "checkpoints" / "latest.pt")
        before = (tmp_path / "kickstart.csv").read_text()
        resumed.train()
        assert (tmp_path / "kickstart.csv").read_text() == before   # not run again
        assert resumed.env_steps == cfg.total_env_steps and resumed.iteration == 2
    finally:
        resumed.close()


def test_bad_kickstart_settings_are_refused():
    with pytest.raises(ValueError, match="kickstart_rounds must be >= 0"):
        tiny(kickstart_rounds=-1).validate()
    with pytest.raises(ValueError, match="kickstart_epochs must be >= 1"):
        tiny(kickstart_epochs=0).validate()


def test_kl_stop_ends_an_update_once_the_policy_moved_too_far(tmp_path):
    trainer = Trainer(tiny("reach", kickstart_rounds=0, learning_rate=1e-2, kl_stop=1.5), tmp_path, quiet=True)
    try:
        batch, starts, _ = trainer.collect()
        seqs = build_sequences(starts, 20)
        lr = trainer.ppo.learning_rate
        out = trainer.ppo.update(batch, seqs, trainer.batch_gen)   # lr 1e-2 on a fresh actor: far in a step
        assert out["kl_stopped"] == 1.0 and trainer.ppo.learning_rate == pytest.approx(lr / 1.5)
        trainer.cfg.kl_stop = 0.0                                   # off: every epoch runs
        assert trainer.ppo.update(batch, seqs, trainer.batch_gen)["kl_stopped"] == 0.0
    finally:
        trainer.close()


def test_assisted_starts_continue_their_schedule_on_resume_and_bad_settings_are_refused():
    from policies.train import assist_kwargs
    cfg = tiny(assist_start_prob=0.8, assist_episodes=100)
    assert assist_kwargs(cfg) == {"assist_start_prob": 0.8, "assist_episodes": 100}
    resumed = assist_kwargs(cfg, episodes_done=75)  # 0.8 * (1 - 75/100) now, falling to 0 in 25 more
    assert resumed["assist_episodes"] == 25 and resumed["assist_start_prob"] == pytest.approx(0.2)
    assert assist_kwargs(cfg, episodes_done=100) == {} and assist_kwargs(tiny()) == {}
    with pytest.raises(ValueError, match=r"assist_start_prob must be in \[0, 1\]"):
        tiny(assist_start_prob=-0.1).validate()


def test_the_teacher_labels_every_rollout_step_decays_and_pulls_the_actor_toward_it(tmp_path):
    cfg = tiny(kickstart_rounds=0, critic_warmup_iterations=2, teacher_coef=1.0, teacher_decay_iterations=4,
               learning_rate=3e-3, kl_target=0.0)
    trainer = Trainer(cfg, tmp_path, quiet=True)
    try:
        assert [trainer.teacher_coef() for trainer.iteration in (0, 2, 4, 6, 9)] == [1.0, 1.0, 0.5, 0.0, 0.0]
        trainer.cfg.teacher_min_coef = 0.2   # a floor: the decay ends there
        assert [trainer.teacher_coef() for trainer.iteration in (0, 2, 4, 6, 9)] == pytest.approx(
            [1.0, 1.0, 0.6, 0.2, 0.2])
        trainer.cfg.teacher_min_coef = 0.0
        trainer.iteration = 0
        batch, starts, _ = trainer.collect()
        # the labels are the scripted pusher's actions on the rollout's own observations
        env = TaskEnv(task="push")
        experts = Experts(env.task, env.profile, 1, env.action, env.observation_layout)
        assert batch.teacher.shape == batch.actions.shape
        experts.reset([0])
        first_env = batch.obs.view(40, 4, -1)[:, 0]
        expected = np.stack([experts.act(first_env[t:t + 1].numpy())[0] for t in range(40)])
        np.testing.assert_allclose(batch.teacher.view(40, 4, -1)[:, 0].numpy(), expected, atol=1e-6)
        seqs = build_sequences(starts, 20)

        def teacher_mse() -> float:
            with torch.no_grad():
                mean, _ = trainer.model.actor(batch.obs.view(40, 4, -1), trainer.model.actor.initial_state(4))
            return float((mean.reshape(-1, 3) - batch.teacher).square().mean())

        before = teacher_mse()
        out = {}
        for _ in range(10):
            out = trainer.ppo.update(batch, seqs, trainer.batch_gen, teacher_coef=10.0)
        assert out["teacher_mse"] > 0 and teacher_mse() < 0.7 * before, (before, teacher_mse())
    finally:
        trainer.close()
    off = Trainer(tiny(kickstart_rounds=0), tmp_path / "off", quiet=True)
    try:
        assert off.collect()[0].teacher is None   # no teacher: no labels, no scripted controllers built
        assert off._experts is None
    finally:
        off.close()
    with pytest.raises(ValueError, match="teacher_coef and teacher_decay_iterations must be >= 0"):
        tiny(teacher_coef=-1.0).validate()
    with pytest.raises(ValueError, match=r"teacher_min_coef must be in \[0, teacher_coef=1.0\]"):
        tiny(teacher_coef=1.0, teacher_min_coef=2.0).validate()


def test_the_scripted_pusher_labels_a_rollout_another_policy_drives_from_the_envs_own_command():
    """A teacher labelling a student's rollout steers from the command the env integrated (the
    observation's ee_cmd), not from a replica that only knows the teacher's own labels: with the
    replica, the labels of every student-driven state pointed from a fictional command."""
    env = TaskEnv(task="push", randomization="none")
    experts = Experts(env.task, env.profile, 1, env.action, env.observation_layout)
    obs, _ = env.reset(seed=3)
    experts.reset([0])
    rng = np.random.default_rng(0)
    for _ in range(15):   # a random "student" drives; the teacher only labels
        experts.act(obs[None])
        obs, *_ = env.step(rng.uniform(-1, 1, 3).astype(np.float32))
    label = experts.act(obs[None])[0]
    # one pusher asked for this env alone gives the same label (and keeps this step's command and table)
    np.testing.assert_allclose(experts.experts[0].act({k: obs[s] for k, s in experts.slices.items()}), label,
                               rtol=0, atol=1e-12)
    reach = experts.experts[0].oracle.reach
    cmd = obs[experts.slices["ee_cmd"]]
    np.testing.assert_allclose(reach.commanded(obs[experts.slices["joint_pos"]].astype(float)), cmd)
    # the label is half the way from that command to the pusher's target, in 2 cm steps
    target = experts.experts[0].oracle.target(obs[experts.slices["joint_pos"]].astype(float),
                                             obs[experts.slices["object_pose"]][:2], obs[experts.slices["goal_pos"]][:2])
    np.testing.assert_allclose(label, np.clip(0.5 * (target - cmd) / env.action.settings.scale_m, -1, 1), atol=1e-5)


def test_mean_action_envs_act_with_the_mean_feed_only_the_teacher_and_pick_the_best_checkpoint(tmp_path):
    cfg = tiny(kickstart_rounds=0, critic_warmup_iterations=0, teacher_coef=1.0, mean_action_envs=2, best_window=1)
    trainer = Trainer(cfg, tmp_path, quiet=True)
    try:
        batch, _, stats = trainer.collect()
        T, N = 40, 4
        with torch.no_grad():
            mean, _ = trainer.model.actor(batch.obs.view(T, N, -1), trainer.model.actor.initial_state(N))
        actions = batch.actions.view(T, N, -1)
        # the last two envs took the actor's mean, the first two a sample around it
        torch.testing.assert_close(actions[:, 2:], mean[:, 2:], rtol=0, atol=1e-5)
        assert (actions[:, :2] - mean[:, :2]).abs().mean() > 0.05
        weights = batch.weights.view(T, N)
        assert (weights[:, 2:] == 0).all() and (weights[:, :2] == 1).all()
        assert batch.teacher is not None and batch.teacher.shape == batch.actions.shape   # labels for every env
        assert stats.episodes == 2 and stats.mean_action_episodes == 2   # one 40-step episode per env
        trainer.train(stop_after_iterations=2)
        rows = trainer.history
        assert all(r["mean_action_episodes"] == 2 for r in rows)
        best = load_checkpoint_file(tmp_path / "checkpoints" / "best.pt")
        assert best["best_success"] == max(r["mean_action_success"] for r in rows)   # by the mean-action envs
    finally:
        trainer.close()
    with pytest.raises(ValueError, match=r"mean_action_envs must be in \[0, num_envs=4\)"):
        tiny(mean_action_envs=4).validate()


def test_mean_prefix_envs_act_with_the_mean_first_then_sample_and_train_only_on_the_sampled_part(tmp_path):
    cfg = tiny(kickstart_rounds=0, critic_warmup_iterations=0, teacher_coef=1.0, mean_action_envs=1,
               mean_prefix_envs=2, mean_prefix_max_steps=30)
    trainer = Trainer(cfg, tmp_path, quiet=True)
    try:
        T, N = 40, 4
        prefixes = []
        for _ in range(3):   # the prefix lengths are drawn per episode (one 40-step episode per iteration)
            batch, _, stats = trainer.collect()
            with torch.no_grad():
                mean, _ = trainer.model.actor(batch.obs.view(T, N, -1), trainer.model.actor.initial_state(N))
            gap = (batch.actions.view(T, N, -1) - mean).abs().amax(-1)
            weights = batch.weights.view(T, N)
            assert (gap[:, 3] < 1e-5).all() and (weights[:, 3] == 0).all()   # the mean-action env
            assert (gap[:, 0] > 1e-4).all() and (weights[:, 0] == 1).all()   # sampled from the start
            for n in (1, 2):
                k = int((weights[:, n] == 0).sum())
                assert 0 <= k <= 30 and (weights[:k, n] == 0).all() and (weights[k:, n] == 1).all()
                assert (gap[:k, n] < 1e-5).all() and (gap[k:, n] > 1e-4).all()   # mean, then samples
                prefixes.append(k)
            assert stats.episodes == 3 and stats.mean_action_episodes == 1   # prefix envs count as sampled
            trainer.iteration += 1
        assert len(set(prefixes)) > 1
    finally:
        trainer.close()
    with pytest.raises(ValueError, match="mean_prefix_envs must be >= 0 and leave envs that sample"):
        tiny(mean_action_envs=2, mean_prefix_envs=2).validate()


def test_an_annealed_std_follows_its_schedule_from_the_runs_start_through_a_resume(tmp_path):
    """--final-action-std: the log-std is not learnt; it moves linearly in log space from where the
    run starts (here a fine-tune's checkpoint) to the final std at the last iteration, and a resumed
    run continues the same schedule."""
    source = Trainer(tiny(kickstart_rounds=0, critic_warmup_iterations=0, init_log_std=-0.5), tmp_path / "src",
                     quiet=True)
    try:
        source.save_checkpoint(tmp_path / "src" / "start.pt")
    finally:
        source.close()
    cfg = tiny(kickstart_rounds=0, critic_warmup_iterations=0, final_action_std=0.05,
               init_from=str(tmp_path / "src" / "start.pt"))   # 4 iterations of 160 env steps
    expected = np.exp(-0.5 + np.arange(4) / 3 * (np.log(0.05) + 0.5))
    trainer = Trainer(cfg, tmp_path / "run", quiet=True)
    try:
        trainer.train(stop_after_iterations=2)
        assert not trainer.model.actor.log_std.requires_grad   # the optimiser leaves it alone
    finally:
        trainer.close()
    resumed = Trainer(cfg, tmp_path / "run", quiet=True)
    try:
        resumed.load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
        resumed.train()
        assert resumed.iteration == 4
    finally:
        resumed.close()
    rows = list(csv.DictReader((tmp_path / "run" / "progress.csv").open()))
    np.testing.assert_allclose([float(r["action_std"]) for r in rows], expected, rtol=1e-5)
    learnt = Trainer(tiny(kickstart_rounds=0, critic_warmup_iterations=0), tmp_path / "learnt", quiet=True)
    try:   # off (the default): PPO learns the std
        learnt.train(stop_after_iterations=2)
        assert learnt.model.actor.log_std.requires_grad and learnt.std_start is None
        assert float(learnt.model.actor.log_std.detach().mean()) != -1.0
    finally:
        learnt.close()
    for bad in (-0.1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="final_action_std must be >= 0 and finite"):
            tiny(final_action_std=bad).validate()


def test_a_delayed_anneal_learns_the_std_first_then_anneals_from_its_learnt_value_through_a_resume(tmp_path):
    """--anneal-start-env-steps: PPO learns the std for the run's first part; from that many env
    steps on the schedule takes it from the learnt value to the final std at the last iteration,
    and a run resumed after the switch continues the schedule from the same value."""
    cfg = tiny(kickstart_rounds=0, critic_warmup_iterations=0, final_action_std=0.05,
               anneal_start_env_steps=320)   # 4 iterations of 160 env steps: two learnt, two annealed
    trainer = Trainer(cfg, tmp_path / "run", quiet=True)
    try:
        trainer.train(stop_after_iterations=2)
        assert trainer.model.actor.log_std.requires_grad and trainer.std_start is None
        learnt = trainer.model.actor.log_std.detach().clone()
        assert not torch.allclose(learnt, torch.full_like(learnt, -1.0))   # PPO moved it
        trainer.train(stop_after_iterations=1)
        assert not trainer.model.actor.log_std.requires_grad
        torch.testing.assert_close(trainer.std_start, learnt)
    finally:
        trainer.close()
    resumed = Trainer(cfg, tmp_path / "run", quiet=True)
    try:
        resumed.load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
        assert not resumed.model.actor.log_std.requires_grad
        torch.testing.assert_close(resumed.std_start, learnt)
        resumed.train()
        assert resumed.iteration == 4
    finally:
        resumed.close()
    rows = list(csv.DictReader((tmp_path / "run" / "progress.csv").open()))
    stds = [float(r["action_std"]) for r in rows]
    np.testing.assert_allclose(stds[2:], [float(learnt.exp().mean()), 0.05], rtol=1e-5)
    with pytest.raises(ValueError, match="anneal_start_env_steps needs final_action_std"):
        tiny(anneal_start_env_steps=100).validate()
    with pytest.raises(ValueError, match="anneal_start_env_steps must be >= 0"):
        tiny(final_action_std=0.1, anneal_start_env_steps=-1).validate()
