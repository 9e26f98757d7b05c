"""Fuse the two TTC cues of a track and decide whether they agree on a threat (pure).

* **range**: range and range rate (and relative acceleration) of the range filter, see :func:`ttc_s`.
* **scale**: the box's expansion rate, see :mod:`aeb_app.safety.expansion`.

Both are expressed as an inverse TTC (``1/TTC``, the rate at which the gap closes relative to its size)
with a standard deviation, fused by inverse variance, and turned back into one TTC. A cue *confirms* a
threat when it sees an approach (closing, or expansion, above zero) and its TTC at ``agree_sigmas`` of
optimism is below ``agree_ttc_s``: a cue vetoes a warning only when it is *sure* there is no threat (a
box that does not grow at close range, a range that does not shrink), and says nothing when it is
too noisy to be sure. With ``require_agreement`` every available cue must confirm; a cue that is not available
(a young track, a box cut at the side) has no vote. With a known ego speed the closing speed cannot
exceed ``ego speed + max_lead_reverse_mps``, which bounds both TTCs from below: a standing ego with
a standing scene never warns, whatever the range noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from aeb_app.safety.expansion import ExpansionEstimate
from aeb_app.safety.kinematics import RangeFilter, ttc_s
from aeb_app.safety.warning import WarningConfig

__all__ = ["ThreatAssessment", "assess_threat"]


@dataclass(frozen=True)
class ThreatAssessment:
    """The TTC view of one track in one frame.

    Attributes:
        ttc_s: fused TTC, seconds (inf when not closing; inf when nothing is available).
        ttc_range_s: range-cue TTC, seconds (inf when unavailable or not closing).
        ttc_scale_s: scale-cue TTC, seconds (NaN when unavailable).
        available: cues that could vote.
        confirmed: cues that confirmed a threat.
        braking: the range filter's relative acceleration was used (significantly negative, or held as such).
    """

    ttc_s: float
    ttc_range_s: float
    ttc_scale_s: float
    available: tuple[str, ...]
    confirmed: tuple[str, ...]
    braking: bool = False

    def agrees(self, require_all: bool) -> bool:
        """Whether the cues allow a warning."""
        if not self.confirmed:
            return False
        return set(self.confirmed) == set(self.available) if require_all else True


def _closing_cap(ego_speed_mps: float | None, config: WarningConfig) -> float:
    if ego_speed_mps is None or not math.isfinite(ego_speed_mps):
        return math.inf
    return max(ego_speed_mps, 0.0) + config.max_lead_reverse_mps


def assess_threat(filt: RangeFilter, expansion: ExpansionEstimate | None, *, track_age_s: float,
                  ego_speed_mps: float | None, setback_m: float, config: WarningConfig,
                  range_independent: bool = True, braking: bool | None = None) -> ThreatAssessment:
    """Both TTC cues of a track, fused, and which of them confirm a threat.

    What both cues measure is the closing speed (the scale cue as ``closing / camera depth``); those are
    fused by inverse variance, bounded by the ego speed, and the fused TTC is computed from the filtered
    range, the fused closing speed and the range filter's relative acceleration (only the range filter
    sees acceleration).

    Args:
        filt: the track's range filter (after this frame's updates).
        expansion: the track's expansion estimate, or None when there are too few widths.
        track_age_s: seconds since the track was first seen (the range cue votes from ``min_track_age_s``).
        ego_speed_mps: ego speed, m/s, or None when unknown.
        setback_m: camera distance behind the range origin, metres (the scale cue measures camera depth).
        config: warning settings.
        range_independent: the range has had a ground-contact measurement recently. When it has not,
            the range comes from the box width alone, its rate is the scale cue's twin, and it gets no
            separate vote: the scale cue must then show a significant expansion on its own.
        braking: whether the relative acceleration counts (the lead braking), decided elsewhere; None: decide here
            (significantly negative at ``accel_sigmas``). A track coasting through a missed frame passes the
            decision of the last frame it was seen in: the prediction's grown uncertainty is no evidence that the
            braking stopped.
    """
    cap = _closing_cap(ego_speed_mps, config)
    rng = filt.range_m
    # A track that has only been predicted for longer than the filter would coast has no range to vote with.
    ranged = filt.initialized and math.isfinite(rng) and rng > 0 and filt.since_accept_s <= filt.config.reacquire_after_s
    votes = _Votes()
    accel = _significant_accel(filt, config, braking) if ranged else 0.0
    ttc_range = math.inf
    if ranged and track_age_s >= config.min_track_age_s - 1e-6:
        ttc_range = _range_vote(votes, filt, accel, cap, config, range_independent)
    ttc_scale = math.nan
    if expansion is not None:
        ttc_scale = _scale_vote(votes, expansion, rng if ranged else math.nan, setback_m, cap, accel, config,
                                range_independent)
    fused = _fused_ttc(votes, rng, accel, cap, config) if ranged and votes.weights else math.inf
    return ThreatAssessment(fused, ttc_range, ttc_scale, tuple(votes.available), tuple(votes.confirmed), accel < 0)


def _significant_accel(filt: RangeFilter, config: WarningConfig, braking: bool | None) -> float:
    """The filter's relative acceleration when significantly negative (the lead braking; or, with ``braking``
    given, when that says so and the acceleration is negative), else 0."""
    if braking is None:
        braking = filt.range_accel_mps2 < -config.accel_sigmas * math.sqrt(filt.p.item(2, 2))
    return filt.range_accel_mps2 if braking and filt.range_accel_mps2 < 0 else 0.0


def _fused_ttc(votes: "_Votes", rng: float, accel: float, cap: float, config: WarningConfig) -> float:
    """TTC from the range, the inverse-variance fused closing speed and the relative acceleration."""
    total = sum(votes.weights)
    fused_closing = sum([w * v for w, v in zip(votes.weights, votes.speeds)]) / total
    if fused_closing < config.closing_sigmas / math.sqrt(total):
        fused_closing = 0.0  # not significantly closing: noise in the rate (and its acceleration) must not warn
    return ttc_s(rng, -fused_closing, accel, min_closing_mps=config.min_closing_mps, max_closing_mps=cap)


@dataclass
class _Votes:
    """What the cues said this frame: closing-speed estimates with their weights, and the votes."""

    available: list[str] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)
    speeds: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


def _range_vote(votes: _Votes, filt: RangeFilter, accel: float, cap: float, config: WarningConfig,
                independent: bool) -> float:
    """Add the range cue's closing speed and vote; return its TTC (s)."""
    rng = filt.range_m
    closing = min(-filt.range_rate_mps, cap)
    sigma = max(filt.range_rate_sigma_mps, 1e-3)
    votes.speeds.append(closing)
    votes.weights.append(1.0 / sigma**2)
    if independent:
        votes.available.append("range")
        if closing > 0 and (closing + config.agree_sigmas * sigma) * config.agree_ttc_s > rng:
            votes.confirmed.append("range")
    return ttc_s(rng, -closing, accel, min_closing_mps=config.min_closing_mps, max_closing_mps=cap)


