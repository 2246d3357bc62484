"""Release strategies: which model version answers a request.

    blue_green   the version behind the alias (default ``champion``); when the
                 alias moves, new requests go to the new version
    canary       ``share`` of requests to the ``candidate`` alias, the rest to champion
    shadow       champion answers; the candidate also computes on a copy (logged,
                 never returned)
    bandit       Thompson sampling over ``versions``: each version's reward rate
                 has a Beta posterior from the feedback on its answers (``rewards``:
                 wins and losses, refreshed by the server from POST /feedback);
                 with probability ``explore`` (default 0.05) a version is picked
                 uniformly instead, so a burst of bad rewards cannot starve one

What keeps a bandit from being steered by its feedback (see ``state.py``):
only answers the bandit routed earn rewards (not those of a request that
named a version or alias), and at most ``max_rewards_per_minute`` (default
600) feedbacks per version and minute count; more are taken and logged for
monitoring, but not rewarded.

A strategy only decides; loading and answering are the server's. Decisions
are made with an injected random generator, so tests are deterministic.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

STRATEGIES = ("blue_green", "canary", "shadow", "bandit")


@dataclass(frozen=True)
class Route:
    """The version that answers and, for shadow releases, the one that computes alongside."""

    version: str
    shadow: str | None = None


@dataclass
class Release:
    """One model's strategy. ``aliases`` maps alias -> version and ``rewards`` maps
    version -> (wins, losses); the server refreshes both.

    Args:
        strategy: one of :data:`STRATEGIES`.
        share: canary only, the fraction of requests sent to the candidate.
        versions: bandit only, the versions to choose among (default: champion
            and candidate).
        explore: bandit only, the probability of picking a version uniformly
            instead of by its rewards (between 0 and 1).
        max_rewards_per_minute: bandit only, the feedbacks per version and
            minute that count as rewards (at least 0; ``.inf``: no limit).
    """

    strategy: str = "blue_green"
    alias: str = "champion"
    share: float = 0.1
    versions: tuple[str, ...] = ()
    explore: float = 0.05
    max_rewards_per_minute: float = 600
    aliases: dict[str, str] = field(default_factory=dict)
    rewards: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"release strategy {self.strategy!r}: use one of {STRATEGIES}")
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"canary share {self.share} must be between 0 and 1")
        if not _number(self.explore) or not 0.0 <= self.explore <= 1.0:
            raise ValueError(f"bandit explore {self.explore!r} must be a number between 0 "
                             "and 1")
        if not _number(self.max_rewards_per_minute) or self.max_rewards_per_minute < 0:
            raise ValueError(f"bandit max_rewards_per_minute {self.max_rewards_per_minute!r} "
                             "must be a number, at least 0")
        self.versions = tuple(str(v) for v in self.versions)  # YAML may give numbers

    def route(self, rng: random.Random) -> Route:
        """The route for one request.

        Raises:
            LookupError: when the alias the strategy needs points nowhere.
        """
        champion = self._alias(self.alias)
        if self.strategy == "blue_green":
            return Route(champion)
        candidate = self.aliases.get("candidate")
        if candidate is None or candidate == champion:
            return Route(champion)  # nothing to release: everything to the champion
        if self.strategy == "canary":
            return Route(candidate if rng.random() < self.share else champion)
        if self.strategy == "shadow":
            return Route(champion, shadow=candidate)
        versions = self.versions or (champion, candidate)
        if rng.random() < self.explore:
            return Route(rng.choice(versions))
        return Route(self._thompson(rng, versions))

    def posterior(self) -> dict[str, dict[str, float]]:
        """Beta(alpha, beta) per version: 1 + wins, 1 + losses (uniform prior)."""
        return {v: {"alpha": 1 + wins, "beta": 1 + losses}
                for v, (wins, losses) in sorted(self.rewards.items())}

    def _thompson(self, rng: random.Random, versions: tuple[str, ...]) -> str:
        draws = {}
        for v in versions:
            wins, losses = self.rewards.get(v, (0.0, 0.0))
            draws[v] = rng.betavariate(1 + wins, 1 + losses)
        return max(draws, key=draws.get)

    def _alias(self, alias: str) -> str:
        version = self.aliases.get(alias)
        if version is None:
            raise LookupError(f"no version has alias {alias!r}")
        return version


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and not (
        isinstance(value, float) and math.isnan(value))
