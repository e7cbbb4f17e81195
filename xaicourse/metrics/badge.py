"""One call, one method's "sanity badge": the measures of chapter 07 side by side. Chapter 07.

:func:`report` runs, for one method on one batch: the model randomisation test against the method's
seed-to-seed noise floor (pass/fail), the completeness error (for attributions shaped like x),
max-sensitivity, the deletion AUC next to a random map's, and the localisation scores when object
masks are given. The comparison tables of chapters 07, 08 and 09 are rows of these badges.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..hooks import eval_mode
from ..inputs import check_int
from ..targets import resolve_targets
from ._common import call_method, check_images, check_method, logits, pixel_map
from .axiomatic import completeness
from .faithfulness import deletion_auc
from .localisation import mask_energy, pointing_game
from .randomisation import noise_floor, randomization_passed, randomization_sanity_check
from .robustness import max_sensitivity

__all__ = ["SanityBadge", "report"]


@dataclass(frozen=True)
class SanityBadge:
    """A method's measures on one batch (means over its samples), from :func:`report`. Chapter 07.

    ``randomisation_similarity``: mean |Spearman| of the original map with the randomised models'
    maps; ``noise_floor``: mean Spearman between seeds on the intact model; ``randomisation_pass_rate``:
    the share of samples that pass :func:`~xaicourse.metrics.randomization_passed` (the rule is
    applied per sample); ``randomisation_passed``: at least half of them do; ``completeness_error``: relative
    (None when the attribution is not shaped like x); ``max_sensitivity``; ``deletion_auc`` and
    ``random_deletion_auc`` (a seeded random map on the same images: the control);
    ``pointing_game`` / ``mask_energy``: None without masks. Means skip the samples without a map
    (``torch.nanmean``: a constant map scores NaN, see :class:`~xaicourse.metrics.NoMapWarning`); a
    measure with no sample left is NaN and prints as "no map". A sample without a map fails the
    randomisation rule.
    """

    randomisation_similarity: float
    noise_floor: float
    randomisation_pass_rate: float
    randomisation_passed: bool
    completeness_error: float | None
    max_sensitivity: float
    deletion_auc: float
    random_deletion_auc: float
    pointing_game: float | None = None
    mask_energy: float | None = None

    def as_dict(self) -> dict:
        """The badge as a dict (one row of a pandas table)."""
        return asdict(self)

    def __str__(self) -> str:
        verdict = "passes" if self.randomisation_passed else "fails"
        parts = [f"randomisation {verdict} (similarity {_show(self.randomisation_similarity, '.2f')} vs floor "
                 f"{_show(self.noise_floor, '.2f')}, {self.randomisation_pass_rate:.0%} of the samples pass)",
                 f"completeness error {self.completeness_error:.1%}" if self.completeness_error is not None else
                 "completeness: n/a", f"max-sensitivity {_show(self.max_sensitivity, '.2f')}",
                 f"deletion AUC {_show(self.deletion_auc, '.3f')} "
                 f"(random map {_show(self.random_deletion_auc, '.3f')})"]
        if self.pointing_game is not None:
            parts.append(f"pointing game {_show(self.pointing_game, '.0%')}, "
                         f"mask energy {_show(self.mask_energy, '.2f')}")
        return "; ".join(parts)


def _show(value: float, spec: str) -> str:
    """``value`` formatted with ``spec``, or "no map" for NaN."""
    return "no map" if value != value else format(value, spec)


def _mean(values: torch.Tensor) -> float:
    """The mean over the samples that have a value (NaN = no map); NaN when none has."""
    return torch.nanmean(values.float()).item()


def report(model: nn.Module, method, x: torch.Tensor, target=None, masks=None, *, layers=None, seeds=(0, 1),
           n_samples: int = 5, radius: float = 0.2, deletion_steps: int = 10, baseline="blur") -> SanityBadge:
    """The sanity badge of ``method(model, x, targets)`` on the batch x (B, C, H, W). Chapter 07.

    Randomisation: :func:`~xaicourse.metrics.randomization_sanity_check` (cascade) at ``layers``
    (default: the top parameterised module, then the whole model), mean |Spearman| over the stops,
    against :func:`~xaicourse.metrics.noise_floor` over ``seeds``. Max-sensitivity with ``n_samples``
    copies of uniform noise of ``radius``; deletion AUC with ``deletion_steps`` and ``baseline`` (a
    seeded random map is measured the same way); completeness relative to the zero baseline;
    localisation (pointing game with tolerance 0, mask energy) when ``masks`` (B, H, W) are given.
    """
    check_method(method)
    x = check_images(model, x)
    deletion_steps = check_int("deletion_steps", deletion_steps)
    with eval_mode(model):
        targets = resolve_targets(target, logits(model, x))
        attribution = call_method(method, model, x, targets, seed=min(seeds))
    heat = pixel_map(attribution).to(x.device)
    owners = [name for name, m in model.named_modules() if next(m.parameters(recurse=False), None) is not None]
    sanity = randomization_sanity_check(model, method, x, targets, layers=layers or [owners[-1], owners[0]])
    floor = noise_floor(model, method, x, targets, seeds=seeds)
    similarity = sanity.spearman.abs().nanmean(dim=0)  # a stop whose randomised map is constant is skipped
    complete = None
    if attribution.shape == x.shape:
        complete = completeness(model, x, attribution, targets, relative=True).abs().float().mean().item()
    random_map = torch.rand(heat.shape, generator=torch.Generator().manual_seed(0)).to(x.device)
    deletion = {name: _mean(deletion_auc(model, x, m, targets, n_steps=deletion_steps, baseline=baseline).auc)
                for name, m in (("method", heat), ("random", random_map))}
    localisation = {}
    if masks is not None:
        localisation = {"pointing_game": _mean(pointing_game(heat, masks)),
                        "mask_energy": _mean(mask_energy(heat, masks))}
    top = sanity.spearman[0].abs()            # the first stop: only the top layer randomised
    pass_rate = randomization_passed(similarity, floor, top=torch.nan_to_num(top, nan=1.0)).float().mean().item()
    return SanityBadge(
        randomisation_similarity=_mean(similarity), noise_floor=_mean(floor),
        randomisation_pass_rate=pass_rate, randomisation_passed=pass_rate >= 0.5,
        completeness_error=complete,
        max_sensitivity=_mean(max_sensitivity(model, method, x, targets, radius=radius, n_samples=n_samples)),
        deletion_auc=deletion["method"], random_deletion_auc=deletion["random"], **localisation)