def _scale_vote(votes: _Votes, expansion: ExpansionEstimate, rng: float, setback_m: float, cap: float, accel: float,
                config: WarningConfig, independent: bool) -> float:
    """Add the scale cue's closing speed (when the range is known) and vote; return its TTC (s)."""
    ranged = math.isfinite(rng)
    rate_now = 1.0 / expansion.ttc_s if expansion.ttc_s > 0 else (1e3 if expansion.rate_per_s > 0 else 0.0)
    depth = rng + setback_m if ranged else math.nan
    # The rate was measured lag_s ago; a significant relative acceleration (the lead braking) has changed
    # the closing speed since, as the range filter's own rate has followed it.
    closing = min(rate_now * depth - accel * expansion.lag_s, cap) if ranged else math.nan
    votes.available.append("scale")
    if ranged:
        votes.speeds.append(closing)
        votes.weights.append(1.0 / max(expansion.rate_sigma_per_s * depth, 1e-3) ** 2)
    # Optimistic by agree_sigmas from the fitted rate itself: a slope a little below zero is noise, not proof.
    optimistic = (rate_now if rate_now > 0 else expansion.rate_per_s) + config.agree_sigmas * expansion.rate_sigma_per_s
    significant = independent or expansion.expanding(config.agree_sigmas)
    if significant and optimistic > 0 and optimistic * config.agree_ttc_s * (rng / depth if ranged else 1.0) > 1.0:
        votes.confirmed.append("scale")
    return (rng / closing if closing > 0 else math.inf) if ranged else expansion.ttc_s
