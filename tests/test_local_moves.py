"""The local-move sampler behind ``sampler='tpe'``: which trials move, from where, how far."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from rankopt.errors import SettingsError
from rankopt.searching.loop._local import N_MOVED, LocalMovesSampler, incumbents
from rankopt.searching.loop._sampler import TPE_MIN_STARTUP, make_sampler

SPACE = {
    **{f"l{i}/method": CategoricalDistribution(["cp", "tucker2", "keep"]) for i in range(4)},
    **{f"l{i}/weight": FloatDistribution(0.25, 4.0, log=True) for i in range(4)},
}


def _seeded_study(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """4 complete start-up trials with known accuracies; trial 1 is the best, 3 the next."""
    study = optuna.create_study(sampler=sampler)
    for i, acc in enumerate([0.5, 0.9, 0.1, 0.8]):
        params = {f"l{j}/method": ["cp", "tucker2", "keep"][(i + j) % 3] for j in range(4)}
        params |= {f"l{j}/weight": 0.5 + 0.5 * i + 0.25 * j for j in range(4)}
        trial = optuna.trial.create_trial(
            params=params, distributions=SPACE, value=acc, user_attrs={"accuracy": acc}
        )
        study.add_trial(trial)
    return study


def _suggest(trial: optuna.Trial) -> float:
    for name, dist in SPACE.items():
        if isinstance(dist, CategoricalDistribution):
            trial.suggest_categorical(name, dist.choices)
        else:
            trial.suggest_float(name, dist.low, dist.high, log=True)
    return 0.0


def test_local_moves_change_at_most_three_params_of_one_of_the_two_best_trials() -> None:
    sampler = LocalMovesSampler(
        optuna.samplers.RandomSampler(seed=0), n_startup_trials=4, seed=0, local_share=1.0
    )
    study = _seeded_study(sampler)
    best_two = [t.params for t in incumbents(study.trials, 2)]
    assert [t.number for t in incumbents(study.trials, 2)] == [1, 3]
    study.optimize(_suggest, n_trials=12)
    moved_counts = []
    for trial in study.trials[4:]:
        diffs = [sum(trial.params[n] != p[n] for n in SPACE) for p in best_two]
        assert min(diffs) <= N_MOVED, (trial.params, best_two)
        moved_counts.append(min(diffs))
        for n, dist in SPACE.items():
            assert dist._contains(dist.to_internal_repr(trial.params[n]))
    # the weights do move (not a copy of the incumbent each time)
    assert max(moved_counts) >= 1


def test_the_share_of_local_moves_is_a_function_of_the_trial_number() -> None:
    # A base sampler far from every incumbent tells the base's trials from local moves.
    class Far(optuna.samplers.BaseSampler):
        def infer_relative_search_space(self, study, trial):  # type: ignore[no-untyped-def]
            return {}

        def sample_relative(self, study, trial, search_space):  # type: ignore[no-untyped-def]
            return {}

        def sample_independent(self, study, trial, name, dist):  # type: ignore[no-untyped-def]
            return "keep" if isinstance(dist, CategoricalDistribution) else 4.0

    sampler = LocalMovesSampler(Far(), n_startup_trials=4, seed=1, local_share=0.75)
    study = _seeded_study(sampler)
    study.optimize(_suggest, n_trials=8)
    far = {n: ("keep" if isinstance(d, CategoricalDistribution) else 4.0) for n, d in SPACE.items()}
    from_base = [t.number for t in study.trials[4:] if t.params == far]
    assert from_base == [7, 11]  # trials 4..11: every fourth after the start-up is the base's


def test_tpe_is_wrapped_and_bad_shares_are_rejected() -> None:
    sampler = make_sampler("tpe", seed=0, n_objectives=2, constraints=False, n_startup_trials=4)
    assert isinstance(sampler, LocalMovesSampler)
    assert isinstance(sampler.base, optuna.samplers.TPESampler)
    with pytest.raises(SettingsError, match=r"local_share=1\.5 must be in \[0, 1\]"):
        LocalMovesSampler(sampler.base, n_startup_trials=1, local_share=1.5)


def test_tpe_draws_at_random_until_it_has_enough_trials_to_model() -> None:
    # 4 seed trials start the local moves, but TPE itself models only from TPE_MIN_STARTUP
    # finished trials: from the 4 seeds alone it proposed plans below random draws.
    sampler = make_sampler("tpe", seed=0, n_objectives=1, constraints=False, n_startup_trials=4)
    assert isinstance(sampler, LocalMovesSampler)
    study = _seeded_study(sampler)
    tpe = sampler.base
    trial = study.ask()
    space = tpe.infer_relative_search_space(study, study.trials[-1])
    assert space and tpe.sample_relative(study, study.trials[-1], space) == {}
    study.tell(trial, 0.0)
    for i in range(TPE_MIN_STARTUP - 5):
        study.add_trial(
            optuna.trial.create_trial(
                params=study.trials[i % 4].params, distributions=SPACE, value=0.1 * i
            )
        )
    assert len(study.trials) == TPE_MIN_STARTUP
    trial = study.ask()
    modelled = tpe.sample_relative(study, study.trials[-1], space)
    assert set(modelled) == set(space)
