"""Release strategies: blue-green follows the alias, canary shares, shadow copies, bandit learns."""

from __future__ import annotations

import random

import pytest

from dlforge.serve.release import Release, Route


def test_blue_green_follows_the_alias():
    release = Release(aliases={"champion": "1", "candidate": "2"})
    assert release.route(random.Random(0)) == Route("1")
    release.aliases["champion"] = "2"  # the alias moved: the next request goes to v2
    assert release.route(random.Random(0)) == Route("2")


def test_canary_sends_its_share_to_the_candidate():
    release = Release("canary", share=0.2, aliases={"champion": "1", "candidate": "2"})
    rng = random.Random(7)
    routes = [release.route(rng).version for _ in range(5000)]
    assert routes.count("2") / len(routes) == pytest.approx(0.2, abs=0.02)
    assert Release("canary", share=0.2, aliases={"champion": "1"}).route(rng) == Route("1")


def test_shadow_answers_with_the_champion_and_copies_to_the_candidate():
    release = Release("shadow", aliases={"champion": "1", "candidate": "2"})
    assert release.route(random.Random(0)) == Route("1", shadow="2")


def test_thompson_sampling_moves_traffic_to_the_version_that_earns_rewards():
    release = Release("bandit", aliases={"champion": "1", "candidate": "2"})
    rng, truth = random.Random(3), {"1": 0.3, "2": 0.7}
    chosen = []
    for _ in range(2000):
        version = release.route(rng).version
        won = rng.random() < truth[version]
        wins, losses = release.rewards.get(version, (0, 0))
        release.rewards[version] = (wins + won, losses + (not won))
        chosen.append(version)
    assert chosen[-500:].count("2") / 500 > 0.9
    posterior = release.posterior()
    mean = {v: p["alpha"] / (p["alpha"] + p["beta"]) for v, p in posterior.items()}
    assert mean["2"] == pytest.approx(0.7, abs=0.05)


def test_the_bandit_keeps_exploring_a_version_with_bad_rewards():
    aliases = {"champion": "1", "candidate": "2"}
    rewards = {"1": (0.0, 1000.0), "2": (1000.0, 0.0)}  # a burst of losses on v1
    rng = random.Random(5)
    release = Release("bandit", aliases=aliases, rewards=rewards)
    routes = [release.route(rng).version for _ in range(10000)]
    assert routes.count("1") / len(routes) == pytest.approx(0.05 / 2, abs=0.01)
    greedy = Release("bandit", explore=0.0, aliases=aliases, rewards=rewards)
    assert {greedy.route(rng).version for _ in range(1000)} == {"2"}
    listed = Release("bandit", explore=1.0, versions=(1, 2, 3), aliases=aliases,
                     rewards=rewards)
    assert {listed.route(rng).version for _ in range(300)} == {"1", "2", "3"}


def test_bad_settings_and_a_missing_alias_are_errors():
    with pytest.raises(ValueError, match="release strategy 'rolling'"):
        Release("rolling")
    with pytest.raises(ValueError, match="canary share 1.5"):
        Release("canary", share=1.5)
    for bad in (1.5, -0.1, float("nan"), "0.1", True):
        with pytest.raises(ValueError, match=f"bandit explore {bad!r} must be"):
            Release("bandit", explore=bad)
    for bad in (-1, float("nan"), "600", None):
        with pytest.raises(ValueError, match="bandit max_rewards_per_minute .* at least 0"):
            Release("bandit", max_rewards_per_minute=bad)
    assert Release("bandit", explore=0, max_rewards_per_minute=float("inf")).explore == 0
    with pytest.raises(LookupError, match="no version has alias 'champion'"):
        Release(aliases={}).route(random.Random(0))
